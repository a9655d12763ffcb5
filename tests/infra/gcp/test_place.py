"""The GCP stack: the Cloud Run v2 template, the Terraform runner, Secret Manager, pool and CLI."""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deployments.cli.infra_gcp import app
from flows.errors import NodeError
from infra.gcp import place as gcp
from infra.gcp.doctor import doctor_checks
from infra.pools import RESULT_STORAGE_ENV, read_pool_template

PUBLIC_ID = "PUBLICID7Q3XK2"
SECRET_KEY = "SECRETKEY9ZP4WM8"
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

# A stand-in for the Terraform CLI: it logs its argv, cwd and whether the keys reached its
# environment, then behaves like terraform for init, apply, destroy and `output -json`.
_FAKE_TERRAFORM = """\
import json, os, sys
from pathlib import Path
here = Path(__file__).parent
args = sys.argv[1:]
keys = [k for k in ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY") if k in os.environ]
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({"argv": args, "cwd": os.getcwd(), "keys_in_env": keys}) + "\\n")
state = here / "state.json"
if os.environ.get("FAKE_TERRAFORM_FAIL") == args[0]:
    print("Error: googleapi: Error 403: Permission 'iam.serviceAccounts.create' denied", flush=True)
    sys.exit(1)
if args[0] == "init":
    print("Initializing provider plugins...")
    print("Terraform has been successfully initialized!")
elif args[0] == "apply":
    print("google_storage_bucket.cache: Creating...")
    state.write_text(json.dumps(OUTPUTS))
    print("Apply complete! Resources: 17 added, 0 changed, 0 destroyed.")
elif args[0] == "destroy":
    state.unlink(missing_ok=True)
    print("Destroy complete! Resources: 17 destroyed.")
elif args[0] == "output":
    if not state.exists():
        print("Warning: No outputs found", file=sys.stderr)
        print("{}")
    else:
        values = json.loads(state.read_text())
        print(json.dumps({k: {"sensitive": False, "type": "string", "value": v}
                          for k, v in values.items()}))
"""


@pytest.fixture
def fake_terraform(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(f"#!{sys.executable}\n" + f"OUTPUTS = {OUTPUTS!r}\n" + _FAKE_TERRAFORM)
    script.chmod(0o755)
    return script


def _calls(fake_terraform: Path) -> list[dict]:
    log = fake_terraform.parent / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


class _FakeGoogle(BaseHTTPRequestHandler):
    """Secret Manager `addVersion` and `versions/latest`, and Artifact Registry tags, in memory."""

    versions: dict[str, list[str]]
    tags: set[str]
    auth: list[str]

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
    handler = type("Handler", (_FakeGoogle,), {"versions": {}, "tags": set(), "auth": []})
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
def settings(
    tmp_path, fake_terraform, google_api, service_account_file, monkeypatch
) -> gcp.GcpSettings:
    # The keys sit in the environment, as for `infra gcp up`: Terraform must not inherit them.
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", PUBLIC_ID)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("FAKE_TERRAFORM_FAIL", raising=False)
    infra = tmp_path / "infra"
    infra.mkdir()
    url, _ = google_api
    return gcp.GcpSettings(
        project="numerai-test",
        region="europe-west4",
        terraform=str(fake_terraform),
        infra_dir=infra,
        pool_name=f"cloud-run-{tmp_path.name[-12:]}".lower(),
        secret_manager_url=url,
        artifact_registry_url=url,
    )


# --- the template ---------------------------------------------------------------------------


def _defaults(template: dict) -> dict:
    return {name: var.get("default") for name, var in template["variables"]["properties"].items()}


def test_template_sizes_the_job_for_training():
    template = gcp.cloud_run_pool_template(OUTPUTS, image="img:1", preset="gen-m")
    defaults = _defaults(template)
    assert defaults["timeout"] > 600
    assert defaults["memory"] == "8Gi"
    assert defaults["cpu"] == "2"
    assert _defaults(gcp.cloud_run_pool_template(OUTPUTS, "img:1", preset="mem-l"))["memory"] == (
        "24Gi"
    )


def test_template_takes_everything_from_the_outputs():
    defaults = _defaults(gcp.cloud_run_pool_template(OUTPUTS, gcp.image_uri(OUTPUTS, "v3")))
    assert defaults["region"] == "europe-west4"
    assert defaults["image"] == f"{OUTPUTS['repository_url']}/numerai-nodes:v3"
    assert defaults["service_account_name"] == OUTPUTS["service_account_email"]
    assert defaults["credentials"] == {"project": "numerai-test"}
    assert defaults["env"] == {RESULT_STORAGE_ENV: "gcs-bucket/numerai-nodes-results"}


def test_template_reads_keys_from_secret_manager_only(monkeypatch):
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", PUBLIC_ID)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", SECRET_KEY)
    template = gcp.cloud_run_pool_template(OUTPUTS, "img:1")
    assert _defaults(template)["env_from_secrets"] == {
        "NUMERAI_PUBLIC_ID": {"secret": "numerai-public-id", "version": "latest"},
        "NUMERAI_SECRET_KEY": {"secret": "numerai-secret-key", "version": "latest"},
    }
    text = json.dumps(template)
    assert PUBLIC_ID not in text and SECRET_KEY not in text
    assert "NUMERAI_PUBLIC_ID" not in json.dumps(_defaults(template)["env"])


def test_template_with_a_credentials_block():
    block_id = "6f1b1d7e-0000-4000-8000-000000000001"
    template = gcp.cloud_run_pool_template(OUTPUTS, "img:1", credentials_block_id=block_id)
    assert _defaults(template)["credentials"] == {"$ref": {"block_document_id": block_id}}


def test_template_names_missing_outputs():
    partial = {k: v for k, v in OUTPUTS.items() if k != "service_account_email"}
    with pytest.raises(gcp.GcpStackError, match=r"service_account_email.*infra gcp up"):
        gcp.cloud_run_pool_template(partial, "img:1")


# --- terraform ------------------------------------------------------------------------------


def test_missing_terraform_is_a_clear_error(settings):
    settings.terraform = "no-such-terraform-binary"
    with pytest.raises(gcp.TerraformMissing) as caught:
        gcp.up(settings, keys=(PUBLIC_ID, SECRET_KEY))
    message = str(caught.value)
    assert "Install Terraform" in message and "NUMERAI_NODES_GCP_TERRAFORM" in message
    assert "numerai-nodes infra gcp up" in message


def test_failing_terraform_names_the_cause_and_keeps_keys_out(settings, monkeypatch):
    monkeypatch.setenv("FAKE_TERRAFORM_FAIL", "apply")
    lines: list[str] = []
    with pytest.raises(gcp.TerraformFailed) as caught:
        gcp.up(settings, keys=(PUBLIC_ID, SECRET_KEY), progress=lines.append)
    message = str(caught.value)
    assert "`terraform apply` failed with exit code 1" in message
    assert "iam.serviceAccounts.create' denied" in message
    assert "numerai-nodes infra gcp up" in message
    assert PUBLIC_ID not in message and SECRET_KEY not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__ is False


def test_up_applies_stores_keys_and_creates_the_pool(
    settings, fake_terraform, google_api, prefect_server
):
    from prefect_gcp.cloud_storage import GcsBucket

    _, fake = google_api
    lines: list[str] = []
    info = gcp.up(
        settings,
        keys=(PUBLIC_ID, SECRET_KEY),
        progress=lines.append,
        secrets=gcp.SecretManager(settings.secret_manager_url, token=lambda: "test-token"),
    )

    calls = _calls(fake_terraform)
    commands = [call["argv"][0] for call in calls]
    assert commands.index("init") < commands.index("apply") < len(commands) - 1
    assert commands[-1] == "output"
    apply = calls[commands.index("apply")]["argv"]
    assert "-auto-approve" in apply
    assert "-var=project=numerai-test" in apply and "-var=region=europe-west4" in apply
    assert all(call["cwd"] == str(settings.infra_dir) for call in calls)
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
    assert template == gcp.cloud_run_pool_template(OUTPUTS, info.image)
    assert _defaults(template)["image"] == f"{OUTPUTS['repository_url']}/numerai-nodes:latest"
    assert PUBLIC_ID not in json.dumps(template) and SECRET_KEY not in json.dumps(template)
    block = GcsBucket.load(gcp.RESULTS_BLOCK)
    assert block.bucket == OUTPUTS["bucket_name"]
    # prefect.yaml's Cloud Run node builds its image into the stack's repository.
    from prefect.variables import Variable

    assert Variable.get(gcp.IMAGE_VARIABLE) == f"{OUTPUTS['repository_url']}/numerai-nodes"
    assert block.gcp_credentials.project == "numerai-test"

    # A second run updates the pool in place; --no-keys leaves the secrets alone.
    again = gcp.up(settings, keys=None)
    assert not again.pool_created and not again.keys_stored
    assert len(fake.versions["/v1/projects/numerai-test/secrets/numerai-public-id"]) == 1

    # doctor: the stack, the pool, the secrets and a missing image, through the same fake API.
    fake.tags.add(
        "/v1/projects/numerai-test/locations/europe-west4/repositories/numerai-nodes/"
        "packages/numerai-nodes/tags/latest"
    )
    checks = {
        check.name: check
        for check in doctor_checks(settings.pool_name, settings, token=lambda: "test-token")
    }
    assert checks["Terraform state"].status == "ok"
    assert checks[f"Work pool {settings.pool_name}"].status == "ok"
    assert checks["Secret numerai-public-id"].status == "ok"
    assert checks["Secret numerai-secret-key"].status == "ok"
    assert checks["Node image"].status == "ok"

    assert gcp.down(settings) is True
    assert [call["argv"][0] for call in _calls(fake_terraform)][-2:] == ["init", "destroy"]
    assert read_pool_template(settings.pool_name) is None
    assert gcp.down(settings) is False


def test_doctor_names_the_fix_for_every_failure(settings, prefect_server, tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    checks = doctor_checks(settings.pool_name, settings)
    assert [(check.name, check.status) for check in checks] == [
        ("GCP credentials", "fail"),
        ("Terraform state", "fail"),
    ]
    # A stack without its pool, its secret versions or its image.
    (settings.infra_dir.parent / "bin" / "state.json").write_text(json.dumps(OUTPUTS))
    checks = doctor_checks(settings.pool_name, settings, token=lambda: "test-token")
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
    secrets = gcp.SecretManager(url, token=lambda: "t")
    with pytest.raises(gcp.GcpStackError) as caught:
        secrets.add_version("p", "forbidden", SECRET_KEY)
    message = str(caught.value)
    assert "403: Permission 'secretmanager.versions.add' denied" in message
    assert SECRET_KEY not in message and "infra gcp up" in message
    assert secrets.has_version("p", "s") is False
    secrets.add_version("p", "s", SECRET_KEY)
    assert secrets.has_version("p", "s") is True


# --- the CLI --------------------------------------------------------------------------------


def test_cli_up_status_down(settings, google_api, prefect_server, monkeypatch, tmp_path):
    url, fake = google_api
    for name, value in {
        "TERRAFORM": settings.terraform,
        "INFRA_DIR": str(settings.infra_dir),
        "PROJECT": "numerai-test",
        "REGION": "europe-west4",
        "POOL_NAME": settings.pool_name,
        "SECRET_MANAGER_URL": url,
        "ARTIFACT_REGISTRY_URL": url,
    }.items():
        monkeypatch.setenv(f"NUMERAI_NODES_GCP_{name}", value)
    runner = CliRunner()

    result = runner.invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    assert "Created work pool" in result.output
    assert OUTPUTS["bucket_name"] in result.output
    assert PUBLIC_ID not in result.output and SECRET_KEY not in result.output
    assert fake.versions["/v1/projects/numerai-test/secrets/numerai-secret-key"] == [SECRET_KEY]

    assert set(fake.auth) == {"Bearer adc-token"}  # from the service account's token endpoint

    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 1, result.output  # no image pushed yet
    status = json.loads(result.stdout)
    assert status["outputs"]["bucket_name"] == OUTPUTS["bucket_name"]
    failed = [check for check in status["checks"] if check["status"] != "ok"]
    assert [check["name"] for check in failed] == ["Node image"]
    assert "docker push" in failed[0]["fix"]

    result = runner.invoke(app, ["down", "--yes"])
    assert result.exit_code == 0, result.output
    assert read_pool_template(settings.pool_name) is None


def test_cli_without_keys_outside_a_terminal_says_how_to_give_them(monkeypatch):
    for name in ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 1
    assert "NUMERAI_PUBLIC_ID" in result.output and "--no-keys" in result.output
    assert "Traceback" not in result.output


def test_cli_reports_missing_terraform_without_traceback(settings, monkeypatch):
    monkeypatch.setenv("NUMERAI_NODES_GCP_TERRAFORM", "no-such-terraform-binary")
    monkeypatch.setenv("NUMERAI_NODES_GCP_INFRA_DIR", str(settings.infra_dir))
    result = CliRunner().invoke(app, ["up", "--no-keys"])
    assert result.exit_code == 1
    assert "Terraform was not found" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_up_with_prefect_unreachable_fails_before_terraform(settings, fake_terraform):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(NodeError, match=r"Prefect API at http://127\.0\.0\.1:9/api does not answer"),
    ):
        gcp.up(settings, keys=None)
    assert _calls(fake_terraform) == []
