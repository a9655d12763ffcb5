"""Benchmark the tournament node on benchmark-size sandbox data: cold vs warm runs, peak memory.

    uv run python benchmarks/tournament_node.py [--repeats 3] [--trees 200] [--old]

Starts a sandbox with the `bench` size (500k train rows x 500 int8 features), then runs the node
in fresh processes, side by side: cold runs (empty model cache: the node trains) and warm runs (the
model is cached). The data cache is primed first, so both measure the node, not the download.
Prints median wall times and the peak RSS of a cold run divided by the int8 feature-matrix bytes,
and a cold run's time over bare LightGBM's (benchmarks/training_memory.py's `bare`: read the
file, lgb.train the same trees). `--old` adds cold runs of the previous training path
(`benchmarks.tournament_old` as the node's model module), side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_MODEL = "benchmarks.tournament_old"  # the previous training path, kept for comparison
sys.path.insert(0, str(ROOT))


def child(args: argparse.Namespace) -> None:
    """One node run in this process; prints JSON with wall time and memory."""
    import psutil
    from prefect.testing.utilities import prefect_test_harness

    from flows.tournament import TournamentNode, tournament_node

    node = TournamentNode(
        numerai_model="sandbox_model",
        model=args.model,
        feature_set="all",
        params={"n_estimators": args.trees, "learning_rate": 0.05},
        score_validation=False,
    )
    with prefect_test_harness(server_startup_timeout=180):
        baseline = psutil.Process().memory_info().rss
        started = time.perf_counter()
        state = tournament_node(node, args.trigger, return_state=True)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "baseline_rss": baseline,
                      "state": state.name}))  # fmt: skip


def _run(
    env: dict[str, str], results: Path, trigger: str, trees: int, model: str = "models.tournament"
) -> dict:
    env = {**env, "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(results)}
    command = [sys.executable, __file__, "--child", "--trigger", trigger, "--trees", str(trees)]
    command += ["--model", model]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"benchmark run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bare(train_dir: Path, trees: int) -> float:
    """Seconds of bare LightGBM on the node's training file, in a fresh process."""
    script = str(Path(__file__).with_name("training_memory.py"))
    command = [sys.executable, script, "--child", "bare", "--data", str(train_dir)]
    done = subprocess.run([*command, "--trees", str(trees)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bare LightGBM failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main(args: argparse.Namespace) -> None:
    from infra.local.sandbox import start_sandbox

    work = Path(args.work or tempfile.mkdtemp(prefix="numerai-nodes-bench-"))
    started = time.perf_counter()
    sandbox = start_sandbox(work / "sandbox", "bench", timeout=1800)
    print(f"sandbox ready in {time.perf_counter() - started:.0f} s at {sandbox.url}")
    try:
        env = {
            **os.environ,
            **sandbox.env(),
            "NUMERAI_NODES_HOME": str(work / "home"),
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        prime = _run(env, work / "results-prime", "prime", args.trees)
        print(f"first run (download + train): {prime['seconds']:.1f} s")
        cold, warm, old, bare = [], [], [], []
        train_dir = next((work / "home").rglob("train.parquet")).parent
        for i in range(args.repeats):
            # The model store lives under the node's home: empty it so a cold run trains.
            shutil.rmtree(work / "home" / "models", ignore_errors=True)
            cold.append(_run(env, work / f"results-cold-{i}", f"cold-{i}", args.trees))
            warm.append(_run(env, work / "results-prime", f"warm-{i}", args.trees))
            if args.old:
                shutil.rmtree(work / "home" / "models", ignore_errors=True)
                results = work / f"results-old-{i}"
                old.append(_run(env, results, f"old-{i}", args.trees, OLD_MODEL))
            bare.append(_bare(train_dir, args.trees))
            pair = f"cold {cold[-1]['seconds']:.1f} s, warm {warm[-1]['seconds']:.1f} s"
            print(f"  pair {i + 1}: {pair}, bare LightGBM {bare[-1]:.1f} s")
    finally:
        sandbox.stop()

    rows, features = 500 * 1000, 500
    matrix_bytes = rows * features
    cold_s = statistics.median(r["seconds"] for r in cold)
    warm_s = statistics.median(r["seconds"] for r in warm)
    peak = statistics.median(r["peak_rss"] for r in cold)
    base = statistics.median(r["baseline_rss"] for r in cold)
    print(f"\nrepeats: {args.repeats}, trees: {args.trees}, int8: {matrix_bytes / 1e6:.0f} MB")
    bare_s = statistics.median(bare)
    print(f"bare LightGBM      median {bare_s:7.1f} s   (read the file, train {args.trees} trees)")
    print(f"cold run (trains)  median {cold_s:7.1f} s   cold/bare {cold_s / bare_s:.2f}")
    if old:
        old_s = statistics.median(r["seconds"] for r in old)
        old_peak = statistics.median(r["peak_rss"] - r["baseline_rss"] for r in old)
        print(f"old cold run       median {old_s:7.1f} s   old cold/bare {old_s / bare_s:.2f}, "
              f"peak above baseline {old_peak / matrix_bytes:.2f}x the int8 matrix")  # fmt: skip
    print(f"warm run (cached)  median {warm_s:7.1f} s   cold/warm {cold_s / warm_s:.1f}x")
    print(f"peak RSS, cold run {peak / 1e6:7.0f} MB = {peak / matrix_bytes:.2f}x the int8 matrix")
    print(f"  of which above the process baseline ({base / 1e6:.0f} MB): "
          f"{(peak - base) / 1e6:.0f} MB = {(peak - base) / matrix_bytes:.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--work", help="working directory (default: a new temporary one)")
    parser.add_argument("--old", action="store_true", help="also cold runs of the old training")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="models.tournament", help=argparse.SUPPRESS)
    parser.add_argument("--trigger", default="bench", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    child(parsed) if parsed.child else main(parsed)
