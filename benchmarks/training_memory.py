"""Benchmark Classic training memory and time: the old path against the streaming one, side by side.

    uv run python benchmarks/training_memory.py [--repeats 3] [--trees 50] [--quick] [--medium]

Generates sandbox-shaped Classic data (the `bench` size: 500k train rows x 500 int8 features;
`--quick`: 100k x 100; `--medium`: also about 2.7M x 705, Numerai's medium shape), then trains
in fresh processes, one per measurement, so peaks never mix:
- old:  `benchmarks.tournament_old.train` (the whole int8 matrix, then LightGBM samples it);
- new:  `models.tournament.train` (rows streamed from parquet into LightGBM's bins);
- bare: LightGBM on its own: `pd.read_parquet`, a float32 matrix, `lgb.train`, same trees.
Prints median wall time, peak RSS above the process baseline divided by the int8 feature bytes
(ru_maxrss of the child), and the validation corr of each model (mean per-era Pearson corr).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (train eras, validation eras, rows per era, features, eras per row group)
SHAPES = {
    "quick": (100, 20, 1000, 100, 25),
    "bench": (500, 100, 1000, 500, 25),
    "medium": (540, 20, 5000, 705, 5),
}
PARAMS = {"learning_rate": 0.05}  # the rest are models.tournament.DEFAULT_PARAMS


def make_data(work: Path, shape: str) -> Path:
    """Write train.parquet and validation.parquet of `shape` once; returns their directory."""
    from sandbox.classic_data import write_base
    from sandbox.classic_spec import DATA_VERSION, ClassicSpec
    from sandbox.sizes import SizePreset

    train_eras, validation_eras, rows, features, chunk = SHAPES[shape]
    preset = SizePreset(shape, train_eras, validation_eras, rows, features, 1000, chunk)
    directory = work / f"{shape}-seed0"
    if not (directory / "features.json").exists():
        started = time.perf_counter()
        write_base(ClassicSpec(preset, 0, DATA_VERSION), directory)
        print(f"generated {shape} data in {time.perf_counter() - started:.0f} s: {directory}")
    return directory


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    """One training in this process; prints JSON with time, memory and validation corr."""
    import importlib

    import numpy as np
    import psutil
    import pyarrow.parquet as pq

    data = Path(args.data)
    features = [c for c in pq.read_schema(data / "train.parquet").names if c.startswith("feature_")]
    module = importlib.import_module(
        {"old": "benchmarks.tournament_old", "new": "models.tournament"}.get(args.child, "lightgbm")
    )
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    if args.child == "bare":
        model = _bare_train(data / "train.parquet", features, args.trees)
    else:
        params = {**PARAMS, "n_estimators": args.trees}
        model = module.train(data / "train.parquet", features, "target", params)
    seconds, peak = time.perf_counter() - started, _peak()
    rows = pq.ParquetFile(data / "train.parquet").metadata.num_rows
    corr = None
    if args.child != "bare":
        predictions = module.predict(model, data / "validation.parquet", features)
        frame = pq.read_table(data / "validation.parquet", columns=["era", "target"]).to_pandas()
        frame["prediction"] = predictions.to_numpy()
        per_era = frame.groupby("era")[["prediction", "target"]].corr().xs("target", level=1)
        corr = float(np.mean(per_era["prediction"]))
    print(json.dumps({"seconds": seconds, "peak": peak, "baseline": baseline, "corr": corr,
                      "int8_bytes": rows * len(features)}))  # fmt: skip


def _bare_train(path: Path, features: list[str], trees: int):
    """LightGBM as a script would call it: a float32 matrix from pandas, then lgb.train."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from models.tournament import DEFAULT_PARAMS

    frame = pd.read_parquet(path, columns=[*features, "target"])
    frame = frame[frame["target"].notna()]
    matrix = frame[features].to_numpy(np.float32, na_value=2)
    label = frame["target"].to_numpy(np.float32)
    del frame
    params = {**DEFAULT_PARAMS, **PARAMS}
    params.pop("n_estimators")
    params["feature_fraction"] = params.pop("colsample_bytree")
    dataset = lgb.Dataset(
        matrix, label=label, params={"max_bin": 7, "bin_construct_sample_cnt": 20_000}
    )
    train = {"objective": "regression", "force_col_wise": True, "verbose": -1, "max_bin": 7}
    return lgb.train({**train, **params}, dataset, num_boost_round=trees)


def _run(kind: str, data: Path, trees: int) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--data", str(data)]
    command += ["--trees", str(trees)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{kind} training failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(shape: str, results: dict[str, list[dict]], trees: int) -> None:
    runs = next(iter(results.values()))
    int8 = runs[0]["int8_bytes"]
    print(f"\n{shape}: {int8 / 1e6:.0f} MB of int8 features, {trees} trees, "
          f"medians of {len(runs)} runs")  # fmt: skip
    print(f"{'path':6} {'seconds':>8} {'peak MB':>8} {'base MB':>8} {'(peak-base)/int8':>17} "
          f"{'val corr':>9} {'time/bare':>10}")  # fmt: skip
    bare = statistics.median(r["seconds"] for r in results["bare"]) if "bare" in results else None
    for kind, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak"] for r in runs)
        base = statistics.median(r["baseline"] for r in runs)
        corr = runs[0]["corr"]
        corr_text = f"{corr:9.4f}" if corr is not None else f"{'-':>9}"
        ratio = f"{seconds / bare:10.2f}" if bare else f"{'-':>10}"
        print(f"{kind:6} {seconds:8.1f} {peak / 1e6:8.0f} {base / 1e6:8.0f} "
              f"{(peak - base) / int8:17.2f} {corr_text} {ratio}")  # fmt: skip


def main(args: argparse.Namespace) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="numerai-nodes-training-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}")  # fmt: skip
    shapes = ["quick"] if args.quick else ["bench"]
    if args.medium:
        shapes.append("medium")
    for shape in shapes:
        data = make_data(work, shape)
        # The medium shape trains only on the new path: the old one needs about 3x its 1.9 GB.
        kinds = ["old", "new", "bare"] if shape != "medium" else ["new"]
        results: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for i in range(args.repeats if shape != "medium" else 1):
            for kind in kinds:  # interleaved, so a busy machine slows every path alike
                results[kind].append(_run(kind, data, args.trees))
                print(f"  {shape} run {i + 1} {kind}: {results[kind][-1]['seconds']:.1f} s")
        _table(shape, results, args.trees)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="100k x 100 instead of 500k x 500")
    parser.add_argument("--medium", action="store_true", help="also train at ~2.7M x 705 (slow)")
    parser.add_argument("--work", help="data directory, reused between runs (default: a new one)")
    parser.add_argument("--child", choices=["old", "new", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    child(parsed) if parsed.child else main(parsed)
