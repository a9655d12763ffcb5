"""`numerai-nodes sizes`: the machine-size presets, and what Numerai data each one fits."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from deployments.cli.output import console


def sizes(
    as_json: Annotated[bool, typer.Option("--json", help="Print the presets as JSON.")] = False,
) -> None:
    """The size presets (gen, cpu, mem; xs to 2xl): vCPU and memory on ECS Fargate, on Cloud
    Run and on Azure Container Instances (which runs only the presets within one container
    group: 4 vCPU, 16 GB), and whether training LightGBM on v5.2's full training set with each
    Classic feature set (small, medium, all), and predicting a live round, fits in memory.

    The memory needs are measured: benchmarks/container_sizes.py trains the example model in
    memory-limited containers of the node image (figures in deployments/presets.py).

    Pick a preset with `<<: *ecs-<preset>` in prefect.aws.yaml,
    `<<: *cloud-run-<preset>` in prefect.gcp.yaml or `<<: *aci-<preset>` in prefect.azure.yaml.
    """
    from rich.table import Table

    from deployments.presets import (
        ACI,
        CLOUD_RUN_V2,
        ECS,
        FEATURE_SETS,
        STAGES,
        VALID_POOL_TYPES,
        fits,
        machine,
        needed_mib,
        preset_names,
        runs_on,
    )

    if as_json:
        presets = []
        for name in preset_names():
            entry: dict = {"preset": name}
            for pool_type in VALID_POOL_TYPES:
                if not runs_on(name, pool_type):
                    entry[pool_type] = {"runs": False}
                    continue
                vcpu, memory_mib = machine(name, pool_type)
                entry[pool_type] = {
                    "runs": True,
                    "vcpu": vcpu,
                    "memory_mib": memory_mib,
                    **fits(name, pool_type),
                }
            presets.append(entry)
        needs = {stage: {s: needed_mib(s, stage) for s in FEATURE_SETS} for stage in STAGES}
        console.print_json(json.dumps({"needed_mib": needs, "presets": presets}))
        return

    names = {ECS: "Fargate", CLOUD_RUN_V2: "Cloud Run", ACI: "ACI"}  # the machine of each pool
    clouds = " / ".join(names[pool_type] for pool_type in VALID_POOL_TYPES)
    table = Table(title=f"Size presets (✓ fits, ✗ does not, - too big to run there: {clouds})")
    table.add_column("preset")
    for pool_type in VALID_POOL_TYPES:
        table.add_column(f"{names[pool_type]} vCPU", justify="right")
        table.add_column(f"{names[pool_type]} memory", justify="right")
    for feature_set in FEATURE_SETS:
        table.add_column(f"train {feature_set}", justify="center")
    table.add_column("predict", justify="center")
    for name in preset_names():
        machines: list[tuple[float, int] | None] = []
        verdicts: list[dict[str, dict[str, bool]] | None] = []
        for pool_type in VALID_POOL_TYPES:
            runs = runs_on(name, pool_type)
            machines.append(machine(name, pool_type) if runs else None)
            verdicts.append(fits(name, pool_type) if runs else None)
        table.add_row(
            name,
            *(cell for found in machines for cell in _machine_cells(found)),
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


def _machine_cells(found: tuple[float, int] | None) -> tuple[str, str]:
    if found is None:
        return "[dim]-[/]", "[dim]too big[/]"
    vcpu, mib = found
    return f"{vcpu:g}", _gib(mib)


def _marks(verdicts: list[dict[str, dict[str, bool]] | None], stage: str, feature_set: str) -> str:
    return " / ".join(
        "[dim]-[/]" if v is None else "[green]✓[/]" if v[stage][feature_set] else "[red]✗[/]"
        for v in verdicts
    )
