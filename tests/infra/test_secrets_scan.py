"""No key material in the build context, prefect.yaml, rendered job templates or CFN parameters."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
_KEY_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}", re.IGNORECASE
    ),
    "Numerai key": re.compile(
        r"NUMERAI_(?:SECRET_KEY|PUBLIC_ID)['\"]?\s*[=:]\s*['\"]?[A-Z0-9]{20,}", re.IGNORECASE
    ),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)
_SECRET_PARAMETER = re.compile(r"(?:Key|Secret|Token|Password|Credentials?)$", re.IGNORECASE)


def _pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex over slash-separated relative paths."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


def _ignore_rules(root: Path) -> list[tuple[bool, re.Pattern]]:
    lines = (root / ".dockerignore").read_text().splitlines()
    rules = []
    for line in (line.strip() for line in lines):
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern_regex(line.lstrip("!"))))
    return rules


def _excluded(relative: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's rule: a pattern matching the path or a parent excludes it; the last match wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def build_context(root: Path = ROOT) -> list[Path]:
    """The files `docker build .` sends to the builder."""
    rules = _ignore_rules(root)
    files = []
    for directory, subdirectories, names in os.walk(root):
        here = Path(directory).relative_to(root)
        subdirectories[:] = [
            name for name in subdirectories if not _excluded((here / name).as_posix(), rules)
        ]
        files += [
            root / here / name for name in names if not _excluded((here / name).as_posix(), rules)
        ]
    return files


def _leaks(text: str) -> list[str]:
    return [label for label, pattern in _KEY_PATTERNS.items() if pattern.search(text)]


def _dockerfile_instructions() -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_scanner_catches_keys():
    assert _leaks("NUMERAI_SECRET_KEY=" + "A" * 64) == ["Numerai key"]
    assert _leaks("key: AKIA" + "ABCDEFGHIJKLMNOP") == ["AWS access key id"]
    assert not _leaks("secret_key = os.environ['NUMERAI_SECRET_KEY']")


def test_dockerignore_excludes_local_state(tmp_path):
    (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    for name in (".env", ".git/config", ".venv/bin/python", "flows/__pycache__/a.pyc", "keep.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [path.name for path in build_context(tmp_path)] == ["keep.py"]


def test_build_context_holds_the_code_and_no_keys():
    context = build_context()
    relative = {path.relative_to(ROOT).as_posix() for path in context}
    assert {"pyproject.toml", "uv.lock", "prefect.yaml", "prefect.aws.yaml"} <= relative
    assert "flows/tournament.py" in relative
    assert not any(name.startswith((".venv/", ".git/", "tests/")) for name in relative)
    for path in context:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        assert not _leaks(text), f"{path.relative_to(ROOT)}: {_leaks(text)}"


@pytest.mark.parametrize(
    "file", ["prefect.yaml", "prefect.aws.yaml", "prefect.gcp.yaml", "prefect.azure.yaml"]
)
def test_the_catalogue_holds_no_keys(file):
    assert not _leaks((ROOT / file).read_text())


def test_cloudformation_parameters_hold_no_keys():
    template, problems = decode(ROOT / "infra" / "aws" / "stack.yaml")
    assert not problems
    assert not _leaks((ROOT / "infra" / "aws" / "stack.yaml").read_text())
    for name, parameter in template["Parameters"].items():
        default = str(parameter.get("Default", ""))
        assert not _leaks(f"{name}={default}"), name
        # A secret would have to be a NoEcho parameter without a default; none belong here.
        if _SECRET_PARAMETER.search(name):
            assert "Default" not in parameter and parameter.get("NoEcho"), name


def test_dockerfile_sets_no_secret_env():
    for instruction in _dockerfile_instructions():
        keyword, _, arguments = instruction.partition(" ")
        if keyword.upper() in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arguments) or arguments.split()[:1]
            assert not any(_SECRET_NAME.search(name) for name in names), instruction


def test_dockerfile_runs_as_non_root():
    users = [
        line.split()[1] for line in _dockerfile_instructions() if line.upper().startswith("USER ")
    ]
    assert users, "the Dockerfile never sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("needle", ["uv.lock", "uv sync --frozen --no-dev"])
def test_dockerfile_installs_from_the_lock(needle):
    instructions = _dockerfile_instructions()
    assert any(needle in line for line in instructions), needle
    assert not any(re.search(r"\bpip install\b", line) for line in instructions)


# The rendered job templates: what a worker sends to ECS or Cloud Run for a cloud node.
_ACCOUNT = "123456789012"
_AWS_OUTPUTS = {
    "ClusterName": "numerai-nodes",
    "ClusterArn": f"arn:aws:ecs:eu-west-1:{_ACCOUNT}:cluster/numerai-nodes",
    "ExecutionRoleArn": f"arn:aws:iam::{_ACCOUNT}:role/numerai-nodes-execution",
    "TaskRoleArn": f"arn:aws:iam::{_ACCOUNT}:role/numerai-nodes-task",
    "LogGroupName": "/numerai-nodes/flow-runs",
    "LogGroupArn": f"arn:aws:logs:eu-west-1:{_ACCOUNT}:log-group:/numerai-nodes/flow-runs",
    "RepositoryUri": f"{_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/numerai-nodes",
    "BucketName": "numerai-nodes-results-123",
}
_AWS_SECRETS = {
    "NUMERAI_PUBLIC_ID": f"arn:aws:secretsmanager:eu-west-1:{_ACCOUNT}:secret:nn/PUBLIC-a1",
    "NUMERAI_SECRET_KEY": f"arn:aws:secretsmanager:eu-west-1:{_ACCOUNT}:secret:nn/SECRET-b2",
}
_GCP_OUTPUTS = {
    "project": "my-project",
    "region": "europe-west1",
    "repository_url": "europe-west1-docker.pkg.dev/my-project/numerai-nodes",
    "bucket_name": "my-project-numerai-nodes",
    "service_account_email": "numerai-nodes@my-project.iam.gserviceaccount.com",
    "public_id_secret": "numerai-public-id",
    "secret_key_secret": "numerai-secret-key",
}
_AZURE_IDENTITIES = (
    "/subscriptions/0d1e2f3a-0000-4000-8000-000000005ab5/resourceGroups/numerai-nodes/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities"
)
_AZURE_OUTPUTS = {
    "subscription_id": "0d1e2f3a-0000-4000-8000-000000005ab5",
    "resource_group": "numerai-nodes",
    "registry_login_server": "numerainodesacr.azurecr.io",
    "key_vault_uri": "https://numerainodeskv.vault.azure.net/",
    "job_identity_id": f"{_AZURE_IDENTITIES}/numerai-nodes-job",
    "job_identity_client_id": "9c4d2e1f-0000-4000-8000-00000000a0b1",
    "public_id_secret": "numerai-public-id",
    "secret_key_secret": "numerai-secret-key",
}
_PUBLIC_ID = "fake-public-id-for-the-scan"  # sentinels: must never reach a template
_SECRET_KEY = "fake-secret-key-for-the-scan"


def _cloud_job_variables(pool: str) -> dict:
    import yaml

    file = {
        "ecs": "prefect.aws.yaml",
        "cloud-run": "prefect.gcp.yaml",
        "azure": "prefect.azure.yaml",
    }[pool]
    document = yaml.safe_load((ROOT / file).read_text())
    (entry,) = [d for d in document["deployments"] if d["work_pool"]["name"] == pool]
    variables = dict(entry["work_pool"]["job_variables"])
    variables["image"] = "registry.example/numerai-nodes:latest"  # the build step's output
    return variables


def _render(template: dict, job_variables: dict) -> str:
    """The job configuration as the worker fills it: defaults, then the deployment's variables."""
    import json

    from prefect.utilities.templating import apply_values

    values = {
        name: spec.get("default") for name, spec in template["variables"]["properties"].items()
    }
    values.update(job_variables)
    return json.dumps(apply_values(template["job_configuration"], values))


def test_rendered_ecs_job_holds_no_keys_and_names_the_secrets(monkeypatch):
    from infra.aws.pool import ecs_pool_template

    # Keys in the environment of whoever builds the pool must not leak into it.
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", _PUBLIC_ID)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", _SECRET_KEY)
    template = ecs_pool_template(
        _AWS_OUTPUTS, image=_AWS_OUTPUTS["RepositoryUri"] + ":latest", secrets=_AWS_SECRETS
    )
    rendered = _render(template, _cloud_job_variables("ecs"))
    assert _PUBLIC_ID not in rendered and _SECRET_KEY not in rendered
    assert not _leaks(rendered)
    for arn in _AWS_SECRETS.values():
        assert f'"valueFrom": "{arn}"' in rendered


def test_rendered_cloud_run_job_holds_no_keys_and_names_the_secrets(monkeypatch):
    from infra.gcp.pool import cloud_run_pool_template

    monkeypatch.setenv("NUMERAI_PUBLIC_ID", _PUBLIC_ID)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", _SECRET_KEY)
    template = cloud_run_pool_template(_GCP_OUTPUTS, image="registry.example/numerai-nodes:1")
    rendered = _render(template, _cloud_job_variables("cloud-run"))
    assert _PUBLIC_ID not in rendered and _SECRET_KEY not in rendered
    assert not _leaks(rendered)
    assert '"secret": "numerai-secret-key"' in rendered
    assert '"timeout": "3600s"' in rendered or '"timeout": 3600' in rendered


def test_rendered_aci_job_holds_no_keys_and_reads_them_from_key_vault(monkeypatch):
    from infra.azure.pool import aci_pool_template

    monkeypatch.setenv("NUMERAI_PUBLIC_ID", _PUBLIC_ID)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", _SECRET_KEY)
    template = aci_pool_template(_AZURE_OUTPUTS, image="registry.example/numerai-nodes:1")
    rendered = _render(template, _cloud_job_variables("azure"))
    assert _PUBLIC_ID not in rendered and _SECRET_KEY not in rendered
    assert not _leaks(rendered)
    # The container runs as the job identity and finds the vault; the keys stay in it.
    assert _AZURE_OUTPUTS["job_identity_id"] in rendered
    assert _AZURE_OUTPUTS["key_vault_uri"] in rendered
    assert '"cpu": 2.0' in rendered and '"memoryInGB": 8.0' in rendered
