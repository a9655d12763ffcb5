"""`numerai-nodes sizes`: every preset, its machine on each cloud, and the Numerai data it fits."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.presets import (
    ACI,
    ACI_MAX_CPU,
    ACI_MAX_MEMORY_GB,
    CLOUD_RUN_V2,
    ECS,
    FEATURE_SETS,
    LIVE_ROWS,
    PREDICT_MIB,
    TRAIN_ROWS,
    fits,
    machine,
    needed_mib,
    preset_names,
    runs_on,
)

WIDE = {"COLUMNS": "200"}


def _sizes_json() -> dict:
    result = CliRunner().invoke(app, ["sizes", "--json"], env=WIDE)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_json_lists_all_eighteen_presets_with_every_cloud():
    shown = _sizes_json()
    assert [entry["preset"] for entry in shown["presets"]] == preset_names()
    assert len(shown["presets"]) == 18
    for entry in shown["presets"]:
        for pool_type in (ECS, CLOUD_RUN_V2, ACI):
            on = entry[pool_type]
            assert on["runs"] == runs_on(entry["preset"], pool_type)
            if not on["runs"]:
                assert on == {"runs": False}  # no machine, no verdict: it cannot run there
                continue
            assert (on["vcpu"], on["memory_mib"]) == machine(entry["preset"], pool_type)
            assert {"train": on["train"], "predict": on["predict"]} == fits(
                entry["preset"], pool_type
            )
            assert set(on["train"]) == set(on["predict"]) == set(FEATURE_SETS)


def test_aci_runs_the_presets_within_one_container_group_and_shows_the_rest_as_too_big():
    shown = {entry["preset"]: entry[ACI] for entry in _sizes_json()["presets"]}
    runs = {name for name, on in shown.items() if on["runs"]}
    assert runs == {
        *(f"{family}-{size}" for family in ("gen", "cpu") for size in ("xs", "s", "m", "l")),
        "mem-xs",
        "mem-s",
        "mem-m",
    }
    for name in runs:
        assert shown[name]["vcpu"] <= ACI_MAX_CPU
        assert shown[name]["memory_mib"] <= ACI_MAX_MEMORY_GB * 1024
    # ACI takes Fargate's size as is: gen-xs is half a vCPU there, a whole one on Cloud Run.
    assert shown["gen-xs"]["vcpu"] == 0.5 and machine("gen-xs", CLOUD_RUN_V2)[0] == 1
    assert shown["gen-m"]["train"] == fits("gen-m", ECS)["train"]

    result = CliRunner().invoke(app, ["sizes"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "ACI vCPU" in result.stdout and "Fargate / Cloud Run / ACI" in result.stdout
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    assert "too big" in rows["mem-l"] and "✓ / ✓ / -" in rows["mem-l"]
    assert "too big" not in rows["mem-m"] and "- " not in rows["mem-m"].split("│", 4)[4]


def test_a_small_machine_cannot_train_on_every_feature():
    # gen-xs has 2 GiB: the small feature set fits, all 2,376 features (about 16 GiB) do not.
    assert machine("gen-xs", ECS)[1] == 2048
    for pool_type in (ECS, CLOUD_RUN_V2):
        train = fits("gen-xs", pool_type)["train"]
        assert train == {"small": True, "medium": False, "all": False}


def test_the_largest_memory_preset_trains_on_every_feature():
    assert fits("mem-2xl", ECS)["train"] == {"small": True, "medium": True, "all": True}
    assert fits("mem-2xl", CLOUD_RUN_V2)["train"]["all"]


def test_cloud_run_caps_at_32_gib_and_8_vcpu():
    on_cloud_run = [machine(name, CLOUD_RUN_V2) for name in preset_names()]
    assert max(mib for _, mib in on_cloud_run) == 32 * 1024
    assert max(vcpu for vcpu, _ in on_cloud_run) == 8
    # Fargate goes further: mem-2xl is 16 vCPU and 120 GiB there, 8 vCPU and 32 GiB on Cloud Run.
    assert machine("mem-2xl", ECS) == (16, 120 * 1024)
    assert machine("mem-2xl", CLOUD_RUN_V2) == (8, 32 * 1024)


def test_training_needs_grow_with_the_feature_set_and_predicting_always_fits():
    train = [needed_mib(name, "train") for name in ("small", "medium", "all")]
    assert train == sorted(train)
    # Rows stream into LightGBM's bins, so the training set is never held twice: v5.2's whole
    # `all` set (6.1 GiB of int8) trains within gen-m's 8 GiB, with room for the process.
    all_int8_mib = TRAIN_ROWS * FEATURE_SETS["all"] / 2**20
    assert all_int8_mib < train[-1] <= 8 * 1024
    assert fits("gen-m", ECS)["train"]["all"] and not fits("gen-s", ECS)["train"]["all"]
    # The live round is a few thousand rows: even `all` is a few MB of int8.
    assert LIVE_ROWS * FEATURE_SETS["all"] < 20 * 2**20
    for name in preset_names():
        for pool_type in (ECS, CLOUD_RUN_V2):
            assert machine(name, pool_type)[1] >= PREDICT_MIB
            assert all(fits(name, pool_type)["predict"].values())


def test_a_feature_set_fits_when_its_estimate_is_within_the_memory():
    for name in preset_names():
        for pool_type in (ECS, CLOUD_RUN_V2):
            memory = machine(name, pool_type)[1]
            for feature_set in FEATURE_SETS:
                expected = needed_mib(feature_set, "train") <= memory
                assert fits(name, pool_type)["train"][feature_set] == expected


def test_the_table_shows_every_preset_and_the_estimates():
    result = CliRunner().invoke(app, ["sizes"], env=WIDE)
    assert result.exit_code == 0, result.output
    for name in preset_names():
        assert name in result.stdout
    assert "120 GiB" in result.stdout and "train all" in result.stdout
    assert "Measured peak memory" in result.stdout


def test_an_unknown_pool_type_or_stage_is_refused():
    from flows.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="cloud-run-v2"):
        machine("gen-m", "kubernetes")
    with pytest.raises(ValueError, match="train, predict"):
        needed_mib("small", "serve")
