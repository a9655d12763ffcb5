"""What the nodes whose features come from daily Yahoo prices (Signals, Crypto) share: fetching a
universe's missing prices with its coverage check, the files made from a dataset, the targets,
and the live predictions with their coverage artifact.

A universe here is a frame of the dataset's ids (`numerai_ticker`, `symbol`) and their Yahoo
symbols (`yahoo`, missing when none maps).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from prefect import get_run_logger
from pydantic import BaseModel

from flows import cache, files
from flows.errors import ConfigurationError, InsufficientCoverage
from flows.node import DataSource, retry_delay_scale
from flows.prices import PriceCache, PriceReport, YahooPriceSource
from flows.report import publish_coverage
from flows.settings import load_settings
from models.signals import Coverage, TooFewTickers


class Prices(BaseModel):
    """Where the daily prices are, and what updating them for one dataset did."""

    directory: Path
    report: PriceReport
    tickers: int  # ids of the dataset (tickers, symbols)
    priced: int  # ... of which Yahoo had prices for
    last_date: dt.date  # the dataset's last date: the live date for live data


def derived_path(node: str, dataset: Path, suffix: str) -> Path:
    """Where a node keeps a file made from a dataset (ticker map, features), per node."""
    path = dataset.parent / "derived" / node / f"{dataset.stem}-{suffix}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_parquet(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    """Write atomically: nodes sharing a live file share its derived files."""
    with files.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=index)
    return path


def _backoff(seconds: float) -> None:
    time.sleep(seconds * retry_delay_scale())


def fetch_prices(
    node: str,
    dataset: Path,
    universe: pd.DataFrame,
    id_column: str,
    span: tuple[pd.Timestamp, pd.Timestamp],
    last_date: dt.date,
    *,
    retries: int,
    minimum: int,
) -> Prices:
    """Fetch the days of `span` ([start, end)) the cache lacks for the universe's Yahoo symbols.

    A symbol Yahoo does not know (or that fails every retry) has no prices and is asked again
    next run. Fewer than `minimum` priced ids stop the run (Numerai would reject the
    submission); for a live file the coverage artifact then shows where they got lost.
    """
    settings = load_settings()
    source = YahooPriceSource(settings.yahoo_url, retries=retries, sleep=_backoff)
    symbols = universe["yahoo"].dropna().unique()
    report = PriceCache(settings.prices_dir).update(source, symbols, *span)
    logger = get_run_logger()
    start, end = (stamp.date() for stamp in span)
    logger.info("%s prices %s to %s: %s", dataset.name, start, end, report.summary())
    for problem, found in (("no prices", report.not_found), ("stale prices", report.stale)):
        if found:
            logger.warning("Yahoo has %s for: %s", problem, ", ".join(found[:20]))
    priced = universe["yahoo"].notna() & ~universe["yahoo"].isin(report.not_found)
    what = "symbols" if id_column == "symbol" else "tickers"
    if priced.sum() < minimum:
        if cache.is_per_round(dataset.name):  # the live universe: show where it got lost
            coverage = _price_coverage(universe, priced, id_column)
            publish_coverage(node, coverage, not_found(universe, report, id_column))
        raise InsufficientCoverage(
            f"Only {priced.sum()} of the {len(universe)} {what} of {dataset.name} have prices "
            f"from Yahoo; Numerai needs at least {minimum}. {report.summary()}. "
            f"Check the price source (NUMERAI_NODES_YAHOO_URL, the network) and the {what}' "
            "Yahoo symbols. Nothing was trained or uploaded."
        )
    return Prices(
        directory=settings.prices_dir,
        report=report,
        tickers=len(universe),
        priced=int(priced.sum()),
        last_date=last_date,
    )


def not_found(universe: pd.DataFrame, report: PriceReport, id_column: str) -> list[str]:
    """The ids whose Yahoo symbols got no prices at all."""
    return universe.loc[universe["yahoo"].isin(report.not_found), id_column].tolist()


def _price_coverage(universe: pd.DataFrame, priced: pd.Series, id_column: str) -> Coverage:
    """Coverage of a live universe that stopped at the prices: nothing was predicted."""
    mapped = universe["yahoo"].notna()
    return Coverage(
        universe=len(universe),
        mapped=int(mapped.sum()),
        priced=int(priced.sum()),
        predicted=0,
        unmapped=tuple(sorted(universe.loc[~mapped, id_column])),
        unpriced=tuple(sorted(universe.loc[mapped & ~priced, id_column])),
    )


def read_targets(dataset: Path, id_column: str, target: str) -> pd.DataFrame:
    """(id, date, target) of a training dataset; a target it lacks names the ones it has."""
    columns = pq.read_schema(dataset).names
    if target not in columns:
        known = ", ".join(c for c in columns if c.startswith("target"))
        raise ConfigurationError(
            f"{dataset.name} has no target '{target}'; choose one of: {known}."
        )
    return pd.read_parquet(dataset, columns=[id_column, "date", target])


def live_predictions(
    source: DataSource,
    node: str,
    round_number: int,
    not_priced: list[str],
    predict: Callable[[], tuple[pd.DataFrame, Coverage]],
) -> tuple[Path, Coverage]:
    """Run the model's live prediction, publish its coverage (also when too few ids are left,
    which stops the run before any upload), and write the file to upload."""
    try:
        submission, coverage = predict()
    except TooFewTickers as exc:
        publish_coverage(node, exc.coverage, not_priced)
        raise InsufficientCoverage(f"{exc} Nothing was uploaded.") from None
    publish_coverage(node, coverage, not_priced)
    get_run_logger().info("Coverage: %s", coverage.summary())
    out = cache.predictions_path(source.data_dir, source.data_version, round_number, node)
    with files.atomic_path(out) as tmp:  # another run of this node may write it too
        submission.to_csv(tmp, index=False)
    return out, coverage
