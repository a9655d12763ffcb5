"""The Crypto node: Numerai Crypto's live universe, daily coin prices from Yahoo, LightGBM."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lightgbm
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from pydantic import Field, field_validator

from flows.announce import node_run
from flows.entrypoints import CRYPTO_FLOW
from flows.errors import InsufficientCoverage
from flows.node import (
    DataSource,
    NodeSettings,
    SubmissionOutcome,
    code_digest,
    download_dataset,
    refuse_endless_restarts,
    run_name,
    spec_key,
    submit_predictions,
)
from flows.numerai import RoundInfo
from flows.price_steps import (
    Prices,
    derived_path,
    fetch_prices,
    live_predictions,
    not_found,
    read_targets,
    write_parquet,
)
from flows.prices import PriceCache
from flows.report import publish_report
from flows.round_start import round_start
from flows.settings import source_label
from flows.spec import check_params
from flows.steps import note_failed_step
from flows.validation import PredictionSummary, check_crypto
from models import crypto

LIVE = "live_universe.parquet"
TRAIN = "train_targets.parquet"


class CryptoNode(NodeSettings):
    """A Crypto node's settings. prefect.yaml sets them per deployment."""

    name: str = Field("crypto", description="The node's name, shown in artifacts.")
    numerai_model: str = Field("my_crypto_model", description="The Crypto model to submit as.")
    data_version: str | None = Field(
        None,
        description="Numerai Crypto dataset version, e.g. crypto/v1.0. Unset: the newest "
        "Numerai serves when the run starts (pin it to keep a trained model across releases).",
    )
    target: str = Field("target", description="The target column of train_targets.parquet.")
    symbol_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Yahoo symbols for Numerai symbols that are not `<SYMBOL>-USD` on Yahoo, "
        "e.g. {'UNI': 'UNI7083-USD'}.",
    )
    price_retries: int = Field(
        3, ge=0, description="Retries for symbols Yahoo returned nothing for (backoff from 2 s)."
    )
    score_validation: bool = Field(
        False, description="Numerai Crypto serves no validation data: always off."
    )

    @field_validator("score_validation")
    @classmethod
    def _no_validation(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "Numerai Crypto serves no validation data to score on; leave score_validation "
                "unset (false)."
            )
        return value


def live_date(current: RoundInfo) -> dt.date:
    """The day a round predicts from: the last whole daily bar (UTC) before the round opened."""
    opened = current.open_time or dt.datetime.now(dt.UTC)
    return opened.astimezone(dt.UTC).date() - dt.timedelta(days=1)


def _rows(dataset: Path, day: dt.date | None) -> pd.DataFrame:
    """symbol and date of every row of a Crypto dataset; the live universe (no dates) is
    dated `day`."""
    if day is not None:
        symbols = pd.read_parquet(dataset, columns=["symbol"])
        return symbols.assign(date=pd.Timestamp(day))
    rows = pd.read_parquet(dataset, columns=["symbol", "date"])
    return rows.assign(date=pd.to_datetime(rows["date"]))


@task(
    name="map-symbols", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step]
)
def map_symbols(node: CryptoNode, dataset: Path) -> Path:
    """Map the dataset's Numerai symbols to Yahoo's (`BTC` -> `BTC-USD`); returns the map."""
    symbols = pd.read_parquet(dataset, columns=["symbol"])["symbol"].unique()
    mapping = crypto.map_symbols(symbols, node.symbol_overrides)
    unmapped = mapping.loc[mapping["yahoo"].isna(), "symbol"].tolist()
    get_run_logger().info(
        "%s: %d of %d symbols map to Yahoo%s",
        dataset.name,
        len(mapping) - len(unmapped),
        len(mapping),
        f"; not a plain symbol: {', '.join(unmapped[:5])}" if unmapped else "",
    )
    return write_parquet(mapping, derived_path(node.name, dataset, "symbols"))


@task(
    name="update-prices", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step]
)
def update_prices(
    node: CryptoNode, dataset: Path, symbol_map: Path, day: dt.date | None = None
) -> Prices:
    """Fetch the daily prices the dataset's features need (the live universe's: up to `day`):
    only the days not cached yet. Fewer than 100 priced symbols stop the run: Numerai would
    reject the submission."""
    rows, mapping = _rows(dataset, day), pd.read_parquet(symbol_map)
    return fetch_prices(
        node.name,
        dataset,
        mapping[mapping["symbol"].isin(rows["symbol"])],
        "symbol",
        crypto.price_range(rows["date"].unique()),
        rows["date"].max().date(),
        retries=node.price_retries,
        minimum=crypto.MIN_SYMBOLS,
    )


@task(name="features", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def compute_features(
    node: CryptoNode, dataset: Path, symbol_map: Path, prices_dir: Path, day: dt.date | None = None
) -> Path:
    """Price features of the dataset's symbols on each of its dates; writes and returns them."""
    rows, mapping = _rows(dataset, day), pd.read_parquet(symbol_map)
    symbols = mapping.loc[mapping["symbol"].isin(rows["symbol"]), "yahoo"].dropna().unique()
    dates = rows["date"].unique()
    prices = PriceCache(prices_dir).load(
        symbols, *crypto.price_range(dates), crypto.PRICE_INPUTS, ordered=False
    )
    features = crypto.compute_features(prices, dates)
    get_run_logger().info("Features for %s: %d rows", dataset.name, len(features))
    out = derived_path(node.name, dataset, f"features-{prices_dir.name}-{day or 'all'}")
    return write_parquet(features, out, index=True)


def model_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """The model cache key: model code and params, data, prices source, target, symbol map."""
    node: CryptoNode = parameters["node"]
    source: DataSource = parameters["source"]
    spec = {
        "model": crypto.__name__,
        "params": {**crypto.DEFAULT_PARAMS, **node.params},
        "source": source_label(source.api_url),
        "prices": Path(parameters["prices_dir"]).name,
        "data_version": source.data_version,
        "target": node.target,
        "symbol_overrides": node.symbol_overrides,
        "code": code_digest(crypto),
        "lightgbm": lightgbm.__version__,
    }
    return spec_key("crypto-model", spec)


@task(
    name="train",
    cache_key_fn=model_cache_key,
    persist_result=True,
    result_serializer="pickle",
    on_failure=[note_failed_step],
)
def train_model(source: DataSource, node: CryptoNode, prices_dir: Path):
    """Train on price features joined to Numerai's daily targets, or load the cached model when
    nothing that shapes it changed (then no targets or prices are fetched)."""
    path = download_dataset(source, TRAIN)
    symbol_map = map_symbols(node, path)
    update_prices(node, path, symbol_map)
    features = pd.read_parquet(compute_features(node, path, symbol_map, prices_dir))
    targets = read_targets(path, "symbol", node.target)
    train = crypto.build_training_set(features, targets, pd.read_parquet(symbol_map), node.target)
    if train.empty:
        raise InsufficientCoverage(
            f"No row of {TRAIN} has both price features and a target: check the price source "
            "and the symbols' Yahoo symbols."
        )
    get_run_logger().info(
        "Training on %d rows (%d days, %d symbols)",
        len(train),
        train["date"].nunique(),
        train["symbol"].nunique(),
    )
    return crypto.fit(train, node.target, dict(node.params))


@task(name="predict", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def predict_live(
    source: DataSource,
    node: CryptoNode,
    model,
    live_path: Path,
    symbol_map: Path,
    prices: Prices,
    round_number: int,
) -> tuple[Path, crypto.Coverage]:
    """Rank the live universe's predictions into (0, 1) and write the file to upload;
    publishes the coverage, and stops below 100 predicted symbols."""
    features = compute_features(node, live_path, symbol_map, prices.directory, prices.last_date)
    universe = pd.read_parquet(live_path, columns=["symbol"])["symbol"]
    mapping = pd.read_parquet(symbol_map)
    return live_predictions(
        source,
        node.name,
        round_number,
        not_found(mapping, prices.report, "symbol"),
        lambda: crypto.predict_live(
            model, pd.read_parquet(features), universe, mapping, prices.last_date
        ),
    )


@task(name="validate", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def validate_predictions(predictions_path: Path, live_path: Path) -> PredictionSummary:
    """Check symbols and values against the live universe (and numerai-tools) before upload."""
    frame = pd.read_csv(predictions_path, dtype={"symbol": str}, keep_default_na=False)
    universe = pd.read_parquet(live_path, columns=["symbol"])["symbol"]
    checked = check_crypto(frame, universe)
    get_run_logger().info(
        "Predictions valid: %d of %d live symbols, mean %.4f, std %.4f",
        checked.rows,
        checked.live_rows,
        checked.mean,
        checked.std,
    )
    return checked


@flow(name=CRYPTO_FLOW.flow_name, flow_run_name=run_name, log_prints=True)
def crypto_node(
    node: CryptoNode | None = None,
    trigger_id: str | None = None,
    round_number: int | None = None,
    resubmit: bool = False,
) -> SubmissionOutcome:
    """Numerai Crypto node: predict the live universe of coins from Yahoo's daily prices and
    submit with Numerai's trigger id.

    Steps: resolve the round, download the live universe, map symbols to Yahoo (`BTC-USD`),
    fetch only the missing daily prices (coins trade every day), load the cached model or train
    it, compute features, predict, validate, upload, submit, report. A run for a round that
    already has its submission ends after checking the account, with nothing downloaded or
    uploaded; `resubmit` uploads anyway, and Numerai keeps the new file.

    Symbols without prices are left out and listed in the coverage artifact; with fewer than
    100 left the run fails before any upload.
    """
    node = node or CryptoNode()
    with node_run(node.name, node.numerai_model, trigger_id, round_number) as run:
        refuse_endless_restarts()
        # A wrong parameter fails now, before the account check and any download.
        node = node.model_copy(update={"params": check_params(crypto, node.params)})
        opened = round_start(
            run,
            tournament=CRYPTO_FLOW.tournament,
            data_version=node.data_version,
            numerai_model=node.numerai_model,
            upload=node.upload,
            round_number=round_number,
            trigger_id=trigger_id,
            resubmit=resubmit,
        )
        with opened as start:
            if start.done is not None:
                return start.done  # a fallback, manual or restarted run: nothing to do
            source, current, who = start.source, start.current, start.who
            day = live_date(current)
            live_path = download_dataset(source, LIVE, current.number)
            symbol_map = map_symbols(node, live_path)
            prices = update_prices(node, live_path, symbol_map, day)
            trained = train_model(source, node, prices.directory, return_state=True)
            predictions_path, coverage = predict_live(
                source, node, trained.result(), live_path, symbol_map, prices, current.number
            )
            checked = validate_predictions(predictions_path, live_path)
            outcome = run.submitted(submit_predictions(source, who, predictions_path))
        publish_report(
            node.name,
            outcome,
            checked,
            None,
            trained=trained.name != "Cached",
            coverage=coverage,
            tournament=source.tournament,
            model_id=who.model_id,
        )
        return outcome
