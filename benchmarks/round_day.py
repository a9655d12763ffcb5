"""Benchmark round day on the local stack: webhook → flow run created, webhook → submission.

    uv run python benchmarks/round_day.py [--rounds 20] [--fleet 10] [--fleet-rounds 5]
                                          [--warm both|on|off] [--database sqlite|postgres|both]

Brings a local stack up (Prefect server, process worker, gateway, tiny sandbox) in a temporary
home, first with the project's catalogue (one node), then with a generated catalogue of
`--fleet` tournament nodes. Prefect keeps its database in SQLite under that home, or in a
throwaway PostgreSQL (`--database postgres`, or `both` side by side). A warm-up round caches
the model, so the figures are for a warm model. Each round the sandbox opens a round and calls
every webhook at once; the figures come from the sandbox's delivery times, the times Prefect
received the events, its flow-run creation times and the sandbox's submission times. Prints
p50 and p95. `--warm both` measures each part twice, flow runs started cold (a fresh Python
process each, NUMERAI_NODES_WARM_START=false) and warm (forked from the stack's zygote), and
prints the figures side by side. Each part also prints the CPU-seconds a run costs each stack
process (the Prefect server, the runs' own processes, the gateway, the sandbox), and with both
parts the ratio of ten nodes' submission p50 to one node's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.local_stack import running_stack  # noqa: E402
from flows.events import WEBHOOK_RECEIVED  # noqa: E402
from flows.tournaments import CLASSIC  # noqa: E402
from infra.local.state import StackInfo  # noqa: E402


def _catalogue(project: Path, nodes: int) -> Path:
    """A project directory whose prefect.yaml declares `nodes` copies of the tournament node."""
    project.mkdir(parents=True)
    for name in ("flows", "models", "deployments", "infra", "sandbox"):
        (project / name).symlink_to(ROOT / name)
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    template = next(d for d in document["deployments"] if d["name"] == "tournament")
    entries = []
    for i in range(nodes):
        name = f"node{i:02d}"
        entry = yaml.safe_load(yaml.safe_dump(template))  # a deep copy without anchors
        entry["name"] = name
        entry["parameters"]["node"].update(name=name, numerai_model=f"model{i:02d}")
        entry["triggers"][0]["match"]["prefect.resource.id"] = f"numerai.node.{name}"
        entries.append(entry)
    document["deployments"] = entries
    document.pop("definitions", None)
    (project / "prefect.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return project


def _round(info, models: set[str], timeout: float = 900) -> list[tuple[float, float, float]]:
    """Open a round; per node, seconds from the webhook to: Prefect's event, the flow run's
    creation, the submission."""
    base = info.sandbox_url.rstrip("/")
    opened = httpx.post(f"{base}/_sandbox/rounds/open", json={"tournament": int(CLASSIC)})
    number = opened.json()["number"]
    deadline = time.monotonic() + timeout
    while True:
        subs = httpx.get(f"{base}/_sandbox/submissions").json()
        done = [s for s in subs if s["round"] == number and s["model_name"] in models]
        if len(done) >= len(models):
            break
        if time.monotonic() > deadline:
            sys.exit(f"round {number}: only {len(done)} of {len(models)} nodes submitted")
        time.sleep(0.5)
    deliveries = {
        d["trigger_id"]: datetime.fromisoformat(d["fired_at"])
        for d in httpx.get(f"{base}/_sandbox/webhooks").json()
        if d["round"] == number
    }
    runs = httpx.post(f"{info.prefect_api_url}/flow_runs/filter", json={"limit": 200}).json()
    created = {
        r["parameters"].get("trigger_id"): datetime.fromisoformat(r["created"]) for r in runs
    }
    received = _events_received(info.prefect_api_url, deliveries)
    _settle(info.prefect_api_url, deadline)
    figures = []
    for submission in done:
        trigger = submission["trigger_id"]
        fired = deliveries[trigger]
        inserted = datetime.fromisoformat(submission["inserted_at"])
        figures.append(
            (
                (received[trigger] - fired).total_seconds(),
                (created[trigger] - fired).total_seconds(),
                (inserted - fired).total_seconds(),
            )
        )
    return figures


def _settle(api_url: str, deadline: float) -> None:
    """Wait until no flow run is still going: a node's run lasts past its submission, and the
    next round's run of that node would wait for its one concurrency slot, a backoff of ~30 s."""
    while True:
        going = {
            "state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}},
            "expected_start_time": {"before_": datetime.now(UTC).isoformat()},  # not a schedule's
        }
        if not httpx.post(f"{api_url}/flow_runs/count", json={"flow_runs": going}).json():
            return
        if time.monotonic() > deadline:
            sys.exit("flow runs still going after the round's timeout")
        time.sleep(0.5)


def _events_received(api_url: str, deliveries: dict[str, datetime]) -> dict[str, datetime]:
    """Trigger id -> when Prefect received its webhook event (the gateway's
    part ends there; the automation and the flow run's creation are the server's)."""
    body = {
        "filter": {
            "event": {"name": [WEBHOOK_RECEIVED]},
            "occurred": {"since": min(deliveries.values()).isoformat()},
        },
        "limit": 50,  # the most the API gives in one page: a round here has fewer
    }
    deadline = time.monotonic() + 30
    while True:  # the server writes events to its database in batches, a few seconds apart
        events = httpx.post(f"{api_url}/events/filter", json=body).json()["events"]
        found = {
            e["resource"]["numerai.trigger-id"]: datetime.fromisoformat(e["received"])
            for e in events
        }
        if set(deliveries) <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def _measure(
    label: str,
    project: Path,
    home: Path,
    nodes: int,
    rounds: int,
    warm: bool,
    database_url: str | None = None,
) -> dict[str, list[float]]:
    models = {f"model{i:02d}" for i in range(nodes)} if nodes > 1 else {"my_model"}
    print(f"{label}: {nodes} node(s), {rounds} rounds")
    with running_stack(project, home, "  ", warm_start=warm, database_url=database_url) as info:
        _round(info, models)  # warm-up: trains and caches the model
        samples = []
        cpu: dict[str, list[float]] = {}
        for i in range(rounds):
            before = _cpu_seconds(info)
            figures = _round(info, models)  # returns once every run has ended
            after = _cpu_seconds(info)
            for name in after.keys() & before.keys():
                cpu.setdefault(name, []).append((after[name] - before[name]) / len(models))
            samples += figures
            slowest = max(s for *_, s in figures)
            print(f"  round {i + 1}/{rounds}: slowest webhook → submission {slowest:.1f} s")
    measured = {
        "event received": [e for e, _, _ in samples],
        "flow run created": [c for _, c, _ in samples],
        "submission": [s for *_, s in samples],
    }
    print(f"{label} ({len(samples)} runs):")
    for name, values in measured.items():
        print(f"  webhook → {name:<17} p50 {_p(values, 50):6.2f} s  p95 {_p(values, 95):6.2f} s")
    # Where a run's time goes when many share the cores: CPU per run, by process (the runs are
    # the zygote's or the worker's children; the database, when PostgreSQL, is not counted).
    spent = {name: statistics.median(values) for name, values in sorted(cpu.items())}
    print("  CPU-seconds per run (median over rounds): " + ", ".join(
        f"{name} {seconds:.2f}" for name, seconds in spent.items() if seconds >= 0.005
    ) + f"; all {sum(spent.values()):.2f}")  # fmt: skip
    return measured


def _side_by_side(label: str, measured: dict[str, dict[str, list[float]]]) -> None:
    """One table: each start mode's p50 and p95 per figure."""
    print(f"{label}, side by side:")
    print(f"  {'':<28}" + "".join(f"{mode + ' p50':>11}{mode + ' p95':>11}" for mode in measured))
    for name in next(iter(measured.values())):
        row = "".join(
            f"{_p(figures[name], 50):10.2f}s{_p(figures[name], 95):10.2f}s"
            for figures in measured.values()
        )
        print(f"  webhook → {name:<17}{row}")


@contextlib.contextmanager
def _database(kind: str, root: Path) -> Iterator[str | None]:
    """None for SQLite; for PostgreSQL, a throwaway server's URL while the block runs."""
    if kind == "sqlite":
        yield None
        return
    from tests.integration.postgres import Postgres

    if not Postgres.available():
        sys.exit("PostgreSQL's initdb and pg_ctl were not found: install postgresql")
    with Postgres(root) as server:
        yield server.url


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _cpu_seconds(info: StackInfo) -> dict[str, float]:
    """CPU-seconds so far of each stack process with all its descendants: the ones alive, and
    through their parents' children times the ones already reaped (the zygote's flow runs)."""
    totals: dict[str, float] = {}
    for process in info.processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(process.pid)
            seconds = 0.0
            for member in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = member.cpu_times()
                    seconds += t.user + t.system + t.children_user + t.children_system
            totals[process.name] = seconds
    return totals


def _fresh_fleet(project: Path, home: Path, nodes: int, timeout: float) -> None:
    """A fleet's first round on an empty cache: how many submit, how often each file is fetched."""
    models = {f"model{i:02d}" for i in range(nodes)}
    print(f"{nodes} nodes at once on a fresh cache, one round:")
    with running_stack(project, home, "  ") as info:
        assert info.sandbox_url is not None, "the stack was started with its sandbox"
        base = info.sandbox_url.rstrip("/")
        opened = httpx.post(f"{base}/_sandbox/rounds/open", json={"tournament": int(CLASSIC)})
        number = opened.json()["number"]
        deadline = time.monotonic() + timeout
        done: list[dict] = []
        while time.monotonic() < deadline:
            subs = httpx.get(f"{base}/_sandbox/submissions").json()
            done = [s for s in subs if s["round"] == number and s["model_name"] in models]
            if len({s["model_name"] for s in done}) >= nodes:
                break
            time.sleep(1)
        per_model = {name: sum(s["model_name"] == name for s in done) for name in models}
        print(f"  submitted: {sum(n > 0 for n in per_model.values())} of {nodes} nodes")
        print(f"  submitted twice: {sum(n > 1 for n in per_model.values())}")
        for name, count in sorted(httpx.get(f"{base}/_sandbox/downloads").json().items()):
            print(f"  {name}: downloaded {count} time(s)")


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="numerai-nodes-round-bench-"))
    if args.fresh_fleet:
        fleet = _catalogue(work / "fleet-project", args.fleet)
        os.chdir(fleet)
        _fresh_fleet(fleet, work / "fresh", args.fleet, args.timeout)
        return
    modes = {"both": ("cold", "warm"), "on": ("warm",), "off": ("cold",)}[args.warm]
    databases = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    fleet = _catalogue(work / "fleet-project", args.fleet)
    parts = (
        ("one node", ROOT, 1, args.rounds),
        (f"{args.fleet} nodes at once", fleet, args.fleet, args.fleet_rounds),
    )
    submissions: dict[int, dict[str, list[float]]] = {}
    for label, project, nodes, rounds in parts:
        if rounds <= 0:
            continue
        os.chdir(project)
        measured = {}
        for mode in modes:
            for database in databases:
                home = work / f"{nodes}-{mode}-{database}"
                warm = mode == "warm"
                key = f"{mode} {database}" if len(databases) > 1 else mode
                with _database(database, work / f"pg-{nodes}-{mode}") as url:
                    measured[key] = _measure(
                        f"{label}, {key}", project, home, nodes, rounds, warm, url
                    )
        _side_by_side(label, measured)
        submissions[nodes] = {key: figures["submission"] for key, figures in measured.items()}
    if len(submissions) == 2:  # P4: the fleet's slowest-in-a-round against one node, per mode
        one, many = submissions[1], submissions[args.fleet]
        for key in sorted(one.keys() & many.keys()):
            ratio = _p(many[key], 50) / _p(one[key], 50)
            print(f"{args.fleet} nodes / one node, webhook → submission p50, {key}: {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--fleet", type=int, default=10)
    parser.add_argument("--fleet-rounds", type=int, default=5)
    parser.add_argument(
        "--fresh-fleet",
        action="store_true",
        help="Only the fleet's first round on an empty cache: nodes submitted, fetches per file.",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="Prefect's database: SQLite under the scratch home, a throwaway PostgreSQL "
        "(initdb and pg_ctl on PATH or in /usr/lib/postgresql), or both side by side.",
    )
    parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait for a round.")
    parser.add_argument(
        "--warm",
        choices=("both", "on", "off"),
        default="both",
        help="Start flow runs warm (the zygote), cold, or measure both side by side.",
    )
    main(parser.parse_args())
