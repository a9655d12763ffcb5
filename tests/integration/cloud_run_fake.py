"""A fake of the outside world for the Cloud Run v2 worker: the Admin API, OAuth and Secret Manager.

It serves the Cloud Run Admin API v2 subset prefect-gcp's worker calls (jobs create, get, run and
delete; executions get, list and delete) and Google's OAuth token endpoint for a service account it
made. `jobs:run` starts the job's container (`tests/integration/containers.py`: the job's image
with podman, or a local process in the project directory where containers cannot run): its
`command` and `args`, its `env` with `secretKeyRef` values read from an in-memory Secret Manager,
its CPU and memory limits, a fresh container per execution. Its exit code decides the execution.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google.auth.jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.integration.containers import Container, Launcher, exit_code

TOKEN_URI = "https://oauth2.googleapis.com/token"
_JOB = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/jobs/(?P<job>[^/:]+)"
_JOB_ID = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class _ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code

    def response(self) -> JSONResponse:
        error = {"code": self.code, "message": str(self), "status": _STATUS.get(self.code, "")}
        return JSONResponse({"error": error}, status_code=self.code)


@dataclass
class Execution:
    """One run of a job: its container process and how it ended."""

    name: str
    job: str
    template: dict[str, Any]
    home: Path
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    create_time: str = field(default_factory=_now)
    completion_time: str | None = None
    exit_code: int | None = None
    message: str = ""
    env: dict[str, str] = field(default_factory=dict)
    container: Container | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def succeeded(self) -> bool:
        return self.completion_time is not None and self.exit_code == 0

    def resource(self) -> dict[str, Any]:
        done = self.completion_time is not None
        state = "CONDITION_SUCCEEDED" if self.succeeded else "CONDITION_FAILED"
        condition = {"type": "Completed", "state": state if done else "CONDITION_PENDING"}
        if done and not self.succeeded:
            condition["message"] = self.message
        resource = {
            "name": self.name,
            "uid": self.uid,
            "generation": "1",
            "createTime": self.create_time,
            "startTime": self.create_time,
            "launchStage": "GA",
            "job": self.job.rsplit("/", 1)[-1],
            "parallelism": 1,
            "taskCount": 1,
            "template": self.template,
            "conditions": [condition],
            "runningCount": 0 if done else 1,
            "succeededCount": int(self.succeeded),
            "failedCount": int(done and not self.succeeded),
            "logUri": (self.home / "container.log").as_uri(),
            "etag": f'"{self.uid}"',
        }
        if done:
            resource["completionTime"] = self.completion_time
        return resource


class CloudRunFake:
    """The fake's state and its ASGI `app`. Serve it behind `tls_proxy.InterceptingProxy`.

    `secrets` is Secret Manager: secret name -> value (any version). `container_env` is what the
    fake's "network" gives every container (proxy and CA settings), under the job's own env, and
    `container_files` the host files that network needs (its CA bundle).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        launcher: Launcher,
        secrets: Mapping[str, str],
        container_env: Mapping[str, str] | None = None,
    ):
        self.workdir = Path(workdir)
        self.launcher = launcher
        self.secrets = dict(secrets)
        self.container_env = dict(container_env or {})
        self.container_files: list[Path] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # every job body as created, deleted ones too
        self.deleted: list[str] = []
        self.executions: dict[str, Execution] = {}
        self.started: list[Execution] = []  # every execution, deleted ones too
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v2/{path:path}", self._api, methods=["GET", "POST", "DELETE"]),
            ]
        )

    def service_account_info(self, project: str) -> dict[str, str]:
        """A service account key file's contents, whose tokens this fake issues."""
        private_key = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": "fake-key-1",
            "private_key": private_key,
            "client_email": f"worker@{project}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": TOKEN_URI,
        }

    def stop(self) -> None:
        """Kill the containers still running (the ones this fake started)."""
        for execution in self.started:
            self._kill(execution)

    # --- OAuth ---------------------------------------------------------------------------------
    async def _token(self, request: Request) -> JSONResponse:
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            google.auth.jwt.decode(str(form["assertion"]), certs=public_pem, audience=TOKEN_URI)
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, 400)
        token = f"ya29.fake-{uuid.uuid4().hex}"
        self._tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    # --- Admin API v2 --------------------------------------------------------------------------
    async def _api(self, request: Request) -> JSONResponse:
        authorization = request.headers.get("authorization", "")
        if authorization.removeprefix("Bearer ") not in self._tokens:
            return _ApiError(401, "Request had invalid authentication credentials.").response()
        path, method = request.path_params["path"], request.method
        body = await request.json() if method == "POST" and await request.body() else None
        try:
            with self._lock:
                return JSONResponse(self._dispatch(method, path, request.query_params, body))
        except _ApiError as exc:
            return exc.response()

    def _dispatch(
        self, method: str, path: str, query: Mapping[str, str], body: Any
    ) -> dict[str, Any]:
        if method == "POST" and (m := re.fullmatch(r"projects/[^/]+/locations/[^/]+/jobs", path)):
            return self._create_job(m.group(0), query.get("jobId", ""), body or {})
        if m := re.fullmatch(_JOB + r":run", path):
            return self._run_job(path.removesuffix(":run")) if method == "POST" else {}
        if m := re.fullmatch(_JOB, path):
            job = self._job(path)
            if method == "DELETE":
                del self.jobs[path]
                self.deleted.append(path)
                return _operation(path, job)
            return self._job_resource(path)
        if re.fullmatch(_JOB + "/executions", path) and method == "GET":
            job_name = path.removesuffix("/executions")
            found = [e.resource() for e in self.executions.values() if e.job == job_name]
            return {"executions": found}
        if re.fullmatch(_JOB + "/executions/[^/]+", path):
            execution = self.executions.get(path)
            if execution is None:
                raise _ApiError(404, f"Resource '{path}' was not found")
            if method == "DELETE":
                self._kill(execution)
                del self.executions[path]
                return _operation(path, execution.resource())
            return execution.resource()
        raise _ApiError(404, f"The requested URL /v2/{path} was not found on this server.")

    def _job(self, name: str) -> dict[str, Any]:
        if name not in self.jobs:
            raise _ApiError(404, f"Resource '{name}' was not found")
        return self.jobs[name]

    def _create_job(self, parent: str, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _JOB_ID.fullmatch(job_id):
            raise _ApiError(400, f"Invalid job id '{job_id}'.")
        name = f"{parent}/{job_id}"
        if name in self.jobs:
            raise _ApiError(409, f"Resource '{job_id}' already exists.")
        containers = body.get("template", {}).get("template", {}).get("containers", [])
        if not containers or not containers[0].get("image"):
            raise _ApiError(400, "template.template.containers: a container image is required.")
        self.jobs[name] = {**body, "name": name, "uid": str(uuid.uuid4()), "createTime": _now()}
        self.created.append(self.jobs[name])
        return _operation(name, self.jobs[name])

    def _job_resource(self, name: str) -> dict[str, Any]:
        job = self._job(name)
        runs = [e for e in self.executions.values() if e.job == name]
        latest = {"name": runs[-1].name, "createTime": runs[-1].create_time} if runs else {}
        return {
            **job,
            "generation": "1",
            "updateTime": job["createTime"],
            "launchStage": job.get("launchStage", "GA"),
            "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
            "executionCount": len(runs),
            "latestCreatedExecution": latest,
            "etag": f'"{job["uid"]}"',
        }

    def _run_job(self, name: str) -> dict[str, Any]:
        job = self._job(name)
        execution_id = f"{name.rsplit('/', 1)[-1]}-{uuid.uuid4().hex[:5]}"
        home = self.workdir / execution_id
        home.mkdir(parents=True)
        execution = Execution(
            name=f"{name}/executions/{execution_id}",
            job=name,
            template=job["template"]["template"],
            home=home,
        )
        self.executions[execution.name] = execution
        self.started.append(execution)
        threading.Thread(target=self._execute, args=(execution,), daemon=True).start()
        return _operation(name, execution.resource())

    # --- the container -------------------------------------------------------------------------
    def _execute(self, execution: Execution) -> None:
        container = execution.template["containers"][0]
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        timeout = float(str(execution.template.get("timeout", "600s")).removesuffix("s"))
        limits = container.get("resources", {}).get("limits", {})
        try:
            execution.env = self._container_env(container.get("env", []))
        except KeyError as exc:
            return self._finish(execution, None, f"Secret {exc} was not found.")
        execution.container = Container(
            name=f"cloud-run-{execution.name.rsplit('/', 1)[-1]}",
            image=container["image"],
            command=argv,
            env=execution.env,
            cpus=float(limits["cpu"]) if "cpu" in limits else None,
            memory_mib=_mib(limits["memory"]) if "memory" in limits else None,
            files=tuple(self.container_files),
        )
        log_path = execution.home / "container.log"
        execution.process = self.launcher.start(execution.container, log_path)
        try:
            code = exit_code(execution.process.wait(timeout))
        except subprocess.TimeoutExpired:
            self._kill(execution)
            return self._finish(execution, None, f"Task timed out after {timeout:.0f}s.")
        self._finish(execution, code, f"Task exited with exit code {code}.")

    def _kill(self, execution: Execution) -> None:
        if execution.container is None or execution.process is None:
            return
        self.launcher.kill(execution.container, execution.process)
        try:
            execution.process.wait(30)
        except subprocess.TimeoutExpired:
            return

    def _finish(self, execution: Execution, code: int | None, message: str) -> None:
        execution.exit_code, execution.message = code, message
        execution.completion_time = _now()

    def _container_env(self, entries: list[dict[str, Any]]) -> dict[str, str]:
        """What Cloud Run adds to the image's environment: the network, then the job's env."""
        env = dict(self.container_env)
        for entry in entries:
            if "valueSource" in entry:
                env[entry["name"]] = self.secrets[entry["valueSource"]["secretKeyRef"]["secret"]]
            elif entry.get("value") is not None:
                env[entry["name"]] = str(entry["value"])
        return env


def _operation(name: str, metadata: dict[str, Any]) -> dict[str, Any]:
    location = name.split("/jobs/")[0]
    return {
        "name": f"{location}/operations/{uuid.uuid4()}",
        "metadata": metadata,
        "done": False,
    }


def _mib(quantity: str) -> int:
    """A Kubernetes-style memory quantity ("512Mi", "2Gi") in MiB."""
    units = {"Mi": 1, "Gi": 1024, "M": 1, "G": 1000}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity.removesuffix(suffix)) * factor)
    return int(quantity) // 2**20
