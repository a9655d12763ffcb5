"""The files Numerai lists beside the data: benchmark models, example predictions, meta model.

Each is derived from a data file the sandbox already wrote (train, validation or a round's
live file), small and well-formed: Classic files are indexed by `id` and hold predictions in
(0, 1] ranked within each era; Signals files hold a `signal` per `numerai_ticker`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from sandbox.classic_spec import ClassicSpec

# Classic: every file of a version, as Numerai lists them (sorted by name), and for each
# derived file the data file it is made from.
CLASSIC_DERIVED = {
    "live_benchmark_models.parquet": "live.parquet",
    "live_example_preds.csv": "live.parquet",
    "live_example_preds.parquet": "live.parquet",
    "meta_model.parquet": "validation.parquet",
    "train_benchmark_models.parquet": "train.parquet",
    "validation_benchmark_models.parquet": "validation.parquet",
    "validation_example_preds.csv": "validation.parquet",
    "validation_example_preds.parquet": "validation.parquet",
}
CLASSIC_FILES = tuple(
    sorted(
        {"features.json", "train.parquet", "validation.parquet", "live.parquet", *CLASSIC_DERIVED}
    )
)
SIGNALS_DERIVED = {
    "live_example_preds.csv": "live.parquet",
    "live_example_preds.parquet": "live.parquet",
    "validation_example_preds.csv": "validation.parquet",
    "validation_example_preds.parquet": "validation.parquet",
}
SIGNALS_FILES = tuple(
    sorted({"train.parquet", "validation.parquet", "live.parquet", *SIGNALS_DERIVED})
)
_NOISE = 0.6  # how far a benchmark is from the hidden signal (in units of its spread)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a sibling temp file, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _era_ranks(values: np.ndarray, eras: np.ndarray) -> np.ndarray:
    """Percentile ranks in (0, 1] within each era, ties broken by order."""
    ranked = pd.Series(values).groupby(eras).rank(pct=True, method="first")
    return ranked.to_numpy(dtype=np.float32)


def _classic_predictions(spec: ClassicSpec, source: Path) -> pd.DataFrame:
    """The benchmark models of one data file: one column per target, indexed by id, with era."""
    signal = spec.signal_features
    table = pq.read_table(source, columns=["id", "era", *signal])
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    eras = np.asarray(table.column("era").to_pylist(), dtype=object)
    x = np.column_stack(
        [table.column(name).to_pandas().to_numpy(dtype=float, na_value=2.0) for name in signal]
    )
    prefix = spec.version.replace(".", "")  # v5.2 -> v52, as Numerai names its benchmarks
    frame = pd.DataFrame({"era": eras}, index=pd.Index(ids, name="id"))
    for target, name in enumerate(spec.aux_names):
        raw = (x - 2.0) @ spec.model_weights(target)
        raw = (raw - raw.mean()) / (raw.std() or 1.0)
        noise = np.random.default_rng([spec.seed, 17, target, len(ids)]).normal(size=len(ids))
        frame[f"{prefix}_lgbm_{name}20"] = _era_ranks(raw + _NOISE * noise, eras)
    return frame


def write_classic_derived(spec: ClassicSpec, name: str, source: Path, dest: Path) -> None:
    """Write the derived Classic file `name` (a key of CLASSIC_DERIVED) from its data file."""
    models = _classic_predictions(spec, source)
    benchmarks = [c for c in models.columns if c != "era"]
    if name.endswith("benchmark_models.parquet"):
        atomic_write(dest, models.to_parquet)
        return
    if name == "meta_model.parquet":
        # the stake-weighted crowd: here, the benchmarks' mean rank, ranked again within eras
        mean = models[benchmarks].mean(axis=1).to_numpy()
        meta = models[["era"]].assign(numerai_meta_model=_era_ranks(mean, models["era"].to_numpy()))
        atomic_write(dest, meta.to_parquet)
        return
    # the example model: a model of the main target
    example = models[[benchmarks[0]]].rename(columns={benchmarks[0]: "prediction"})
    if name.endswith(".csv"):
        atomic_write(dest, lambda tmp: example.to_csv(tmp))
    else:
        atomic_write(dest, example.to_parquet)


def write_signals_derived(name: str, source: Path, dest: Path, seed: int) -> None:
    """Write a Signals example-predictions file (a key of SIGNALS_DERIVED) from its data file:
    the ranked 12-week momentum of each ticker, per date."""
    momentum = "feature_momentum_12w_factor"
    data = pd.read_parquet(source, columns=["numerai_ticker", "date", momentum])
    noise = np.random.default_rng([seed, 19, len(data)]).normal(size=len(data))
    raw = data[momentum].astype(float).fillna(2.0) + noise
    dates = data["date"].to_numpy()
    example = pd.DataFrame(
        {"numerai_ticker": data["numerai_ticker"], "signal": _era_ranks(raw.to_numpy(), dates)}
    )
    if name.startswith("validation"):
        example.insert(1, "date", data["date"].dt.strftime("%Y-%m-%d"))
    if name.endswith(".csv"):
        atomic_write(dest, lambda tmp: example.to_csv(tmp, index=False))
    else:
        atomic_write(dest, lambda tmp: example.to_parquet(tmp, index=False))
