"""The GCP place: the Cloud Run v2 template, Terraform under the home, Secret Manager, keys, CLI."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from deployments.cli.infra_gcp import app
from deployments.recovery import HEARTBEAT_ENV
from flows.errors import NodeError
from infra.cloud import (
    KeysMissing,
    NumeraiKeys,
    PlaceStatus,
    key_env_names,
    keys_from_settings,
)
from infra.gcp import place as gcp
from infra.gcp.doctor import doctor_checks
from infra.gcp.errors import (
    GcpSettingsError,
    GcpStackError,
    GcpUnreachable,
    StackOutputsMissing,
    TerraformConfigMissing,
    TerraformFailed,
    TerraformMissing,
)
from infra.gcp.pool import IMAGE_VARIABLE, cloud_run_pool_template, image_uri
from infra.gcp.secrets import SecretManager
from infra.gcp.settings import CONFIG_DIR, RESULTS_BLOCK, GcpSettings
from infra.gcp.terraform import Terraform, stack_variables
from infra.pools import RESULT_STORAGE_ENV, read_pool_template, upsert_pool

PUBLIC_ID = "PUBLICID7Q3XK2"
SECRET_KEY = "SECRETKEY9ZP4WM8"
_KEYS = NumeraiKeys(SecretStr(PUBLIC_ID), SecretStr(SECRET_KEY))
OUTPUTS = {
    "project": "numerai-test",
    "region": "europe-west4",
    "repository_id": "numerai-nodes",
    "repository_url": "europe-west4-docker.pkg.dev/numerai-test/numerai-nodes",
    "bucket_name": "numerai-test-numerai-nodes",
    "service_account_email": "numerai-nodes-job@numerai-test.iam.gserviceaccount.com",
    "worker_service_account_email": "numerai-nodes-worker@numerai-test.iam.gserviceaccount.com",
    "public_id_secret": "numerai-public-id",
    "secret_key_secret": "numerai-secret-key",
}

# A stand-in for the Terraform CLI. It logs its argv, cwd and which key variables reached its
# environment, keeps local state in its working directory as terraform does, and keeps the
# "cloud" (which buckets exist) beside itself, so a kept bucket outlives `destroy`.
_FAKE_TERRAFORM = """\
import json, os, sys, time
from pathlib import Path
here = Path(__file__).parent
args = sys.argv[1:]
keys = [k for k in KEY_NAMES + ("PREFECT_API_KEY",) if k in os.environ]
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({"argv": args, "cwd": os.getcwd(), "keys_in_env": keys,
                          "time": time.time()}) + "\\n")
state = Path("terraform.tfstate")
cloud = here / "buckets.json"
buckets = json.loads(cloud.read_text()) if cloud.exists() else []
current = json.loads(state.read_text()) if state.exists() else None
bucket = OUTPUTS["bucket_name"]


def fail(message):
    print("Error: " + message, flush=True)
    sys.exit(1)


def save():
    state.write_text(json.dumps(current))
    cloud.write_text(json.dumps(buckets))


variables = dict(a[len("-var="):].split("=", 1) for a in args if a.startswith("-var="))
if os.environ.get("FAKE_TERRAFORM_FAIL") == args[0]:
    fail("googleapi: Error 403: Permission 'iam.serviceAccounts.create' denied")
if args[0] in ("init", "apply", "destroy", "import") and not list(Path().glob("*.tf")):
    fail("No configuration files")
if args[0] == "init":
    Path(".terraform").mkdir(exist_ok=True)
    print("Initializing provider plugins...")
    print("Terraform has been successfully initialized!")
elif args[0] == "apply" and "-target=google_secret_manager_secret.prefect_api_key" in args:
    current = current or {"bucket": None, "outputs": {}}
    current["prefect_api_key_secret"] = True
    save()
    print("google_secret_manager_secret.prefect_api_key[0]: Creating...")
    print("Apply complete! Resources: 2 added, 0 changed, 0 destroyed.")
elif args[0] == "apply":
    image = variables.get("worker_image", "")
    if image and not variables.get("prefect_api_url"):
        fail("Resource precondition failed: worker_image needs prefect_api_url")
    current = current or {"bucket": None}
    current["outputs"] = {
        **OUTPUTS,
        "push_pool": variables.get("push_pool", "false"),
        "worker_image": image,
        "worker_service_name": "numerai-nodes-worker" if image else "",
        "prefect_api_key_secret": "prefect-api-key" if image else "",
    }
    print("google_storage_bucket.cache: Creating...")
    if current["bucket"] is None:
        if bucket in buckets:
            fail("googleapi: Error 409: you already own this bucket, bucketNameUnavailable")
        buckets.append(bucket)
        current["bucket"] = {"force_destroy": False}
    if variables.get("force_destroy") == "true":
        current["bucket"]["force_destroy"] = True
    save()
    print("Apply complete! Resources: 17 added, 0 changed, 0 destroyed.")
elif args[0] == "import":
    address, resource_id = args[-2:]
    if resource_id not in buckets:
        fail("Cannot import non-existent remote object")
    if current and current.get("bucket"):
        fail("Resource already managed by Terraform")
    current = current or {"outputs": {}}
    current["bucket"] = {"force_destroy": False}
    save()
    print("Import successful!")
elif args[0] == "state" and args[1] == "rm":
    if not (current and current.get("bucket")):
        fail("Invalid target address")
    current["bucket"] = None
    save()
    print("Removed google_storage_bucket.cache")
elif args[0] == "destroy":
    if current and current.get("bucket"):
        if not current["bucket"]["force_destroy"]:
            fail("googleapi: Error 409: The bucket you tried to delete is not empty.")
        buckets.remove(bucket)
    current = {"outputs": {}, "bucket": None}
    save()
    print("Destroy complete! Resources: 17 destroyed.")
elif args[0] == "output":
    if not (current and current.get("outputs")):
        print("Warning: No outputs found", file=sys.stderr)
        print("{}")
    else:
        print(json.dumps({k: {"sensitive": False, "type": "string", "value": v}
                          for k, v in current["outputs"].items()}))
"""
KEY_NAMES = (
    "NUMERAI_PUBLIC_ID",
    "NUMERAI_SECRET_KEY",
    "NUMERAI_NODES_PUBLIC_ID",
    "NUMERAI_NODES_SECRET_KEY",
)


@pytest.fixture
def fake_terraform(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(
        f"#!{sys.executable}\nOUTPUTS = {OUTPUTS!r}\nKEY_NAMES = {KEY_NAMES!r}\n" + _FAKE_TERRAFORM
    )
    script.chmod(0o755)
    return script


def _calls(fake_terraform: Path) -> list[dict]:
    log = fake_terraform.parent / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _commands(fake_terraform: Path) -> list[str]:
    return [
        " ".join(call["argv"][:2] if call["argv"][0] == "state" else call["argv"][:1])
        for call in _calls(fake_terraform)
    ]


def _buckets(fake_terraform: Path) -> list[str]:
    """The buckets that exist in the fake's cloud."""
    cloud = fake_terraform.parent / "buckets.json"
    return json.loads(cloud.read_text()) if cloud.exists() else []


class _FakeGoogle(BaseHTTPRequestHandler):
    """Secret Manager `addVersion` and `versions/latest`, and Artifact Registry tags, in memory."""

    versions: dict[str, list[str]]
    tags: set[str]
    auth: list[str]
    added: list[tuple[float, str]]

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/token":  # OAuth for the made-up service account
            return self._reply(200, {"access_token": "adc-token", "expires_in": 3600})
        self.auth.append(self.headers.get("Authorization", ""))
        if "/secrets/forbidden" in self.path:
            message = "Permission 'secretmanager.versions.add' denied"
            return self._reply(403, {"error": {"message": message}})
        body = json.loads(data)
        if not self.path.endswith(":addVersion"):
            return self._reply(404, {"error": {"message": "not found"}})
        secret = self.path.removesuffix(":addVersion")
        values = self.versions.setdefault(secret, [])
        values.append(base64.b64decode(body["payload"]["data"]).decode())
        self.added.append((time.time(), secret))
        self._reply(200, {"name": f"{secret}/versions/{len(values)}", "state": "ENABLED"})

    def do_GET(self) -> None:
        self.auth.append(self.headers.get("Authorization", ""))
        secret = self.path.removesuffix("/versions/latest")
        if self.path.endswith("/versions/latest") and self.versions.get(secret):
            return self._reply(200, {"name": self.path, "state": "ENABLED"})
        if self.path in self.tags:
            return self._reply(200, {"name": self.path})
        self._reply(404, {"error": {"message": "NOT_FOUND"}})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def google_api() -> Iterator[tuple[str, type[_FakeGoogle]]]:
    handler = type(
        "Handler", (_FakeGoogle,), {"versions": {}, "tags": set(), "auth": [], "added": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def service_account_file(tmp_path, google_api, monkeypatch) -> Path:
    """Application Default Credentials from a made-up service account: parsed, never used online."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "numerai-test",
                "private_key_id": "0",
                "private_key": pem,
                "client_email": "deployer@numerai-test.iam.gserviceaccount.com",
                "client_id": "0",
                "token_uri": f"{google_api[0]}/token",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """The project's working directory (NUMERAI_NODES_HOME), where Terraform must keep its state."""
    path = tmp_path / "home"
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(path))
    return path


@pytest.fixture
def settings(
    tmp_path, home, fake_terraform, google_api, service_account_file, monkeypatch
) -> GcpSettings:
    # The keys sit in the environment, as for `infra gcp up`: Terraform must not inherit them,
    # under their names or their aliases.
    for name, value in zip(KEY_NAMES, [PUBLIC_ID, SECRET_KEY] * 2, strict=True):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FAKE_TERRAFORM_FAIL", raising=False)
    url, _ = google_api
    return GcpSettings(
        project="numerai-test",
        region="europe-west4",
        terraform=str(fake_terraform),
        pool_name=f"cloud-run-{tmp_path.name[-12:]}".lower(),
        secret_manager_url=url,
        artifact_registry_url=url,
        _env_file=None,
    )


def _state_dir(home: Path) -> Path:
    return (home / "infra" / "gcp").resolve()


def _package_files() -> set[str]:
    return {path.name for path in CONFIG_DIR.iterdir()}


# --- the template ---------------------------------------------------------------------------


def _defaults(template: dict) -> dict:
    return {name: var.get("default") for name, var in template["variables"]["properties"].items()}


def test_template_sizes_the_job_for_training():
    template = cloud_run_pool_template(OUTPUTS, image="img:1", preset="gen-m")
    defaults = _defaults(template)
    assert defaults["timeout"] > 600
    assert defaults["memory"] == "8Gi"
    assert defaults["cpu"] == "2"
    assert _defaults(cloud_run_pool_template(OUTPUTS, "img:1", preset="mem-l"))["memory"] == (
        "24Gi"
    )


def test_template_takes_everything_from_the_outputs():
    defaults = _defaults(cloud_run_pool_template(OUTPUTS, image_uri(OUTPUTS, "v3")))
    assert defaults["region"] == "europe-west4"
    assert defaults["image"] == f"{OUTPUTS['repository_url']}/numerai-nodes:v3"
    assert defaults["service_account_name"] == OUTPUTS["service_account_email"]
    assert defaults["credentials"] == {"project": "numerai-test"}
    assert defaults["env"] == {
        RESULT_STORAGE_ENV: "gcs-bucket/numerai-nodes-results",
        HEARTBEAT_ENV: "30",  # so a run whose container died is marked crashed, then rerun
    }


def test_template_reads_keys_from_secret_manager_only(monkeypatch):
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", PUBLIC_ID)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", SECRET_KEY)
    template = cloud_run_pool_template(OUTPUTS, "img:1")
    assert _defaults(template)["env_from_secrets"] == {
        "NUMERAI_PUBLIC_ID": {"secret": "numerai-public-id", "version": "latest"},
        "NUMERAI_SECRET_KEY": {"secret": "numerai-secret-key", "version": "latest"},
    }
    text = json.dumps(template)
    assert PUBLIC_ID not in text and SECRET_KEY not in text
    assert "NUMERAI_PUBLIC_ID" not in json.dumps(_defaults(template)["env"])


def test_template_with_a_credentials_block():
    block_id = "6f1b1d7e-0000-4000-8000-000000000001"
    template = cloud_run_pool_template(OUTPUTS, "img:1", credentials_block_id=block_id)
    assert _defaults(template)["credentials"] == {"$ref": {"block_document_id": block_id}}


def test_template_names_missing_outputs():
    partial = {k: v for k, v in OUTPUTS.items() if k != "service_account_email"}
    with pytest.raises(StackOutputsMissing, match=r"service_account_email.*infra gcp up") as caught:
        cloud_run_pool_template(partial, "img:1")
    assert isinstance(caught.value, GcpStackError) and isinstance(caught.value, LookupError)


# --- keys -----------------------------------------------------------------------------------


def test_keys_come_from_the_settings_and_never_show(monkeypatch, tmp_path):
    for name in KEY_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeysMissing, match=r"NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY.*--skip-keys"):
        keys_from_settings()
    # The settings also read `.env` and the NUMERAI_NODES_ aliases: os.environ alone would not.
    (tmp_path / ".env").write_text(f"NUMERAI_PUBLIC_ID={PUBLIC_ID}\n")
    monkeypatch.setenv("NUMERAI_NODES_SECRET_KEY", SECRET_KEY)
    keys = keys_from_settings()
    assert keys is not None
    assert keys.public_id.get_secret_value() == PUBLIC_ID
    assert keys.secret_key.get_secret_value() == SECRET_KEY
    assert {name: value.get_secret_value() for name, value in keys.by_env_name().items()} == {
        "NUMERAI_PUBLIC_ID": PUBLIC_ID,
        "NUMERAI_SECRET_KEY": SECRET_KEY,
    }
    assert PUBLIC_ID not in repr(keys) and SECRET_KEY not in repr(keys)
    # A missing key comes from the prompt when there is one.
    (tmp_path / ".env").unlink()
    asked: list[str] = []
    prompted = keys_from_settings(lambda label: asked.append(label) or f" {PUBLIC_ID} ")
    assert prompted is not None and prompted.public_id.get_secret_value() == PUBLIC_ID
    assert asked == ["Numerai public id"]


def test_terraform_never_sees_a_key_variable():
    assert set(KEY_NAMES) <= set(key_env_names())


# --- terraform ------------------------------------------------------------------------------


def test_terraform_runs_and_keeps_its_state_under_the_home(settings, home, fake_terraform):
    before = _package_files()
    terraform = Terraform(settings)
    assert terraform.work_dir == _state_dir(home)
    assert terraform.outputs() == {}  # no state yet, and nothing created for asking
    assert not terraform.work_dir.exists()
    terraform.init()
    terraform.apply(stack_variables("numerai-test", "europe-west4"))

    work_dir = _state_dir(home)
    assert {call["cwd"] for call in _calls(fake_terraform)} == {str(work_dir)}
    assert (work_dir / "terraform.tfstate").is_file() and (work_dir / ".terraform").is_dir()
    # The package's configuration was copied, not run in place: the sources stay untouched.
    assert {path.name for path in work_dir.glob("*.tf")} == {
        path.name for path in CONFIG_DIR.glob("*.tf")
    }
    assert (work_dir / "main.tf").read_text() == (CONFIG_DIR / "main.tf").read_text()
    assert _package_files() == before
    assert not (CONFIG_DIR / "terraform.tfstate").exists() or "terraform.tfstate" in before
    assert terraform.outputs()["bucket_name"] == OUTPUTS["bucket_name"]


def test_terraform_copies_the_configuration_it_is_given(settings, home, tmp_path):
    config = tmp_path / "my-config"
    config.mkdir()
    (config / "main.tf").write_text('variable "project" {}\n')
    stale = _state_dir(home) / "old.tf"
    stale.parent.mkdir(parents=True)
    stale.write_text("# from an older configuration\n")
    Terraform(settings.model_copy(update={"config_dir": config})).init()
    assert sorted(path.name for path in _state_dir(home).glob("*.tf")) == ["main.tf"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TerraformConfigMissing, match="NUMERAI_NODES_GCP_CONFIG_DIR"):
        Terraform(settings.model_copy(update={"config_dir": empty})).init()


def test_terraform_refuses_to_keep_state_in_its_configuration(settings, monkeypatch):
    # A home whose infra/gcp is the package itself would put the state into the sources.
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(CONFIG_DIR.parents[1]))
    with pytest.raises(GcpSettingsError, match="NUMERAI_NODES_HOME") as caught:
        Terraform(settings).init()
    assert isinstance(caught.value, ValueError)


def test_missing_terraform_is_a_clear_error(settings, prefect_server):
    settings = settings.model_copy(update={"terraform": "no-such-terraform-binary"})
    with pytest.raises(TerraformMissing) as caught:
        gcp.up(settings, _KEYS)
    message = str(caught.value)
    assert "Install Terraform" in message and "NUMERAI_NODES_GCP_TERRAFORM" in message
    assert "numerai-nodes infra gcp up" in message
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, NodeError)


def test_failing_terraform_names_the_cause_and_keeps_keys_out(
    settings, monkeypatch, prefect_server
):
    monkeypatch.setenv("FAKE_TERRAFORM_FAIL", "apply")
    lines: list[str] = []
    with pytest.raises(TerraformFailed) as caught:
        gcp.up(settings, _KEYS, lines.append)
    message = str(caught.value)
    assert "`terraform apply` failed with exit code 1" in message
    assert "iam.serviceAccounts.create' denied" in message
    assert "numerai-nodes infra gcp up" in message
    assert PUBLIC_ID not in message and SECRET_KEY not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__ is False


# --- up, down, status -----------------------------------------------------------------------


def test_up_applies_stores_keys_and_creates_the_pool(
    settings, home, fake_terraform, google_api, prefect_server
):
    from prefect_gcp.cloud_storage import GcsBucket

    _, fake = google_api
    lines: list[str] = []
    info = gcp.up(
        settings,
        _KEYS,
        lines.append,
        secrets=SecretManager(settings.secret_manager_url, token=lambda: "test-token"),
    )

    calls = _calls(fake_terraform)
    commands = [call["argv"][0] for call in calls]
    assert commands.index("init") < commands.index("apply") < len(commands) - 1
    assert commands[-1] == "output"
    apply = calls[commands.index("apply")]["argv"]
    assert "-auto-approve" in apply
    assert "-var=project=numerai-test" in apply and "-var=region=europe-west4" in apply
    assert all(call["cwd"] == str(_state_dir(home)) for call in calls)
    assert all(call["keys_in_env"] == [] for call in calls)
    everything = json.dumps(calls) + "\n".join(lines) + json.dumps(info.to_json())
    assert PUBLIC_ID not in everything and SECRET_KEY not in everything
    assert "Apply complete! Resources: 17 added, 0 changed, 0 destroyed." in lines

    assert fake.versions == {
        "/v1/projects/numerai-test/secrets/numerai-public-id": [PUBLIC_ID],
        "/v1/projects/numerai-test/secrets/numerai-secret-key": [SECRET_KEY],
    }
    assert set(fake.auth) == {"Bearer test-token"}
    assert info.keys_stored and info.pool_created

    template = read_pool_template(settings.pool_name)
    assert template == cloud_run_pool_template(OUTPUTS, info.image)
    assert _defaults(template)["image"] == f"{OUTPUTS['repository_url']}/numerai-nodes:latest"
    assert PUBLIC_ID not in json.dumps(template) and SECRET_KEY not in json.dumps(template)
    block = GcsBucket.load(RESULTS_BLOCK)
    assert block.bucket == OUTPUTS["bucket_name"]
    # prefect.yaml's Cloud Run node builds its image into the stack's repository.
    from prefect.variables import Variable

    assert Variable.get(IMAGE_VARIABLE) == f"{OUTPUTS['repository_url']}/numerai-nodes"
    assert block.gcp_credentials.project == "numerai-test"

    # A second run updates the pool in place; without keys the secrets stay as they are.
    again = gcp.up(settings, None)
    assert not again.pool_created and not again.keys_stored
    assert len(fake.versions["/v1/projects/numerai-test/secrets/numerai-public-id"]) == 1

    # doctor: the stack, the pool, the secrets and the image, through the same fake API.
    fake.tags.add(
        "/v1/projects/numerai-test/locations/europe-west4/repositories/numerai-nodes/"
        "packages/numerai-nodes/tags/latest"
    )
    checks = {
        check.name: check
        for check in doctor_checks(settings.pool_name, settings=settings, token=lambda: "t")
    }
    assert checks["Terraform state"].status == "ok"
    assert checks[f"Work pool {settings.pool_name}"].status == "ok"
    assert checks["Secret numerai-public-id"].status == "ok"
    assert checks["Secret numerai-secret-key"].status == "ok"
    assert checks["Node image"].status == "ok"

    done = gcp.down(settings)
    assert _commands(fake_terraform)[-3:] == ["init", "state rm", "destroy"]
    assert f"kept bucket {OUTPUTS['bucket_name']} (trained models)" in done[0]
    assert f"deleted work pool {settings.pool_name}" in done
    assert read_pool_template(settings.pool_name) is None
    assert gcp.down(settings)[0].startswith("no GCP stack is applied")


def test_down_keeps_the_bucket_by_default_and_the_next_up_adopts_it(
    settings, fake_terraform, prefect_server
):
    gcp.up(settings, None)
    done = gcp.down(settings)
    assert any("`down --delete-bucket` deletes it" in line for line in done)
    assert _buckets(fake_terraform) == [OUTPUTS["bucket_name"]]  # the models are still there
    assert "-var=force_destroy=true" not in json.dumps(_calls(fake_terraform))
    assert gcp.status(settings).exists is False

    # Without adoption, `apply` would fail: the bucket exists outside the state.
    again = gcp.up(settings, None)
    imports = [call["argv"] for call in _calls(fake_terraform) if call["argv"][0] == "import"]
    assert imports and imports[-1][-2:] == ["google_storage_bucket.cache", OUTPUTS["bucket_name"]]
    assert again.outputs["bucket_name"] == OUTPUTS["bucket_name"]
    assert _buckets(fake_terraform) == [OUTPUTS["bucket_name"]]
    assert gcp.status(settings).exists is True


def test_down_with_delete_bucket_deletes_the_bucket_and_its_models(
    settings, fake_terraform, prefect_server
):
    gcp.up(settings, None)
    done = gcp.down(settings, delete_bucket=True)
    calls = [call["argv"] for call in _calls(fake_terraform)]
    applies = [argv for argv in calls if argv[0] == "apply"]
    # The state must allow deleting a bucket with objects before `destroy` runs.
    assert "-var=force_destroy=true" in applies[-1]
    assert "-target=google_storage_bucket.cache" in applies[-1]
    assert calls[-1][0] == "destroy" and "-var=force_destroy=true" in calls[-1]
    assert calls.index(applies[-1]) < len(calls) - 1
    assert _buckets(fake_terraform) == []
    assert f"deleted bucket {OUTPUTS['bucket_name']} and the models in it" in done
    assert not any(call[0] == "state" for call in calls)


def test_status_has_the_shape_of_every_place(settings, prefect_server):
    missing = gcp.status(settings)
    assert missing.place == "gcp" and missing.exists is False
    assert missing.problems and "no GCP stack is applied" in missing.problems[0]

    gcp.up(settings, None)
    found = gcp.status(settings)
    assert set(found.to_json()) == {field.name for field in fields(PlaceStatus)}
    assert found.exists and found.pool_exists and found.pool_matches, found.problems
    assert found.outputs["bucket_name"] == OUTPUTS["bucket_name"]
    assert found.problems == ()

    # A pool that drifted from the stack is named, variable by variable.
    template = read_pool_template(settings.pool_name)
    template["variables"]["properties"]["region"]["default"] = "us-east1"
    upsert_pool(settings.pool_name, "cloud-run-v2", template)
    drifted = gcp.status(settings)
    assert not drifted.pool_matches
    assert drifted.problems == (
        f"work pool {settings.pool_name}: region is 'us-east1', the stack has 'europe-west4'",
    )


def test_doctor_names_the_fix_for_every_failure(
    settings, home, prefect_server, tmp_path, monkeypatch
):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    checks = doctor_checks(settings.pool_name, settings=settings)
    assert [(check.name, check.status) for check in checks] == [
        ("GCP credentials", "fail"),
        ("Terraform state", "fail"),
    ]
    # A stack without its pool, its secret versions or its image.
    _state_dir(home).mkdir(parents=True)
    (_state_dir(home) / "terraform.tfstate").write_text(json.dumps({"outputs": OUTPUTS}))
    checks = doctor_checks(settings.pool_name, settings=settings, token=lambda: "test-token")
    failed = [check for check in checks if check.status == "fail"]
    assert {check.name for check in failed} == {
        "GCP credentials",
        f"Work pool {settings.pool_name}",
        "Secret numerai-public-id",
        "Secret numerai-secret-key",
        "Node image",
    }
    assert all("numerai-nodes infra gcp up" in check.fix for check in failed)


def test_secret_manager_errors_keep_the_value_out(google_api):
    url, _ = google_api
    secrets = SecretManager(url, token=lambda: "t")
    with pytest.raises(GcpStackError) as caught:
        secrets.add_version("p", "forbidden", SECRET_KEY)
    message = str(caught.value)
    assert "403: Permission 'secretmanager.versions.add' denied" in message
    assert SECRET_KEY not in message and "infra gcp up" in message
    assert secrets.has_version("p", "s") is False
    secrets.add_version("p", "s", SECRET_KEY)
    assert secrets.has_version("p", "s") is True


def test_an_unreachable_google_api_is_a_transient_error():
    secrets = SecretManager("http://127.0.0.1:9", token=lambda: "t")
    with pytest.raises(GcpUnreachable, match="Could not reach") as caught:
        secrets.add_version("p", "s", SECRET_KEY)
    assert caught.value.transient and isinstance(caught.value, ConnectionError)
    assert SECRET_KEY not in str(caught.value)


def test_up_with_prefect_unreachable_fails_before_terraform(settings, fake_terraform):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(NodeError, match=r"Prefect API at http://127\.0\.0\.1:9/api does not answer"),
    ):
        gcp.up(settings, None)
    assert _calls(fake_terraform) == []


# --- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings, google_api, monkeypatch) -> None:
    url, _ = google_api
    for name, value in {
        "TERRAFORM": settings.terraform,
        "PROJECT": "numerai-test",
        "REGION": "europe-west4",
        "POOL_NAME": settings.pool_name,
        "SECRET_MANAGER_URL": url,
        "ARTIFACT_REGISTRY_URL": url,
    }.items():
        monkeypatch.setenv(f"NUMERAI_NODES_GCP_{name}", value)


def test_cli_up_status_down(settings, cli_env, google_api, fake_terraform, prefect_server):
    _, fake = google_api
    runner = CliRunner()

    result = runner.invoke(app, ["up", "--preset", "cpu-s"])
    assert result.exit_code == 0, result.output
    assert "Created work pool" in result.output
    assert OUTPUTS["bucket_name"] in result.output
    assert PUBLIC_ID not in result.output and SECRET_KEY not in result.output
    assert fake.versions["/v1/projects/numerai-test/secrets/numerai-secret-key"] == [SECRET_KEY]
    assert set(fake.auth) == {"Bearer adc-token"}  # from the service account's token endpoint
    assert _defaults(read_pool_template(settings.pool_name))["memory"] == "2Gi"  # cpu-s

    result = runner.invoke(app, ["status", "--json", "--pool", settings.pool_name])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    # The shape every place's `status --json` has (the AWS tests check theirs against it too).
    assert set(status) == {field.name for field in fields(PlaceStatus)}
    assert status["place"] == "gcp" and status["exists"] is True
    assert status["outputs"]["bucket_name"] == OUTPUTS["bucket_name"]
    assert status["pool_name"] == settings.pool_name
    # `up --preset cpu-s` is not what the settings (gen-m) would write: status says so.
    assert not status["pool_matches"]
    assert any("memory is '2Gi', the stack has '8Gi'" in p for p in status["problems"])

    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert f"work pool {settings.pool_name}: does not match the stack" in result.output
    assert "problem:" in result.output and "memory" in result.output

    result = runner.invoke(app, ["down", "--yes"])
    assert result.exit_code == 0, result.output
    assert "kept bucket" in result.output and "--delete-bucket" in result.output
    assert read_pool_template(settings.pool_name) is None
    assert _buckets(fake_terraform) == [OUTPUTS["bucket_name"]]

    result = runner.invoke(app, ["up", "--skip-keys"])
    assert result.exit_code == 0, result.output
    assert "--skip-keys" in result.output
    assert fake.versions["/v1/projects/numerai-test/secrets/numerai-secret-key"] == [SECRET_KEY]
    result = runner.invoke(app, ["down", "--yes", "--delete-bucket"])
    assert result.exit_code == 0, result.output
    assert f"deleted bucket {OUTPUTS['bucket_name']}" in result.output
    assert _buckets(fake_terraform) == []


def test_cli_up_reads_the_keys_from_the_settings(
    settings, cli_env, google_api, prefect_server, tmp_path, monkeypatch
):
    _, fake = google_api
    for name in KEY_NAMES:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        f"NUMERAI_PUBLIC_ID={PUBLIC_ID}\nNUMERAI_SECRET_KEY={SECRET_KEY}\n"
    )
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    assert fake.versions == {
        "/v1/projects/numerai-test/secrets/numerai-public-id": [PUBLIC_ID],
        "/v1/projects/numerai-test/secrets/numerai-secret-key": [SECRET_KEY],
    }


def test_cli_without_keys_outside_a_terminal_says_how_to_give_them(monkeypatch, tmp_path):
    for name in KEY_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["up"])
    # The CLI's top level prints the message; the command raises it before any Terraform.
    assert result.exit_code == 1
    assert isinstance(result.exception, KeysMissing)
    message = str(result.exception)
    assert "NUMERAI_PUBLIC_ID" in message and "NUMERAI_SECRET_KEY" in message
    assert "--skip-keys" in message


def test_cli_raises_missing_terraform_for_the_top_level_to_print(
    settings, monkeypatch, prefect_server
):
    monkeypatch.setenv("NUMERAI_NODES_GCP_TERRAFORM", "no-such-terraform-binary")
    result = CliRunner().invoke(app, ["up", "--skip-keys"])
    # The CLI's top level prints a NodeError's message; the command only raises it.
    assert result.exit_code == 1
    assert isinstance(result.exception, TerraformMissing)
    assert "Terraform was not found" in str(result.exception)


# --- push pools on Prefect Cloud ------------------------------------------------------------

WORKER_SA = OUTPUTS["worker_service_account_email"]


def _key_file(path: Path, client_email: str) -> Path:
    """A service account key file as `gcloud iam service-accounts keys create` writes it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "numerai-test",
                "private_key_id": "1",
                "private_key": pem,
                "client_email": client_email,
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


def _private_key(path: Path) -> str:
    """The middle of the key's base64 body: never in a message, argv, output or template."""
    body = json.loads(path.read_text())["private_key"].split("\n")
    return body[len(body) // 2]


def _text(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def cloud(prefect_server):
    from tests.infra.aws.prefect_cloud import cloud_shaped_api

    with cloud_shaped_api(prefect_server) as url:
        yield url


def test_cli_up_push_makes_a_cloud_run_push_pool_on_prefect_cloud(
    settings, cli_env, cloud, tmp_path, fake_terraform, google_api
):
    import asyncio

    from prefect import get_client
    from prefect_gcp import GcpCredentials
    from prefect_gcp.workers.cloud_run_v2 import CloudRunWorkerV2

    from infra.gcp.pool import CLOUD_RUN_PUSH
    from infra.pools import PushCredentialsMissing, default_template, read_pool_type

    runner = CliRunner()
    pool = settings.pool_name
    # On Prefect Cloud without --push: a hybrid pool, and how to choose push.
    result = runner.invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    assert read_pool_type(pool) == "cloud-run-v2"
    assert "cloud-run-v2:push" in _text(result) and f"prefect work-pool delete {pool}" in _text(
        result
    )
    assert runner.invoke(app, ["down", "--yes"]).exit_code == 0

    # --push without a key: the stack records it, and the error says how to make the key.
    result = runner.invoke(app, ["up", "--push"])
    assert result.exit_code == 1
    assert isinstance(result.exception, PushCredentialsMissing)
    assert "gcloud iam service-accounts keys create" in str(result.exception)
    assert "--push-key-file" in str(result.exception)
    applies = [c["argv"] for c in _calls(fake_terraform) if c["argv"][0] == "apply"]
    assert "-var=push_pool=true" in applies[-1]

    # A key of another service account is refused, without showing the key.
    wrong = _key_file(tmp_path / "deployer.json", "deployer@numerai-test.iam.gserviceaccount.com")
    result = runner.invoke(app, ["up", "--push-key-file", str(wrong)])
    assert result.exit_code == 1 and isinstance(result.exception, GcpSettingsError)
    assert WORKER_SA in str(result.exception) and _private_key(wrong) not in str(result.exception)

    # The worker service account's key: the stack recorded --push, so no flag is needed.
    key = _key_file(tmp_path / "worker.json", WORKER_SA)
    result = runner.invoke(app, ["up", "--push-key-file", str(key)])
    assert result.exit_code == 0, result.output
    assert read_pool_type(pool) == "cloud-run-v2:push"
    assert "no worker to run" in _text(result)
    block = GcpCredentials.load("numerai-nodes-cloud-run-push")
    assert block.service_account_info.get_secret_value()["client_email"] == WORKER_SA
    template = read_pool_template(pool)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "numerai-nodes-cloud-run-push", "gcp-credentials"
        )
    assert _defaults(template)["credentials"] == {"$ref": {"block_document_id": str(document.id)}}

    # No key of any kind in the pool, the block's Numerai side, the output or Terraform.
    visible = json.dumps(template) + result.output + json.dumps(_calls(fake_terraform))
    for secret in (PUBLIC_ID, SECRET_KEY, _private_key(key)):
        assert secret not in visible
    stored = json.dumps(block.model_dump(mode="json", context={"include_secrets": True}))
    assert PUBLIC_ID not in stored and SECRET_KEY not in stored

    # The template is one the Cloud Run v2 worker accepts, block reference resolved.
    assert set(default_template("cloud-run-v2")["variables"]["properties"]) <= set(
        _defaults(template)
    )

    async def configuration():
        async with get_client() as client:
            return await CloudRunWorkerV2.job_configuration.from_template_and_values(
                template, {}, client=client
            )

    config = asyncio.run(configuration())
    assert config.credentials.service_account_info.get_secret_value()["client_email"] == WORKER_SA
    assert config.region == OUTPUTS["region"]
    assert (
        config.job_body["template"]["template"]["serviceAccount"]
        == (OUTPUTS["service_account_email"])
    )

    # doctor: the pool's kind and its block.
    checks = {c.name: c for c in doctor_checks(pool, settings=settings, token=lambda: "t")}
    assert checks["cloud-run-v2 pool kind"].status == "ok"
    assert checks["cloud-run-v2 push credentials"].status == "ok"
    assert checks[f"Work pool {pool}"].status == "ok", checks[f"Work pool {pool}"]
    # A hybrid pool where the stack recorded --push names the fix.
    (check,) = CLOUD_RUN_PUSH.checks(pool, "cloud-run-v2", template, recorded=True)
    assert check.status == "fail" and f"prefect work-pool delete {pool}" in check.fix
    assert "infra gcp up --push" in check.fix

    result = runner.invoke(app, ["down", "--yes"])
    assert result.exit_code == 0, result.output
    assert read_pool_type(pool) is None
    assert "deleted block gcp-credentials/numerai-nodes-cloud-run-push" in _text(result)


def test_push_is_refused_off_prefect_cloud(settings, cli_env, fake_terraform, prefect_server):
    from infra.pools import PushNeedsPrefectCloud

    result = CliRunner().invoke(app, ["up", "--push"])
    assert result.exit_code == 1 and isinstance(result.exception, PushNeedsPrefectCloud)
    assert "prefect cloud login" in str(result.exception)
    assert not [c for c in _calls(fake_terraform) if c["argv"][0] == "apply"]


# --- the hosted worker ----------------------------------------------------------------------

API_KEY = "pnu_fakeprefectapikey0123456789"
WORKER_IMAGE = f"{OUTPUTS['repository_url']}/numerai-nodes:v1"


def test_worker_image_reaches_terraform_and_the_api_key_secret_manager_only(
    settings, cli_env, fake_terraform, google_api, prefect_server, monkeypatch
):
    from prefect.settings import PREFECT_API_KEY, temporary_settings

    _, fake = google_api
    monkeypatch.setenv("PREFECT_API_KEY", API_KEY)  # Terraform must not inherit it
    runner = CliRunner()
    with temporary_settings({PREFECT_API_KEY: API_KEY}):
        result = runner.invoke(app, ["up", "--worker-image", WORKER_IMAGE])
    assert result.exit_code == 0, result.output
    calls = _calls(fake_terraform)
    applies = [c for c in calls if c["argv"][0] == "apply"]
    target, full = applies[-2:]
    assert "-target=google_secret_manager_secret.prefect_api_key" in target["argv"]
    for argv in (target["argv"], full["argv"]):
        assert f"-var=worker_image={WORKER_IMAGE}" in argv
        assert f"-var=prefect_api_url={prefect_server}" in argv
        assert f"-var=work_pool_name={settings.pool_name}" in argv
        assert "-var=worker_api_key=true" in argv
    # The key's version exists before the service that reads it is applied.
    secret = "/v1/projects/numerai-test/secrets/prefect-api-key"
    assert fake.versions[secret] == [API_KEY]
    (added,) = [when for when, name in fake.added if name == secret]
    assert target["time"] < added < full["time"]
    assert API_KEY not in json.dumps(calls) and API_KEY not in result.output
    assert all(call["keys_in_env"] == [] for call in calls)
    assert "numerai-nodes-worker" in _text(result)
    assert "loopback address" in _text(result)  # Cloud Run cannot reach this machine's server

    # A second `up` keeps the service; --worker-image '' removes it.
    with temporary_settings({PREFECT_API_KEY: API_KEY}):
        assert runner.invoke(app, ["up", "--skip-keys"]).exit_code == 0
    assert f"-var=worker_image={WORKER_IMAGE}" in _calls(fake_terraform)[-2]["argv"]
    result = runner.invoke(app, ["up", "--skip-keys", "--worker-image", ""])
    assert result.exit_code == 0, result.output
    last = [c["argv"] for c in _calls(fake_terraform) if c["argv"][0] == "apply"][-1]
    assert "-var=worker_image=" in last and "-var=prefect_api_url=" in last
    assert gcp.status(settings).outputs["worker_service_name"] == ""


def test_doctor_checks_the_hosted_worker_heartbeat(
    settings, fake_terraform, google_api, prefect_server
):
    from prefect import get_client

    gcp.up(settings, None, worker_image=WORKER_IMAGE)
    pool = settings.pool_name

    def worker_check():
        checks = doctor_checks(pool, settings=settings, token=lambda: "t")
        (check,) = [c for c in checks if c.name == "Worker service numerai-nodes-worker"]
        return check

    dead = worker_check()
    assert dead.status == "fail" and "no live worker" in dead.detail
    assert (
        "gcloud run services logs read numerai-nodes-worker --project numerai-test "
        "--region europe-west4" in dead.fix
    )
    with get_client(sync_client=True) as client:
        client.send_worker_heartbeat(pool, "cloud-run-worker-1", heartbeat_interval_seconds=30)
    alive = worker_check()
    assert alive.status == "ok" and "cloud-run-worker-1" in alive.detail
    # Without a hosted worker there is nothing of the service to check.
    gcp.up(settings, None, worker_image="")
    names = {c.name for c in doctor_checks(pool, settings=settings, token=lambda: "t")}
    assert "Worker service numerai-nodes-worker" not in names
