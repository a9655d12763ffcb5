"""Start-up benchmark: how long fresh processes take to show the CLI's help and to import a node.

    uv run python benchmarks/startup.py [--runs 15] [--quick]

Each command runs in `--runs` fresh processes (`--quick`: 5), interleaved (one of each per turn,
so a machine that gets busy slows them alike), after one unmeasured warm-up run each. Prints the
median, fastest and slowest wall time of each, side by side:

- `numerai-nodes --help` and `numerai-nodes node --help`: the console script of this
  environment (what `uv run numerai-nodes` starts), with the goal for `--help` (0.3 s warm);
- the same `--help` through `uv run --no-sync`, when uv is on the PATH (uv's own start added);
- `python -c 'import flows.tournament'`: what a Classic node run imports before its first step;
- `python -c 'import lightgbm'`;
- `python -c pass`: the interpreter alone, the floor under every row.

For where the time goes, run one of them under `python -X importtime`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELP_GOAL_S = 0.3  # P7: `numerai-nodes --help`, warm


def commands() -> dict[str, list[str]]:
    """What to time, by the label printed: each a command line run from the project root."""
    python = sys.executable
    script = Path(python).with_name("numerai-nodes")
    cli = [str(script)] if script.exists() else [python, "-m", "deployments.cli"]
    found: dict[str, list[str]] = {
        "numerai-nodes --help": [*cli, "--help"],
        "numerai-nodes node --help": [*cli, "node", "--help"],
    }
    uv = shutil.which("uv")
    if uv is not None:
        found["uv run --no-sync numerai-nodes --help"] = [
            uv,
            "run",
            "--no-sync",
            "numerai-nodes",
            "--help",
        ]
    found["python -c 'import flows.tournament'"] = [python, "-c", "import flows.tournament"]
    found["python -c 'import lightgbm'"] = [python, "-c", "import lightgbm"]
    found["python -c pass"] = [python, "-c", "pass"]
    return found


def _timed(command: list[str]) -> float:
    """Seconds one fresh process takes, start to exit; a failing command stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr.strip()[-2000:]}"
        )
    return elapsed


def measure(runs: int) -> dict[str, list[float]]:
    """Each command's wall times over `runs` fresh processes, interleaved."""
    timed = commands()
    for command in timed.values():  # warm the page cache and the bytecode caches
        _timed(command)
    times: dict[str, list[float]] = {label: [] for label in timed}
    for _ in range(runs):
        for label, command in timed.items():
            times[label].append(_timed(command))
    return times


def report(times: dict[str, list[float]]) -> str:
    width = max(len(label) for label in times)
    lines = [f"{'command':<{width}}  {'median':>7}  {'fastest':>7}  {'slowest':>7}"]
    for label, seconds in times.items():
        lines.append(
            f"{label:<{width}}  {statistics.median(seconds):>6.3f}s  {min(seconds):>6.3f}s  "
            f"{max(seconds):>6.3f}s"
        )
    help_median = statistics.median(times["numerai-nodes --help"])
    verdict = "met" if help_median <= HELP_GOAL_S else "missed"
    lines.append(
        f"\n{len(next(iter(times.values())))} fresh processes each; goal for "
        f"`numerai-nodes --help` <= {HELP_GOAL_S:.1f} s warm: {verdict}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per command")
    parser.add_argument("--quick", action="store_true", help="5 runs per command")
    args = parser.parse_args()
    print(report(measure(5 if args.quick else args.runs)))


if __name__ == "__main__":
    main()
