"""Machine-size presets (`gen-m`, `mem-l`, …): job variables on ECS, Cloud Run, ACI; what fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

from flows.errors import ConfigurationError
from flows.memory import training_mib
from models.footprint import TRAIN_BYTES_PER_VALUE

FAMILIES = ("gen", "cpu", "mem")
SIZES = ("xs", "s", "m", "l", "xl", "2xl")
ECS = "ecs"
CLOUD_RUN_V2 = "cloud-run-v2"
ACI = "azure-container-instance"
# The pools every preset runs on (`numerai-nodes sizes` shows each); ACI runs the smaller ones.
POOL_TYPES = (ECS, CLOUD_RUN_V2)
VALID_POOL_TYPES = (*POOL_TYPES, ACI)
# One ACI container group (standard Linux, no GPU) gets at most 4 vCPU and 16 GB.
ACI_MAX_CPU = 4.0
ACI_MAX_MEMORY_GB = 16.0
# Cloud Run's default task timeout is 600 s: too short to train a model on a cold cache.
CLOUD_RUN_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Size:
    """One preset: Fargate task size (CPU units, MiB) and Cloud Run v2 limits (vCPU, MiB)."""

    fargate_cpu: int
    fargate_memory_mib: int
    cloud_run_cpu: int
    cloud_run_memory_mib: int


# Fargate: gen has 4 GiB per vCPU, cpu 2 GiB, mem 8 GiB (capped at Fargate's maximum).
# Cloud Run allows at most 4 GiB per vCPU and 8 vCPU / 32 GiB, so its larger sizes cap there.
# ACI takes Fargate's size as cores and GB (fractions allowed), up to its container-group limit;
# a bigger preset is refused there rather than silently shrunk.
_GIB = 1024
PRESETS: dict[str, Size] = {
    "gen-xs": Size(512, 2 * _GIB, 1, 2 * _GIB),
    "gen-s": Size(1024, 4 * _GIB, 1, 4 * _GIB),
    "gen-m": Size(2048, 8 * _GIB, 2, 8 * _GIB),
    "gen-l": Size(4096, 16 * _GIB, 4, 16 * _GIB),
    "gen-xl": Size(8192, 32 * _GIB, 8, 32 * _GIB),
    "gen-2xl": Size(16384, 64 * _GIB, 8, 32 * _GIB),
    "cpu-xs": Size(512, 1 * _GIB, 1, 1 * _GIB),
    "cpu-s": Size(1024, 2 * _GIB, 1, 2 * _GIB),
    "cpu-m": Size(2048, 4 * _GIB, 2, 4 * _GIB),
    "cpu-l": Size(4096, 8 * _GIB, 4, 8 * _GIB),
    "cpu-xl": Size(8192, 16 * _GIB, 8, 16 * _GIB),
    "cpu-2xl": Size(16384, 32 * _GIB, 8, 32 * _GIB),
    "mem-xs": Size(512, 4 * _GIB, 1, 4 * _GIB),
    "mem-s": Size(1024, 8 * _GIB, 2, 8 * _GIB),
    "mem-m": Size(2048, 16 * _GIB, 4, 16 * _GIB),
    "mem-l": Size(4096, 30 * _GIB, 8, 24 * _GIB),
    "mem-xl": Size(8192, 60 * _GIB, 8, 32 * _GIB),
    "mem-2xl": Size(16384, 120 * _GIB, 8, 32 * _GIB),
}


def preset_names() -> list[str]:
    """Every preset name, family by family, smallest first."""
    return [f"{family}-{size}" for family in FAMILIES for size in SIZES]


def known_preset(preset: str) -> str:
    """`preset` itself, or a ConfigurationError (a ValueError) listing the valid presets."""
    if preset not in PRESETS:
        raise ConfigurationError(
            f"Unknown size preset '{preset}'. Valid presets: {', '.join(preset_names())}."
        )
    return preset


# A settings field holding a preset name, checked when the settings load.
Preset = Annotated[str, AfterValidator(known_preset)]


def job_variables(preset: str, pool_type: str) -> dict:
    """Job variables that size a flow run on a pool of `pool_type` (`ecs`, `cloud-run-v2` or
    `azure-container-instance`)."""
    size = PRESETS[known_preset(preset)]
    if pool_type == ECS:
        # prefect-aws takes CPU units and MiB as integers.
        return {"cpu": size.fargate_cpu, "memory": size.fargate_memory_mib}
    if pool_type == CLOUD_RUN_V2:
        return {
            "cpu": str(size.cloud_run_cpu),
            "memory": f"{size.cloud_run_memory_mib // _GIB}Gi",
            "timeout": CLOUD_RUN_TIMEOUT_SECONDS,
        }
    if pool_type == ACI:
        # prefect-azure takes vCPU cores and GB as floats (ARM's `cpu` and `memoryInGB`).
        cpu, memory_gb = _aci_size(preset)
        return {"cpu": cpu, "memory": memory_gb}
    raise _unknown_pool_type(pool_type)


def machine(preset: str, pool_type: str) -> tuple[float, int]:
    """(vCPU, MiB) of `preset` on a pool of `pool_type`; Fargate's 1024 CPU units are one vCPU."""
    size = PRESETS[known_preset(preset)]
    if pool_type == ECS:
        return size.fargate_cpu / 1024, size.fargate_memory_mib
    if pool_type == CLOUD_RUN_V2:
        return float(size.cloud_run_cpu), size.cloud_run_memory_mib
    if pool_type == ACI:
        cpu, memory_gb = _aci_size(preset)
        return cpu, int(memory_gb * _GIB)
    raise _unknown_pool_type(pool_type)


def runs_on(preset: str, pool_type: str) -> bool:
    """Whether a pool of `pool_type` can give a flow run the size of `preset`."""
    known_preset(preset)
    if pool_type == ACI:
        return _within_aci(PRESETS[preset])
    if pool_type in POOL_TYPES:
        return True
    raise _unknown_pool_type(pool_type)


def _within_aci(size: Size) -> bool:
    return (
        size.fargate_cpu / 1024 <= ACI_MAX_CPU
        and size.fargate_memory_mib / _GIB <= ACI_MAX_MEMORY_GB
    )


def _aci_size(preset: str) -> tuple[float, float]:
    """(cores, GB) of `preset` on ACI, or a ConfigurationError naming the family's biggest
    preset that fits."""
    size = PRESETS[preset]
    cpu, memory_gb = size.fargate_cpu / 1024, size.fargate_memory_mib / _GIB
    if _within_aci(size):
        return cpu, memory_gb
    family = preset.split("-", 1)[0]
    siblings = [name for name in preset_names() if name.startswith(f"{family}-")]
    biggest = [name for name in siblings if _within_aci(PRESETS[name])][-1]
    raise ConfigurationError(
        f"Size preset '{preset}' ({cpu:g} vCPU, {memory_gb:g} GB) is beyond what one Azure "
        f"Container Instances container group gets ({ACI_MAX_CPU:g} vCPU and "
        f"{ACI_MAX_MEMORY_GB:g} GB). Choose '{biggest}', the biggest {family} preset that fits, "
        "or run this node on ECS or Cloud Run."
    )


def _unknown_pool_type(pool_type: str) -> ConfigurationError:
    return ConfigurationError(
        f"Unknown work pool type '{pool_type}'. Valid pool types: {', '.join(VALID_POOL_TYPES)}."
    )


# What Numerai data a preset fits, by the figures benchmarks/container_sizes.py measures in the
# node image under memory limits (flows/memory.py and models/footprint.py hold them):
# - Numerai Classic v5.2: about 2.75 million training rows, and a live round of about 6,000;
#   each feature value is one int8 byte.
# - Training the example model peaks at the node process's baseline plus
#   `TRAIN_BYTES_PER_VALUE` bytes per int8 value (models/footprint.py).
# - Predicting reads the live round a row group at a time: a live round of the `all` set
#   (6,000 x 2,376) peaked at 369 MiB, so every preset fits it.
TRAIN_ROWS = 2_750_000
LIVE_ROWS = 6_000
FEATURE_SETS: dict[str, int] = {"small": 42, "medium": 705, "all": 2_376}
PREDICT_MIB = 400
STAGES = ("train", "predict")


def needed_mib(feature_set: str, stage: str) -> int:
    """Peak memory (MiB) to `train` the example model on v5.2's training set, or to `predict` a
    live round, with `feature_set` (measured; see above)."""
    features = FEATURE_SETS[feature_set]
    if stage == "train":
        return training_mib(TRAIN_ROWS, features, TRAIN_BYTES_PER_VALUE)
    if stage == "predict":
        return PREDICT_MIB
    raise ValueError(f"Unknown stage '{stage}'. Valid stages: {', '.join(STAGES)}.")


def fits(preset: str, pool_type: str) -> dict[str, dict[str, bool]]:
    """For each stage (`train`, `predict`), whether each feature set fits in the memory of
    `preset` on a pool of `pool_type`, by the estimates above (a ConfigurationError where the
    pool cannot run the preset at all: see `runs_on`)."""
    _, memory_mib = machine(preset, pool_type)
    return {
        stage: {name: needed_mib(name, stage) <= memory_mib for name in FEATURE_SETS}
        for stage in STAGES
    }
