"""Chaos benchmark: rounds on the local stack under the sandbox's seeded faults; prints the outcome.

    uv run python benchmarks/chaos_rounds.py [--rounds 20] [--seed 7] [--nodes 1]
        [--window-seconds 3600] [--profile bad-day]

Brings a local stack up (Prefect server, process worker, gateway, tiny sandbox) in a temporary
home, with a generated catalogue of `--nodes` copies of the tournament node, then turns the
sandbox's chaos on (the `bad-day` profile: 30% GraphQL 5xx, 20% delays of 2-8 s, 20% truncated
downloads, 20% failed PUTs, 5% dropped connections). Chaos starts after `up`, so the figures are
about round day, not about registering webhooks. Each round opens for `--window-seconds`
(Numerai's weekday rounds take submissions for an hour) and calls every webhook; a round is over
when every node's flow run has ended, or when it closes. No warm-up: the first round trains.

Prints rounds, node-rounds submitted before the close, submitted twice (must be 0), missed,
corrupt-file reads (flow runs whose state or logs name a parse error), the tries of each task,
the faults injected per kind, and the median and longest webhook → submission time. Exits 1
unless every node-round was submitted exactly once, before its close.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.local_stack import running_stack  # noqa: E402
from deployments.events import node_resource_id  # noqa: E402
from flows.tournaments import CLASSIC  # noqa: E402
from sandbox.chaos import COUNTED, DEFAULT_PROFILE, PROFILES  # noqa: E402

PARSE_ERRORS = ("JSONDecodeError", "ArrowInvalid")  # what reading a corrupt file raises
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_POLL_S = 1.0


@dataclass
class RoundPlayed:
    """One round as the benchmark saw it."""

    number: int
    close_time: datetime
    fired: dict[str, datetime] = field(default_factory=dict)  # model id -> webhook fired
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # flow run id -> flow run
    closed_first: bool = False


def _catalogue(project: Path, nodes: int) -> tuple[Path, set[str]]:
    """A project whose prefect.yaml declares `nodes` copies of the tournament node."""
    project.mkdir(parents=True)
    for name in ("flows", "models", "deployments", "infra", "sandbox"):
        (project / name).symlink_to(ROOT / name)
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    template = next(d for d in document["deployments"] if d["name"] == "tournament")
    entries, models = [], set()
    for i in range(nodes):
        name, model = f"node{i:02d}", f"model{i:02d}"
        entry = yaml.safe_load(yaml.safe_dump(template))  # a deep copy without anchors
        entry["name"] = name
        entry["parameters"]["node"].update(name=name, numerai_model=model)
        entry["triggers"][0]["match"]["prefect.resource.id"] = node_resource_id(name)
        entries.append(entry)
        models.add(model)
    document["deployments"] = entries
    document.pop("definitions", None)
    (project / "prefect.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return project, models


def _flow_runs(prefect_api: str, since: datetime) -> list[dict[str, Any]]:
    """Every flow run expected to start after `since`."""
    runs: list[dict[str, Any]] = []
    while True:
        body = {
            "flow_runs": {"expected_start_time": {"after_": since.isoformat()}},
            "limit": 200,
            "offset": len(runs),
        }
        page = httpx.post(f"{prefect_api}/flow_runs/filter", json=body, timeout=30).json()
        runs += page
        if len(page) < 200:
            return runs


def _play(base: str, prefect_api: str, model_ids: set[str], window: float) -> RoundPlayed:
    """Open a round; follow it until every node's run ended or the round closed."""
    opened_at = datetime.now(UTC)
    opened = httpx.post(
        f"{base}/_sandbox/rounds/open",
        json={"tournament": int(CLASSIC), "window_seconds": window},
        timeout=60,
    ).json()
    played = RoundPlayed(opened["number"], datetime.fromisoformat(opened["closeTime"]))
    while True:
        deliveries = httpx.get(f"{base}/_sandbox/webhooks", timeout=30).json()
        mine = {d["trigger_id"]: d for d in deliveries if d["round"] == played.number}
        played.fired = {d["model_id"]: datetime.fromisoformat(d["fired_at"]) for d in mine.values()}
        runs = [
            r
            for r in _flow_runs(prefect_api, opened_at)
            if r["parameters"].get("trigger_id") in mine
        ]
        played.runs = {r["id"]: r for r in runs}
        ended = {
            mine[r["parameters"]["trigger_id"]]["model_id"]
            for r in runs
            if r["state_type"] in FINAL_STATES
        }
        undeliverable = {
            d["model_id"] for d in mine.values() if d["delivered_at"] is None and d["error"]
        }
        if model_ids <= ended | undeliverable:
            return played
        if datetime.now(UTC) >= played.close_time:
            played.closed_first = True
            return played
        time.sleep(_POLL_S)


def _parse_error_runs(prefect_api: str, runs: dict[str, dict[str, Any]]) -> int:
    """How many runs read a corrupt file: a parse error in their final state or their logs."""
    corrupt = {
        run_id
        for run_id, run in runs.items()
        if any(name in ((run.get("state") or {}).get("message") or "") for name in PARSE_ERRORS)
    }
    offset = 0
    while runs:
        body = {"logs": {"flow_run_id": {"any_": list(runs)}}, "limit": 200, "offset": offset}
        page = httpx.post(f"{prefect_api}/logs/filter", json=body, timeout=30).json()
        corrupt |= {
            log["flow_run_id"] for log in page if any(n in log["message"] for n in PARSE_ERRORS)
        }
        offset += len(page)
        if len(page) < 200:
            break
    return len(corrupt)


def _task_tries(prefect_api: str, runs: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Task name -> (task runs, tries) over the flow runs: how often each step was retried."""
    found: list[dict[str, Any]] = []
    while runs:
        body = {
            "flow_runs": {"id": {"any_": list(runs)}},
            "limit": 200,
            "offset": len(found),
        }
        page = httpx.post(f"{prefect_api}/task_runs/filter", json=body, timeout=30).json()
        found += page
        if len(page) < 200:
            break
    tries: dict[str, tuple[int, int]] = {}
    for task_run in found:
        name = task_run["name"].rsplit("-", 1)[0]  # "submit-a1b" -> "submit"
        count, total = tries.get(name, (0, 0))
        tries[name] = (count + 1, total + max(task_run["run_count"], 1))
    return tries


def _report(base: str, prefect_api: str, played: list[RoundPlayed], model_ids: set[str]) -> bool:
    submissions = httpx.get(f"{base}/_sandbox/submissions", timeout=30).json()
    per_node_round = Counter((s["model_id"], s["round"]) for s in submissions)
    closes = {r.number: r.close_time for r in played}
    in_time = [
        s
        for s in submissions
        if s["round"] in closes and datetime.fromisoformat(s["inserted_at"]) < closes[s["round"]]
    ]
    node_rounds = [(m, r.number) for r in played for m in sorted(model_ids)]
    # Submitted means before the close: a late submission counts as missed.
    submitted = len({(s["model_id"], s["round"]) for s in in_time} & set(node_rounds))
    twice = sum(1 for key in node_rounds if per_node_round[key] >= 2)
    missed = len(node_rounds) - submitted
    latencies = []
    for r in played:
        firsts: dict[str, datetime] = {}
        for s in submissions:
            if s["round"] == r.number and s["model_id"] not in firsts:
                firsts[s["model_id"]] = datetime.fromisoformat(s["inserted_at"])
        latencies += [(t - r.fired[m]).total_seconds() for m, t in firsts.items() if m in r.fired]
    runs = {run_id: run for r in played for run_id, run in r.runs.items()}
    states = Counter(run["state_type"] for run in runs.values())
    corrupt = _parse_error_runs(prefect_api, runs)
    chaos = httpx.get(f"{base}/_sandbox/chaos", timeout=30).json()

    print(f"rounds:                      {len(played)} ({len(node_rounds)} node-rounds)")
    print(f"  closed before every run ended: {sum(r.closed_first for r in played)}")
    print(f"submitted before close:      {submitted} node-rounds ({len(in_time)} submissions)")
    print(f"submitted twice:             {twice}")
    print(f"missed:                      {missed}")
    print(f"corrupt-file reads:          {corrupt} runs naming {' / '.join(PARSE_ERRORS)}")
    by_state = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
    print(f"flow runs:                   {len(runs)} ({by_state})")
    failures = Counter(
        ((run.get("state") or {}).get("message") or "?")[:150]
        for run in runs.values()
        if run["state_type"] in FINAL_STATES - {"COMPLETED"}
    )
    for message, count in failures.most_common():
        print(f"  {count} x {message}")
    print("task tries (task runs: tries, over every flow run):")
    for name, (count, total) in sorted(_task_tries(prefect_api, runs).items()):
        print(f"  {name:<20} {count} runs: {total} tries")
    print(f"faults injected (seed {chaos['seed']}, {chaos['requests']} API/file requests):")
    for kind in COUNTED:
        print(f"  {kind:<12} {chaos['counts'][kind]}")
    if latencies:
        print(
            f"webhook → submission:        median {statistics.median(latencies):.1f} s, "
            f"max {max(latencies):.1f} s ({len(latencies)} submissions)"
        )
    else:
        print("webhook → submission:        no submissions")
    return submitted == len(node_rounds) and twice == 0


def main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="numerai-nodes-chaos-bench-"))
    project, models = _catalogue(work / "project", args.nodes)
    os.chdir(project)
    chaos_name = "off" if args.profile == "off" else f"seed {args.seed} ({args.profile})"
    print(
        f"{args.rounds} rounds, {args.nodes} node(s), {args.window_seconds:g} s windows, "
        f"chaos {chaos_name}",
        flush=True,
    )
    with running_stack(project, work / "home", "") as info:
        assert info.sandbox_url is not None, "up(sandbox=True) starts the sandbox"
        base, prefect_api = info.sandbox_url.rstrip("/"), info.prefect_api_url.rstrip("/")
        state = httpx.get(f"{base}/_sandbox/state", timeout=30).json()
        model_ids = {m["id"] for m in state["models"] if m["name"] in models}
        chaos: dict[str, Any] = (
            {"enabled": False}
            if args.profile == "off"
            else {"seed": args.seed, "profile": args.profile}
        )
        httpx.post(f"{base}/_sandbox/chaos", json=chaos, timeout=30).raise_for_status()
        played = []
        for i in range(args.rounds):
            started = time.monotonic()
            played.append(_play(base, prefect_api, model_ids, args.window_seconds))
            print(
                f"  round {i + 1}/{args.rounds} ({played[-1].number}): over in "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            )
        ok = _report(base, prefect_api, played, model_ids)
    print("verdict: " + ("every node-round submitted once, before its close" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="Rounds to play.")
    parser.add_argument("--seed", type=int, default=7, help="The chaos seed.")
    parser.add_argument("--nodes", type=int, default=1, help="Tournament nodes in the catalogue.")
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=3600.0,
        help="How long each round takes submissions (Numerai's weekday rounds: an hour). Keep "
        "it well above the node's retry margin before the close, or every retry is refused.",
    )
    parser.add_argument(
        "--profile",
        choices=[*sorted(PROFILES), "off"],
        default=DEFAULT_PROFILE,
        help="How bad a day; `off` is the control run, without faults.",
    )
    sys.exit(main(parser.parse_args()))
