"""Size presets by measurement: the node image, and training in memory-limited containers.

    uv run python benchmarks/container_sizes.py [--quick] [--features 500] [--trees 10]
    uv run python benchmarks/container_sizes.py --medium [--trees 10]

Needs podman (the container tests' recipe: tests/integration/podman.py). Prints, in one run:
1. the image: its size, a cached build's time, and its cold start (median of 3): `podman run`
   of a node flow run against a loopback sandbox and Prefect server, to the flow's first log line;
2. training memory in the image: sandbox-shaped Classic data at growing row counts, each trained by
   `models.tournament.train` in a fresh container without a limit; the peak RSS (ru_maxrss) of
   each gives  peak = max(floor, base + k x int8 feature bytes), the line through the two
   largest (flows/memory.py and models/footprint.py keep these figures);
3. the line checked against the kernel: the largest file trains under a memory limit 25 % above
   what the line says it needs, and is killed (exit 137) under one 25 % below;
4. per size preset, the largest training set its memory holds by that line (rows of Numerai's
   small, medium and all feature sets), and the predict-only peak on a live round of the `all`
   set (6,000 rows x 2,376 features).
The node baseline is a node process's RSS after importing its flow (Prefect, LightGBM, pandas).

`--medium` instead trains Numerai's `medium` shape (2.7M rows x 705 int8 features, 1.8 GiB) in
the image under the `gen-m` preset's memory limit (no swap), and prints whether it trained, its
peak and the peak above the node baseline per int8 feature byte.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deployments.presets import (  # noqa: E402
    ECS,
    FEATURE_SETS,
    LIVE_ROWS,
    TRAIN_ROWS,
    machine,
    preset_names,
)
from tests.integration import podman  # noqa: E402

_MIB = 2**20
_TRAIN = """
import json, resource, sys, time
import pyarrow.parquet as pq
from models import tournament
path, trees = sys.argv[1], int(sys.argv[2])
features = [c for c in pq.read_schema(path).names if c.startswith("feature_")]
started = time.perf_counter()
tournament.train(path, features, "target", {"n_estimators": trees, "learning_rate": 0.05})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak, "seconds": time.perf_counter() - started}))
"""
_BASELINE = """
import json, resource
import flows.tournament
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""
_PREDICT = """
import json, resource, sys
import numpy as np, pyarrow.parquet as pq, lightgbm as lgb
from models import tournament
path = sys.argv[1]
features = [c for c in pq.read_schema(path).names if c.startswith("feature_")]
x = np.random.default_rng(0).integers(0, 5, (2000, len(features))).astype(np.float32)
model = lgb.train({"verbose": -1, "num_leaves": 31}, lgb.Dataset(x, x[:, 0]), num_boost_round=50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tournament.predict(model, path, features)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak, "before": before}))
"""


def _container(
    image: str, script: str, *args: str, data: Path | None = None, memory_mib: int | None = None
) -> tuple[int, dict]:
    """Run `script` in a fresh container of `image`; (exit code, the JSON it printed or {})."""
    command = [*podman.run_args(), "--rm"]
    if data is not None:
        command += ["--volume", f"{data}:{data}:ro"]
    if memory_mib:
        command += ["--memory", f"{memory_mib}m", "--memory-swap", f"{memory_mib}m"]
    # conmon leaves a file named `oom` in its working directory after an out-of-memory kill.
    done = subprocess.run(
        [*command, image, "python", "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return 0, json.loads(lines[-1])
    if done.returncode not in (0, 137):
        sys.exit(f"container failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.returncode, {}


def _make_data(work: Path, eras: int, features: int, rows_per_era: int) -> Path:
    """Sandbox-shaped Classic data: `eras` x `rows_per_era` train rows of `features` int8."""
    from sandbox.classic_data import write_base
    from sandbox.classic_spec import DATA_VERSION, ClassicSpec
    from sandbox.sizes import SizePreset

    directory = work / f"{eras}x{rows_per_era}x{features}"
    preset = SizePreset(directory.name, eras, 4, rows_per_era, features, 500, chunk_eras=10)
    write_base(ClassicSpec(preset, 0, DATA_VERSION), directory)
    return directory / "train.parquet"


def _cold_start(image: str, repeats: int, work: Path) -> list[float]:
    """Seconds from `podman run` to the flow's first log line, for a node run in the image."""
    from sandbox.runner import Sandbox
    from tests.integration.servers import PrefectServer

    seconds = []
    with (
        Sandbox(work / "sandbox", size="tiny", models=["sandbox_model"]) as sandbox,
        PrefectServer(work / "prefect") as prefect,
    ):
        env = {
            "PREFECT_API_URL": prefect.api_url,
            "NUMERAI_API_URL": sandbox.url,
            "NUMERAI_PUBLIC_ID": sandbox.public_id,
            "NUMERAI_SECRET_KEY": sandbox.secret_key,
        }
        flags = [arg for name in env for arg in ("--env", name)]
        command = ["numerai-nodes", "run", "tournament", "--model", "sandbox_model"]
        command += ["--param", "n_estimators=5", "--no-score"]
        for _ in range(repeats):
            started = time.perf_counter()
            process = subprocess.Popen(
                [*podman.run_args(), "--rm", *flags, image, *command],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            first = None
            for line in process.stdout:
                if first is None and "Beginning flow run" in line:
                    first = time.perf_counter() - started
            if process.wait() != 0 or first is None:
                sys.exit("the node run in the container failed or logged no flow start")
            seconds.append(first)
    return seconds


def medium(args: argparse.Namespace) -> None:
    """Train the `medium` shape in the image under gen-m's memory limit."""
    build = podman.build()
    work = Path(tempfile.mkdtemp(prefix="container-sizes-medium-"))
    _, base = _container(build.image, _BASELINE)
    baseline = base["peak"]
    features = FEATURE_SETS["medium"]
    eras = TRAIN_ROWS // 1000
    print(f"writing {eras * 1000:,} rows x {features} features ...", flush=True)
    path = _make_data(work, eras, features, 1000)
    _, limit = machine("gen-m", ECS)
    int8 = eras * 1000 * features
    code, result = _container(
        build.image, _TRAIN, str(path), str(args.trees), data=path, memory_mib=limit
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; image {build.image}")
    print(f"node baseline: {baseline / _MIB:.0f} MiB; int8 features {int8 / _MIB:,.0f} MiB")
    if code != 0:
        print(f"{eras * 1000:,} x {features}, {args.trees} trees, under gen-m's {limit} MiB: "
              f"killed (exit {code})")  # fmt: skip
        return
    ratio = (result["peak"] - baseline) / int8
    print(f"{eras * 1000:,} x {features}, {args.trees} trees, under gen-m's {limit} MiB: trained "
          f"in {result['seconds']:.0f} s, peak {result['peak'] / _MIB:,.0f} MiB, "
          f"above baseline / int8 bytes {ratio:.2f}x")  # fmt: skip


def main(args: argparse.Namespace) -> None:
    if args.medium:
        return medium(args)
    build = podman.build()
    cached = podman.build()
    work = Path(tempfile.mkdtemp(prefix="container-sizes-"))
    starts = _cold_start(build.image, 3, work)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"image {build.image}: {build.size_bytes / 1e9:.2f} GB; cached build {cached.seconds:.1f} s"
    )
    cold = statistics.median(starts)
    print(f"cold start (podman run -> the flow's first log line): median {cold:.2f} s")

    _, base = _container(build.image, _BASELINE)
    baseline = base["peak"]
    print(f"node baseline (a process after `import flows.tournament`): {baseline / _MIB:.0f} MiB")

    eras = (20, 40, 80) if args.quick else (100, 200, 400, 800)
    points = []
    header = ("rows", "features", "int8 MiB", "peak MiB", "above base / int8", "s")
    print("\n{:>9} {:>8} {:>9} {:>9} {:>18} {:>6}".format(*header))
    for count in eras:
        path = _make_data(work, count, args.features, 1000)
        rows = count * 1000
        int8 = rows * args.features
        code, result = _container(build.image, _TRAIN, str(path), str(args.trees), data=path)
        assert code == 0, f"training {rows} rows failed ({code})"
        points.append((int8, result["peak"], path))
        ratio = (result["peak"] - baseline) / int8
        print(f"{rows:>9,} {args.features:>8} {int8 / _MIB:>9.0f} {result['peak'] / _MIB:>9.0f} "
              f"{ratio:>18.2f} {result['seconds']:>6.1f}")  # fmt: skip

    # Below a floor (the process, the bin sample, LightGBM's buffers) the peak hardly moves;
    # above it, it grows with the binned data: the line through the two largest trainings.
    (x1, y1, _), (x2, y2, _) = points[-2:]
    slope = (y2 - y1) / (x2 - x1)
    intercept = y1 - slope * x1
    floor = points[0][1]
    print(f"\nline: peak = max({floor / _MIB:.0f} MiB, {intercept / _MIB:.0f} MiB + "
          f"{slope:.2f} x int8 bytes) (node baseline {baseline / _MIB:.0f} MiB)")  # fmt: skip

    largest, _, path = points[-1]
    need_mib = int(max(floor, intercept + slope * largest) / _MIB)
    above = int(need_mib * 1.25)
    below = int(need_mib * 0.75)
    code_above, _ = _container(
        build.image, _TRAIN, str(path), str(args.trees), data=path, memory_mib=above
    )
    code_below, _ = _container(
        build.image, _TRAIN, str(path), str(args.trees), data=path, memory_mib=below
    )
    print(f"check: the largest file needs {need_mib} MiB by the line; under {above} MiB it "
          f"{'trained' if code_above == 0 else f'exited {code_above}'}, under {below} MiB it "
          f"{'trained' if code_below == 0 else f'exited {code_below}'}")  # fmt: skip

    live = work / "live"
    live.mkdir()
    live_path = _live_file(live, LIVE_ROWS, FEATURE_SETS["all"])
    _, predicted = _container(build.image, _PREDICT, str(live_path), data=live_path)
    print(f"predict-only: a live round of {LIVE_ROWS:,} x {FEATURE_SETS['all']:,} peaks at "
          f"{predicted['peak'] / _MIB:.0f} MiB")  # fmt: skip

    print(
        f"\n{'preset':<8} {'Fargate MiB':>11} "
        + " ".join(f"{'rows ' + s:>14}" for s in FEATURE_SETS)
    )
    for name in preset_names():
        _, memory = machine(name, ECS)
        room = memory * _MIB - intercept
        cells = [f"{max(0, room / slope / n):>14,.0f}" for n in FEATURE_SETS.values()]
        print(f"{name:<8} {memory:>11} " + " ".join(cells))


def _live_file(work: Path, rows: int, features: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = np.random.default_rng(0).integers(0, 5, (rows, features), dtype=np.int8)
    columns = {f"feature_{i:04d}": values[:, i] for i in range(features)}
    table = pa.table({"id": [f"n{i:015x}" for i in range(rows)], **columns})
    path = work / "live.parquet"
    pq.write_table(table, path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small data: 20k to 80k rows.")
    parser.add_argument(
        "--medium", action="store_true", help="Only: the medium shape under gen-m's limit (slow)."
    )
    parser.add_argument("--features", type=int, default=500, help="Feature columns (int8).")
    parser.add_argument("--trees", type=int, default=10, help="Trees per training.")
    if (reason := podman.unavailable()) is not None:
        sys.exit(reason)
    main(parser.parse_args())
