"""Size presets map to valid Fargate and Cloud Run v2 sizes."""

from __future__ import annotations

import itertools
import re

import pytest

from deployments.presets import FAMILIES, SIZES, job_variables, preset_names
from flows.errors import ConfigurationError, NodeError

# AWS Fargate task sizes: CPU units -> (lowest MiB, highest MiB, step MiB).
_FARGATE = {
    256: None,  # only 512, 1024, 2048
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}
# Cloud Run: the least memory some CPU counts require.
_CLOUD_RUN_MIN_MIB = {1: 512, 2: 512, 4: 2048, 8: 4096}


def _fargate_valid(cpu: int, memory: int) -> bool:
    if cpu not in _FARGATE:
        return False
    if cpu == 256:
        return memory in (512, 1024, 2048)
    limits = _FARGATE[cpu]
    assert limits is not None
    low, high, step = limits
    return low <= memory <= high and (memory - low) % step == 0


def _mib(memory: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", memory)
    assert match, f"Cloud Run memory {memory!r} is not <n>Mi or <n>Gi"
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def _cloud_run_valid(cpu: str, memory: str) -> bool:
    if not cpu.isdigit() or int(cpu) not in _CLOUD_RUN_MIN_MIB:
        return False
    cores, mib = int(cpu), _mib(memory)
    return _CLOUD_RUN_MIN_MIB[cores] <= mib <= min(4096 * cores, 32768)


def test_eighteen_presets():
    assert len(preset_names()) == len(FAMILIES) * len(SIZES) == 18


@pytest.mark.parametrize("preset", preset_names())
def test_preset_is_a_valid_fargate_size(preset):
    variables = job_variables(preset, "ecs")
    assert set(variables) == {"cpu", "memory"}
    assert isinstance(variables["cpu"], int) and isinstance(variables["memory"], int)
    assert _fargate_valid(variables["cpu"], variables["memory"]), variables


@pytest.mark.parametrize("preset", preset_names())
def test_preset_is_a_valid_cloud_run_size(preset):
    variables = job_variables(preset, "cloud-run-v2")
    assert _cloud_run_valid(variables["cpu"], variables["memory"]), variables
    assert variables["timeout"] > 600


@pytest.mark.parametrize("family", FAMILIES)
def test_memory_grows_with_size(family):
    names = [f"{family}-{size}" for size in SIZES]
    fargate = [job_variables(name, "ecs")["memory"] for name in names]
    assert fargate == sorted(set(fargate)), fargate
    cloud_run = [_mib(job_variables(name, "cloud-run-v2")["memory"]) for name in names]
    # Strictly larger until Cloud Run's 32 GiB ceiling, then flat.
    for smaller, larger in itertools.pairwise(cloud_run):
        assert larger > smaller or smaller == larger == 32768, cloud_run


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigurationError, match="Unknown size preset 'huge'") as error:
        job_variables("huge", "ecs")
    assert "gen-xs" in str(error.value) and "mem-2xl" in str(error.value)
    # One error root for the CLI, and still a ValueError for pydantic validators.
    assert isinstance(error.value, NodeError) and isinstance(error.value, ValueError)


def test_unknown_pool_type():
    with pytest.raises(ConfigurationError, match="cloud-run-v2"):
        job_variables("gen-m", "kubernetes")


@pytest.mark.parametrize("module", ["aws", "gcp"])
def test_cloud_settings_reject_an_unknown_preset(module, monkeypatch):
    import importlib

    from pydantic import ValidationError

    cloud = importlib.import_module(f"infra.{module}.settings")
    settings = cloud.AwsSettings if module == "aws" else cloud.GcpSettings
    monkeypatch.setenv(f"NUMERAI_NODES_{module.upper()}_PRESET", "gen-xxl")
    with pytest.raises(ValidationError, match=r"Unknown size preset 'gen-xxl'.*gen-m"):
        settings(_env_file=None)
    monkeypatch.setenv(f"NUMERAI_NODES_{module.upper()}_PRESET", "mem-l")
    assert settings(_env_file=None).preset == "mem-l"
