"""Benchmark a declared fleet's round on the local stack: models over two specs, trained ahead.

    uv run python benchmarks/fleet_round.py [--models 10] [--timeout 900]

Declares `--models` Classic models over two specs in nodes.yaml (round-day pool `predict`,
training pool `train`, `train: false`) in a temporary project, brings the local stack up with a
tiny sandbox, runs each spec's training deployment, then opens one round. Prints how long until
every model has submitted (from the sandbox's webhook calls to its recorded submissions), and
the trainings: before round day (one per spec) and during the round (none, when it works).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.local_stack import running_stack  # noqa: E402
from deployments.fleet import training_deployment  # noqa: E402
from flows.entrypoints import TOURNAMENT_FLOW, TRAINING_FLOW  # noqa: E402
from flows.settings import API_URL_ENV, HOME_ENV  # noqa: E402
from flows.store import model_store  # noqa: E402
from infra.local.round import open_round  # noqa: E402
from infra.local.state import StackInfo  # noqa: E402
from tests.integration.local_stack import fleet_declarations, fleet_project  # noqa: E402

SPECS: dict[str, dict[str, Any]] = {
    "alpha": {"data_version": "v5.2", "feature_set": "small", "params": {"n_estimators": 20}},
    "beta": {"extends": "alpha", "params": {"n_estimators": 24}},
}
FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _post(info: StackInfo, path: str, body: dict | None = None) -> Any:
    answer = httpx.post(f"{info.prefect_api_url}/{path}", json=body or {}, timeout=30)
    answer.raise_for_status()
    return answer.json()


def _deployment_ids(info: StackInfo, flow: str, names: list[str]) -> list[str]:
    base = f"{info.prefect_api_url}/deployments/name/{flow}"
    return [httpx.get(f"{base}/{name}", timeout=30).json()["id"] for name in names]


def _runs(info: StackInfo, deployment_ids: list[str]) -> list[dict]:
    query = {"flow_runs": {"deployment_id": {"any_": deployment_ids}}, "limit": 200}
    return _post(info, "flow_runs/filter", query)


def _stored_models(home: Path, api_url: str) -> int:
    """How many models the stack's runs stored (the store of its home, for the sandbox's API)."""
    os.environ[HOME_ENV], os.environ[API_URL_ENV] = str(home), api_url
    return len(model_store().records())


def _ended(info: StackInfo, run_ids: list[str], timeout: float) -> list[dict]:
    """The flow runs `run_ids`, once each has ended."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _post(info, "flow_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}})
        if all(run["state_type"] in FINISHED for run in runs):
            return runs
        if time.monotonic() > deadline:
            sys.exit(f"flow runs still going after {timeout:.0f} s: {[r['name'] for r in runs]}")
        time.sleep(1)


def _round(info: StackInfo, models: list[str], timeout: float) -> tuple[int, list[dict]]:
    """Open a round; wait until every model has submitted. Returns the round and submissions."""
    assert info.sandbox_url is not None, "the stack was started with its sandbox"
    base = info.sandbox_url.rstrip("/")
    number = open_round(base)
    deadline = time.monotonic() + timeout
    while True:
        found = httpx.get(f"{base}/_sandbox/submissions", timeout=30).json()
        done = [s for s in found if s["round"] == number and s["model_name"] in models]
        if {s["model_name"] for s in done} == set(models):
            return number, done
        if time.monotonic() > deadline:
            sys.exit(f"round {number}: only {len(done)} of {len(models)} models submitted")
        time.sleep(0.5)


def _fired(info: StackInfo, number: int) -> dict[str, datetime]:
    """When the sandbox called each webhook of round `number`, by trigger id."""
    assert info.sandbox_url is not None
    deliveries = httpx.get(f"{info.sandbox_url.rstrip('/')}/_sandbox/webhooks", timeout=30).json()
    return {
        d["trigger_id"]: datetime.fromisoformat(d["fired_at"])
        for d in deliveries
        if d["round"] == number
    }


def _trained_in(info: StackInfo, runs: list[dict]) -> int:
    """How many of `runs` ran a training task."""
    query = {"flow_runs": {"id": {"any_": [r["id"] for r in runs]}}, "limit": 200}
    tasks = _post(info, "task_runs/filter", query)
    return len({t["flow_run_id"] for t in tasks if t["name"].startswith("train")})


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="numerai-nodes-fleet-bench-"))
    specs = list(SPECS)
    nodes = {f"model{i:02d}": specs[i % len(specs)] for i in range(args.models)}
    project = fleet_project(work / "project", fleet_declarations(nodes, SPECS))
    print(f"{args.models} models over {len(specs)} specs (pools: predict, train)")
    with running_stack(project, work / "home", "  ") as info:
        assert info.sandbox_url is not None
        trainings = _deployment_ids(
            info, TRAINING_FLOW.flow_name, [training_deployment(s) for s in specs]
        )
        node_deployments = _deployment_ids(info, TOURNAMENT_FLOW.flow_name, list(nodes))
        started = time.perf_counter()
        started_ids = [_post(info, f"deployments/{i}/create_flow_run")["id"] for i in trainings]
        trained = _ended(info, started_ids, args.timeout)
        elapsed = time.perf_counter() - started
        print(
            f"  before round day: {len(trained)} trainings, {_states(trained)}, in {elapsed:.1f} s;"
            f" {_stored_models(work / 'home', info.sandbox_url)} models stored"
        )

        number, submissions = _round(info, list(nodes), args.timeout)
        fired = _fired(info, number)
        seconds = sorted(
            (datetime.fromisoformat(s["inserted_at"]) - fired[s["trigger_id"]]).total_seconds()
            for s in submissions
        )
        last = max(datetime.fromisoformat(s["inserted_at"]) for s in submissions)
        all_done = (last - min(fired.values())).total_seconds()
        print(
            f"  round {number}: all {len(nodes)} submitted {all_done:.1f} s after the first "
            "webhook call"
        )
        print(
            f"    webhook → submission per model: first {seconds[0]:.1f} s, "
            f"p50 {statistics.median(seconds):.1f} s, last {seconds[-1]:.1f} s"
        )
        round_runs = [
            r["id"]
            for r in _runs(info, node_deployments)
            if r["parameters"].get("trigger_id") in fired
        ]
        runs = _ended(info, round_runs, args.timeout)
        print(f"    {len(submissions)} submissions; {len(runs)} node runs, {_states(runs)}")
        during = len(_runs(info, trainings)) - len(trained) + _trained_in(info, runs)
        stored = _stored_models(work / "home", info.sandbox_url)
        print(f"  during the round: {during} trainings; {stored} models stored")


def _states(runs: list[dict]) -> str:
    """`COMPLETED on pool train`, say: the runs' end states and pools."""
    states = ", ".join(sorted({run["state_type"] for run in runs}))
    return f"{states} on pool {', '.join(sorted({run['work_pool_name'] for run in runs}))}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10, help="Declared models (two specs).")
    parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait for a step.")
    main(parser.parse_args())
