"""The Signals node: Numerai's live universe, daily prices from Yahoo, price features, LightGBM."""

from __future__ import annotations

import hashlib
from pathlib import Path

import lightgbm
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from pydantic import Field

from flows.announce import node_run
from flows.entrypoints import SIGNALS_FLOW
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
from flows.price_steps import (
    Prices,
    derived_path,
    fetch_prices,
    live_predictions,
    not_found,
    read_targets,
    write_parquet,
)
from flows.prices import EXCHANGE_TABLE, PriceCache, load_exchange_table, release_freed_prices
from flows.report import EraScores, publish_report, score_eras
from flows.round_start import round_start
from flows.settings import source_label
from flows.spec import check_params
from flows.steps import note_failed_step
from flows.validation import PredictionSummary, check_signals
from models import signals


class SignalsNode(NodeSettings):
    """A Signals node's settings. prefect.yaml sets them per deployment."""

    name: str = Field("signals", description="The node's name, shown in artifacts.")
    numerai_model: str = Field("my_signals_model", description="The Signals model to submit as.")
    data_version: str | None = Field(
        None,
        description="Numerai Signals dataset version, e.g. signals/v2.0. Unset: the newest "
        "Numerai serves when the run starts (pin it to keep a trained model across releases).",
    )
    target: str = Field("target", description="The target column of the training data.")
    ticker_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Yahoo symbols for Numerai tickers the exchange table maps wrongly, "
        "e.g. {'RDSA LN': 'SHEL.L'}.",
    )
    price_retries: int = Field(
        3, ge=0, description="Retries for symbols Yahoo returned nothing for (backoff from 2 s)."
    )


def _rows(dataset: Path) -> pd.DataFrame:
    """numerai_ticker and date of every row of a Signals dataset."""
    rows = pd.read_parquet(dataset, columns=["numerai_ticker", "date"])
    return rows.assign(date=pd.to_datetime(rows["date"]))


@task(
    name="map-tickers", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step]
)
def map_tickers(node: SignalsNode, dataset: Path) -> Path:
    """Map the dataset's Numerai tickers to Yahoo symbols; writes and returns the ticker map."""
    tickers = pd.read_parquet(dataset, columns=["numerai_ticker"])["numerai_ticker"].unique()
    mapping = signals.map_tickers(tickers, load_exchange_table(), node.ticker_overrides)
    unmapped = mapping.loc[mapping["yahoo"].isna(), "numerai_ticker"].tolist()
    get_run_logger().info(
        "%s: %d of %d tickers map to Yahoo symbols%s",
        dataset.name,
        len(mapping) - len(unmapped),
        len(mapping),
        f"; no exchange rule for {', '.join(unmapped[:5])}" if unmapped else "",
    )
    return write_parquet(mapping, derived_path(node.name, dataset, "tickers"))


@task(
    name="update-prices", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step]
)
def update_prices(node: SignalsNode, dataset: Path, ticker_map: Path) -> Prices:
    """Fetch the daily prices the dataset's features need: only the days not cached yet.

    A ticker Yahoo does not know (or that fails every retry) has no prices and is asked again
    next run. Fewer than 100 priced tickers stop the run: Numerai would reject the submission.
    """
    rows, mapping = _rows(dataset), pd.read_parquet(ticker_map)
    tickers = mapping[mapping["numerai_ticker"].isin(rows["numerai_ticker"])]
    return fetch_prices(
        node.name,
        dataset,
        tickers,
        "numerai_ticker",
        signals.price_range(rows["date"].unique()),
        rows["date"].max().date(),
        retries=node.price_retries,
        minimum=signals.MIN_TICKERS,
    )


@task(name="features", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def compute_features(node: SignalsNode, dataset: Path, ticker_map: Path, prices_dir: Path) -> Path:
    """Price features of the dataset's tickers on each of its dates; writes and returns them."""
    rows, mapping = _rows(dataset), pd.read_parquet(ticker_map)
    symbols = mapping.loc[mapping["numerai_ticker"].isin(rows["numerai_ticker"]), "yahoo"]
    dates = rows["date"].unique()
    start, end = signals.price_range(dates)
    # The prices go straight into the first step, so they are freed before the features are
    # ranked: the two never take memory at once (models/signals.py, compute_features).
    daily = signals.daily_features(
        PriceCache(prices_dir).load(
            symbols.dropna().unique(), start, end, signals.PRICE_INPUTS, ordered=False
        ),
        dates,
    )
    release_freed_prices()
    features = signals.rank_features(daily)
    get_run_logger().info(
        "Features for %s: %d rows over %d dates", dataset.name, len(features), len(dates)
    )
    out = derived_path(node.name, dataset, f"features-{prices_dir.name}")
    return write_parquet(features, out, index=True)


def _labelled(node: SignalsNode, dataset: Path, ticker_map: Path, prices_dir: Path):
    """The dataset's rows with their price features and target (the training-set join)."""
    features = pd.read_parquet(compute_features(node, dataset, ticker_map, prices_dir))
    frame = signals.build_training_set(
        features,
        read_targets(dataset, "numerai_ticker", node.target),
        pd.read_parquet(ticker_map),
        node.target,
    )
    if frame.empty:
        raise InsufficientCoverage(
            f"No row of {dataset.name} has both price features and a target: check the price "
            "source and the ticker map."
        )
    return frame


def model_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """The model cache key: model code and params, data, prices source, target, ticker map."""
    node: SignalsNode = parameters["node"]
    source: DataSource = parameters["source"]
    spec = {
        "model": signals.__name__,
        "params": {**signals.DEFAULT_PARAMS, **node.params},
        "source": source_label(source.api_url),
        "prices": Path(parameters["prices_dir"]).name,
        "data_version": source.data_version,
        "target": node.target,
        "ticker_overrides": node.ticker_overrides,
        "exchanges": hashlib.sha256(EXCHANGE_TABLE.read_bytes()).hexdigest(),
        "code": code_digest(signals),
        "lightgbm": lightgbm.__version__,
    }
    return spec_key("signals-model", spec)


def _scores_cache_key(context: TaskRunContext, parameters: dict) -> str:
    return "validation-" + model_cache_key(context, parameters)


def _history(source: DataSource, node: SignalsNode, filename: str) -> tuple[Path, Path]:
    """Download a historical dataset, map its tickers and fetch its missing prices."""
    path = download_dataset(source, filename)
    ticker_map = map_tickers(node, path)
    update_prices(node, path, ticker_map)
    return path, ticker_map


@task(
    name="train",
    cache_key_fn=model_cache_key,
    persist_result=True,
    result_serializer="pickle",
    on_failure=[note_failed_step],
)
def train_model(source: DataSource, node: SignalsNode, prices_dir: Path):
    """Train on price features joined to Numerai's targets, or load the cached model when
    nothing that shapes it changed (then no training data or prices are fetched)."""
    train_path, ticker_map = _history(source, node, "train.parquet")
    train = _labelled(node, train_path, ticker_map, prices_dir)
    get_run_logger().info(
        "Training on %d rows (%d dates, %d tickers)",
        len(train),
        train["date"].nunique(),
        train["numerai_ticker"].nunique(),
    )
    return signals.fit(train, node.target, dict(node.params))


@task(
    name="score-validation",
    cache_key_fn=_scores_cache_key,
    persist_result=True,
    on_failure=[note_failed_step],
)
def score_validation(source: DataSource, node: SignalsNode, prices_dir: Path, model) -> EraScores:
    """Per-date numerai_corr of the model on the validation data (cached with the model)."""
    path, ticker_map = _history(source, node, "validation.parquet")
    frame = _labelled(node, path, ticker_map, prices_dir)
    frame["prediction"] = model.predict(frame[signals.FEATURES])
    scores = score_eras(frame.assign(era=frame["date"].dt.strftime("%Y-%m-%d")), node.target)
    get_run_logger().info(
        "Validation corr: mean %.4f, std %.4f, sharpe %.2f over %d dates",
        scores.mean,
        scores.std,
        scores.sharpe,
        len(scores.per_era),
    )
    return scores


@task(name="predict", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def predict_live(
    source: DataSource,
    node: SignalsNode,
    model,
    features: Path,
    live_path: Path,
    ticker_map: Path,
    prices: Prices,
    round_number: int,
) -> tuple[Path, signals.Coverage]:
    """Rank the live universe's predictions into (0, 1) and write the file to upload;
    publishes the coverage, and stops below 100 predicted tickers."""
    universe = pd.read_parquet(live_path, columns=["numerai_ticker"])["numerai_ticker"]
    mapping = pd.read_parquet(ticker_map)
    return live_predictions(
        source,
        node.name,
        round_number,
        not_found(mapping, prices.report, "numerai_ticker"),
        lambda: signals.predict_live(
            model, pd.read_parquet(features), universe, mapping, prices.last_date
        ),
    )


@task(name="validate", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def validate_predictions(predictions_path: Path, live_path: Path) -> PredictionSummary:
    """Check tickers and values against the live universe (and numerai-tools) before upload."""
    frame = pd.read_csv(predictions_path, dtype={"numerai_ticker": str})
    universe = pd.read_parquet(live_path, columns=["numerai_ticker"])["numerai_ticker"]
    checked = check_signals(frame, universe)
    get_run_logger().info(
        "Predictions valid: %d of %d live tickers, mean %.4f, std %.4f",
        checked.rows,
        checked.live_rows,
        checked.mean,
        checked.std,
    )
    return checked


@flow(name=SIGNALS_FLOW.flow_name, flow_run_name=run_name, log_prints=True)
def signals_node(
    node: SignalsNode | None = None,
    trigger_id: str | None = None,
    round_number: int | None = None,
    resubmit: bool = False,
) -> SubmissionOutcome:
    """Numerai Signals node: predict the live universe from Yahoo prices and submit with
    Numerai's trigger id.

    Steps: resolve the round, download the live universe, map tickers to Yahoo, fetch only the
    missing daily prices, load the cached model or train it, compute features, predict,
    validate, upload, submit, report. A run for a round that already has its submission (this
    trigger id's, or a fallback or manual run's) ends after checking the account, with nothing
    downloaded or uploaded; `resubmit` uploads anyway, and Numerai keeps the new file.

    Tickers without a Yahoo symbol, without prices or with stale prices are left out and listed
    in the coverage artifact; with fewer than 100 left the run fails before any upload.
    """
    node = node or SignalsNode()
    with node_run(node.name, node.numerai_model, trigger_id, round_number) as run:
        refuse_endless_restarts()
        # A wrong parameter fails now, before the account check and any download.
        node = node.model_copy(update={"params": check_params(signals, node.params)})
        opened = round_start(
            run,
            tournament=SIGNALS_FLOW.tournament,
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
            live_path = download_dataset(source, "live.parquet", current.number)
            ticker_map = map_tickers(node, live_path)
            prices = update_prices(node, live_path, ticker_map)
            trained = train_model(source, node, prices.directory, return_state=True)
            model = trained.result()
            features = compute_features(node, live_path, ticker_map, prices.directory)
            predictions_path, coverage = predict_live(
                source, node, model, features, live_path, ticker_map, prices, current.number
            )
            checked = validate_predictions(predictions_path, live_path)
            outcome = run.submitted(submit_predictions(source, who, predictions_path))
        scores = (
            score_validation(source, node, prices.directory, model)
            if node.score_validation
            else None
        )
        publish_report(
            node.name,
            outcome,
            checked,
            scores,
            trained=trained.name != "Cached",
            coverage=coverage,
            tournament=source.tournament,
            model_id=who.model_id,
        )
        return outcome
