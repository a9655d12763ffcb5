"""`numerai-nodes sizes`: the machine-size presets, and what Numerai data each one fits."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from deployments.cli.output import console


def sizes(
    as_json: Annotated[bool, typer.Option("--json", help="Print the presets as JSON.")] = False,
) -> None:
    """The size presets (gen, cpu, mem; xs to 2xl): vCPU and memory on ECS Fargate and on Cloud
    Run, and whether training LightGBM on v5.2's full training set with each Classic feature set
    (small, medium, all), and predicting a live round, fits in memory.

    The memory needs are measured: benchmarks/container_sizes.py trains the example model in
    memory-limited containers of the node image (figures in deployments/presets.py).

    Pick a preset with `<<: *ecs-<preset>` in prefect.aws.yaml or
    `<<: *cloud-run-<preset>` in prefect.gcp.yaml.
    """
    from rich.table import Table

    from deployments.presets import (
        FEATURE_SETS,
        POOL_TYPES,
        STAGES,
        fits,
        machine,
        needed_mib,
        preset_names,
    )

    if as_json:
        presets = []
        for name in preset_names():
            entry: dict = {"preset": name}
            for pool_type in POOL_TYPES:
                vcpu, memory_mib = machine(name, pool_type)
                entry[pool_type] = {"vcpu": vcpu, "memory_mib": memory_mib, **fits(name, pool_type)}
            presets.append(entry)
        needs = {stage: {s: needed_mib(s, stage) for s in FEATURE_SETS} for stage in STAGES}
        console.print_json(json.dumps({"needed_mib": needs, "presets": presets}))
        return

    table = Table(title="Size presets (✓ fits, ✗ does not: Fargate / Cloud Run)")
    table.add_column("preset")
    for cloud in ("Fargate", "Cloud Run"):
        table.add_column(f"{cloud} vCPU", justify="right")
        table.add_column(f"{cloud} memory", justify="right")
    for feature_set in FEATURE_SETS:
        table.add_column(f"train {feature_set}", justify="center")
    table.add_column("predict", justify="center")
    for name in preset_names():
        machines = [machine(name, pool_type) for pool_type in POOL_TYPES]
        verdicts = [fits(name, pool_type) for pool_type in POOL_TYPES]
        table.add_row(
            name,
            *(cell for vcpu, mib in machines for cell in (f"{vcpu:g}", _gib(mib))),
            *(_marks(verdicts, "train", feature_set) for feature_set in FEATURE_SETS),
            _marks(verdicts, "predict", "all"),
        )
    console.print(table)
    train = ", ".join(f"{s} {_gib(needed_mib(s, 'train'))}" for s in FEATURE_SETS)
    console.print(
        f"[dim]Measured peak memory to train the example model on v5.2: {train}; predicting a "
        f"live round fits in {_gib(needed_mib('all', 'predict'))}. See deployments/presets.py.[/]",
        highlight=False,
    )


def _gib(mib: int) -> str:
    return f"{mib / 1024:.3g} GiB"


def _marks(verdicts: list[dict[str, dict[str, bool]]], stage: str, feature_set: str) -> str:
    return " / ".join("[green]✓[/]" if v[stage][feature_set] else "[red]✗[/]" for v in verdicts)
