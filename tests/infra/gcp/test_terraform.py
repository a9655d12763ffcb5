"""The GCP Terraform is formatted, documented, private and least-privilege (and checkov agrees)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).parents[3]
GCP = ROOT / "infra" / "gcp"
AWS = ROOT / "infra" / "aws"
# Roles that would let a node's job (or its worker) change anything in the project.
_BROAD_ROLES = {
    "roles/owner",
    "roles/editor",
    "roles/iam.securityAdmin",
    "roles/resourcemanager.projectIamAdmin",
}


def _plain(value: Any) -> Any:
    """python-hcl2 output without its quoting and bookkeeping keys."""
    if isinstance(value, dict):
        return {
            _plain(key): _plain(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def config() -> dict[str, list]:
    merged: dict[str, list] = {}
    for path in sorted(GCP.glob("*.tf")):
        with path.open() as handle:
            for block, items in _plain(hcl2.load(handle)).items():
                merged.setdefault(block, []).extend(items)
    return merged


@pytest.fixture(scope="module")
def resources(config) -> dict[tuple[str, str], dict]:
    found = {}
    for item in config["resource"]:
        for kind, named in item.items():
            for name, body in named.items():
                found[(kind, name)] = body
    return found


def _blocks(config: dict, kind: str) -> dict[str, dict]:
    return {name: body for item in config.get(kind, []) for name, body in item.items()}


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH (install Terraform >= 1.5 to check formatting)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(GCP)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra/gcp`:\n{result.stdout}"


def test_google_provider_is_pinned(config):
    (terraform,) = config["terraform"]
    google = terraform["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google"
    assert re.match(r"^(~>|=|>=)\s*\d", google["version"]), google["version"]


def test_expected_resources(resources):
    kinds = {kind for kind, _ in resources}
    assert {
        "google_artifact_registry_repository",
        "google_service_account",
        "google_storage_bucket",
        "google_storage_bucket_iam_member",
        "google_secret_manager_secret",
        "google_secret_manager_secret_iam_member",
        "google_project_iam_member",
        "google_service_account_iam_member",
    } <= kinds
    assert resources[("google_artifact_registry_repository", "images")]["format"] == "DOCKER"


def test_every_variable_has_a_type_and_description(config):
    variables = _blocks(config, "variable")
    assert variables
    for name, body in variables.items():
        assert body.get("type"), name
        assert body.get("description"), name


def test_every_output_has_a_description(config):
    outputs = _blocks(config, "output")
    for name, body in outputs.items():
        assert body.get("description"), name


def test_the_configuration_is_package_data():
    from infra.gcp.settings import CONFIG_DIR, GcpSettings

    # The CLI finds the configuration beside its code, as an installed package would.
    assert GCP.resolve() == CONFIG_DIR
    assert GcpSettings(_env_file=None).config_dir == CONFIG_DIR
    assert {"main.tf", "variables.tf", "outputs.tf"} <= {p.name for p in CONFIG_DIR.glob("*.tf")}


def test_outputs_cover_what_the_pool_needs(config):
    from infra.gcp.pool import REQUIRED_OUTPUTS

    assert set(REQUIRED_OUTPUTS) <= set(_blocks(config, "output"))


def test_no_secret_version_in_terraform(resources, config):
    """The key values go to Secret Manager through the API, so they never enter state."""
    assert not [key for key in resources if key[0] == "google_secret_manager_secret_version"]
    for name, body in _blocks(config, "variable").items():
        assert not body.get("sensitive"), f"variable {name} suggests a secret value in state"
    secrets = {name for kind, name in resources if kind == "google_secret_manager_secret"}
    assert secrets == {"public_id", "secret_key", "prefect_api_key"}


def test_bucket_is_private_versioned_and_expires_old_versions(resources):
    bucket = resources[("google_storage_bucket", "cache")]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    conditions = [rule["condition"][0] for rule in bucket["lifecycle_rule"]]
    assert any("days_since_noncurrent_time" in condition for condition in conditions)


def _member_of(body: dict) -> str:
    return body["member"]


def test_job_service_account_is_least_privilege(resources):
    job = "serviceAccount:${google_service_account.job.email}"
    grants = {
        (kind, body.get("role"), body.get("bucket") or body.get("secret_id") or body.get("project"))
        for (kind, _), body in resources.items()
        if kind.endswith("_iam_member") and _member_of(body) == job
    }
    assert grants == {
        (
            "google_storage_bucket_iam_member",
            "roles/storage.objectAdmin",
            "${google_storage_bucket.cache.name}",
        ),
        (
            "google_storage_bucket_iam_member",
            "roles/storage.legacyBucketReader",
            "${google_storage_bucket.cache.name}",
        ),
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            "${google_secret_manager_secret.public_id.id}",
        ),
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            "${google_secret_manager_secret.secret_key.id}",
        ),
        ("google_project_iam_member", "roles/logging.logWriter", "${var.project}"),
    }


def test_worker_may_act_as_the_job_account_only(resources):
    acts_as = resources[("google_service_account_iam_member", "worker_acts_as_job")]
    assert acts_as["role"] == "roles/iam.serviceAccountUser"
    assert acts_as["service_account_id"] == "${google_service_account.job.name}"
    project_roles = {
        body["role"] for (kind, _), body in resources.items() if kind == "google_project_iam_member"
    }
    assert project_roles == {"roles/logging.logWriter", "roles/run.developer"}


def test_worker_service_account_grants_are_these_only(resources):
    worker = "serviceAccount:${google_service_account.worker[0].email}"
    grants = {
        (kind, body.get("role"), body.get("secret_id") or body.get("service_account_id") or "")
        for (kind, _), body in resources.items()
        if kind.endswith("_iam_member") and _member_of(body) == worker
    }
    assert grants == {
        ("google_project_iam_member", "roles/run.developer", ""),
        (
            "google_service_account_iam_member",
            "roles/iam.serviceAccountUser",
            "${google_service_account.job.name}",
        ),
        # The hosted worker reads its Prefect API key, and no other secret.
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            "${google_secret_manager_secret.prefect_api_key[0].id}",
        ),
    }


def _one(value: Any) -> Any:
    """python-hcl2 gives each nested block as a list of one."""
    return value[0] if isinstance(value, list) else value


def test_worker_service_is_optional_private_and_always_on(resources, config):
    from infra.gcp.pool import POOL_TYPE, PREFECT_API_KEY_SECRET

    variables = _blocks(config, "variable")
    assert variables["worker_image"]["default"] == ""
    assert variables["prefect_api_key_secret"]["default"] == PREFECT_API_KEY_SECRET
    assert variables["work_pool_name"]["default"] == "cloud-run"
    service = resources[("google_cloud_run_v2_service", "worker")]
    assert service["count"] == "${local.hosted_worker ? 1 : 0}"
    (locals_,) = [item for item in config["locals"] if "hosted_worker" in item]
    assert locals_["hosted_worker"] == '${var.worker_image != ""}'
    # A worker only calls out: nothing may call in.
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    template = _one(service["template"])
    assert template["service_account"] == "${google_service_account.worker[0].email}"
    scaling = _one(template["scaling"])
    assert (scaling["min_instance_count"], scaling["max_instance_count"]) == (1, 1)
    container = _one(template["containers"])
    assert container["image"] == "${var.worker_image}"
    assert container["command"] == ["prefect"]
    args = container["args"]
    assert args[:2] == ["worker", "start"]
    assert args[args.index("--pool") + 1] == "${var.work_pool_name}"
    assert args[args.index("--type") + 1] == POOL_TYPE
    assert "--with-healthcheck" in args  # the probes' /health on port 8080
    assert _one(container["resources"])["cpu_idle"] is False
    env = {_one(item)["name"]: _one(item) for item in container["env"]}
    assert env["PREFECT_API_URL"]["value"] == "${var.prefect_api_url}"
    # The API key comes from Secret Manager, never a value in the configuration or state.
    (dynamic,) = container["dynamic"]
    key = _one(dynamic["env"]["content"])
    assert key["name"] == "PREFECT_API_KEY" and "value" not in key
    ref = _one(_one(key["value_source"])["secret_key_ref"])
    assert ref["secret"] == "${google_secret_manager_secret.prefect_api_key[0].secret_id}"
    assert resources[("google_secret_manager_secret", "prefect_api_key")]["count"] == (
        "${local.hosted_worker ? 1 : 0}"
    )


def test_no_broad_or_binding_resources(resources):
    for (kind, name), body in resources.items():
        assert body.get("role") not in _BROAD_ROLES, (kind, name)
        # *_iam_binding and *_iam_policy replace other members' grants: additive members only.
        assert not kind.endswith(("_iam_binding", "_iam_policy")), (kind, name)


def test_checkov_skips_are_justified():
    for path in [*GCP.glob("*.tf"), *AWS.glob("*.yaml")]:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"checkov:skip=CKV2?_\w+:\s*\S", line), f"{path.name}: {line}"


def _checkov() -> str:
    found = shutil.which("checkov") or str(Path.home() / ".local" / "bin" / "checkov")
    if not os.access(found, os.X_OK):
        pytest.skip(
            "checkov not installed; install it in its own venv with `uv tool install checkov` "
            "(next to prefect it downgrades botocore)"
        )
    return found


def _run_checkov(directory: Path, framework: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BC_")}
    return subprocess.run(
        [
            _checkov(),
            "-d",
            str(directory),
            "--framework",
            framework,
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_checkov_gcp_terraform():
    result = _run_checkov(GCP, "terraform")
    assert result.returncode == 0, result.stdout


def test_checkov_aws_cloudformation():
    result = _run_checkov(AWS, "cloudformation")
    assert result.returncode == 0, result.stdout
