"""Size presets map to valid Fargate, Cloud Run v2 and Azure Container Instances sizes."""

from __future__ import annotations

import itertools
import re

import pytest

from deployments.presets import (
    ACI,
    FAMILIES,
    SIZES,
    fits,
    job_variables,
    machine,
    preset_names,
    runs_on,
)
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


# Azure Container Instances, standard Linux container groups: at most 4 vCPU and 16 GB, CPU and
# memory to one decimal place.
_ACI_MAX_CPU, _ACI_MAX_GB = 4, 16
_BEYOND_ACI = {"gen-xl", "gen-2xl", "cpu-xl", "cpu-2xl", "mem-l", "mem-xl", "mem-2xl"}


@pytest.mark.parametrize("preset", sorted(set(preset_names()) - _BEYOND_ACI))
def test_preset_is_a_valid_aci_size(preset):
    variables = job_variables(preset, ACI)
    assert set(variables) == {"cpu", "memory"}
    cpu, memory = variables["cpu"], variables["memory"]
    assert isinstance(cpu, float) and isinstance(memory, float)
    assert 0 < cpu <= _ACI_MAX_CPU and 0 < memory <= _ACI_MAX_GB, variables
    assert round(cpu, 1) == cpu and round(memory, 1) == memory, variables
    # The same machine as on Fargate: the preset means one size wherever it runs.
    assert machine(preset, ACI) == machine(preset, "ecs")
    assert runs_on(preset, ACI)


@pytest.mark.parametrize("preset", sorted(_BEYOND_ACI))
def test_a_preset_beyond_aci_is_refused_naming_the_biggest_that_fits(preset):
    family = preset.split("-")[0]
    biggest = {"gen": "gen-l", "cpu": "cpu-l", "mem": "mem-m"}[family]
    assert not runs_on(preset, ACI)
    for call in (job_variables, machine, fits):
        with pytest.raises(ConfigurationError) as error:
            call(preset, ACI)
        message = str(error.value)
        assert f"'{preset}'" in message and f"'{biggest}'" in message, message
        assert "4 vCPU and 16 GB" in message
    assert runs_on(biggest, ACI)
    # The biggest that fits is the biggest: the next size of its family is refused.
    sizes = [f"{family}-{size}" for size in SIZES]
    assert sizes[sizes.index(biggest) + 1] in _BEYOND_ACI


def test_aci_memory_grows_with_size_within_its_limit():
    for family in FAMILIES:
        names = [f"{family}-{size}" for size in SIZES if runs_on(f"{family}-{size}", ACI)]
        memory = [job_variables(name, ACI)["memory"] for name in names]
        assert len(names) >= 3 and memory == sorted(set(memory)), (family, memory)
    # The default preset (gen-m) runs on ACI, with room to train on every Classic feature.
    assert job_variables("gen-m", ACI) == {"cpu": 2.0, "memory": 8.0}
    assert fits("gen-m", ACI)["train"]["all"]


def test_every_preset_runs_on_ecs_and_cloud_run():
    for name in preset_names():
        assert runs_on(name, "ecs") and runs_on(name, "cloud-run-v2")


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigurationError, match="Unknown size preset 'huge'") as error:
        job_variables("huge", "ecs")
    assert "gen-xs" in str(error.value) and "mem-2xl" in str(error.value)
    # One error root for the CLI, and still a ValueError for pydantic validators.
    assert isinstance(error.value, NodeError) and isinstance(error.value, ValueError)


def test_unknown_pool_type():
    with pytest.raises(ConfigurationError, match="cloud-run-v2, azure-container-instance"):
        job_variables("gen-m", "kubernetes")
    with pytest.raises(ConfigurationError, match="Unknown work pool type 'kubernetes'"):
        runs_on("gen-m", "kubernetes")


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
