"""Settings of the local stack, read from `NUMERAI_NODES_*` environment variables (and .env)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from flows.settings import HomeSettings

_POSTGRES_SCHEMES = ("postgresql+asyncpg://", "postgresql://", "postgres://")


class StackSettings(HomeSettings):
    """Ports, database and timeouts of the local stack; `home` comes from HomeSettings."""

    prefect_port: int = Field(4200, ge=1, le=65535, description="Port of the Prefect server.")
    gateway_port: int = Field(8787, ge=1, le=65535, description="Port of the webhook gateway.")
    sandbox_port: int = Field(8686, ge=1, le=65535, description="Port of the sandbox (--sandbox).")
    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL for the Prefect server, e.g. "
        "`postgresql://prefect:PASSWORD@127.0.0.1:5432/prefect`. Unset: SQLite under the home.",
    )
    run_dir: Path | None = Field(
        None, description="Where PIDs (stack.json) and logs live. Default: `<home>/run`."
    )
    worker_poll_seconds: float = Field(
        1.0, gt=0, description="How often the worker asks for scheduled flow runs."
    )
    warm_start: bool = Field(
        True,
        description="Start flow runs from a warm process that has Prefect and the node flows "
        "imported (the stack's `zygote`): a run starts in milliseconds instead of seconds. "
        "`false`: every run starts a fresh Python process, as Prefect's process worker does.",
    )
    work_pool: str = Field(
        "local",
        description="The stack's own `process` work pool, served by its process `worker` (every "
        "other process pool of prefect.yaml gets a `worker-<pool>` of its own).",
    )
    gateway_public_url: str | None = Field(
        None,
        description="A public URL that reaches the gateway (a tunnel or a reverse proxy). "
        "Without it, `up` registers webhooks only on the sandbox.",
    )
    start_timeout_seconds: float = Field(
        180.0, gt=0, description="How long to wait for each process to become ready."
    )
    stop_timeout_seconds: float = Field(
        15.0, gt=0, description="How long each process gets to stop after SIGINT."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        for scheme in _POSTGRES_SCHEMES:
            if url.startswith(scheme):
                # Prefect's server talks to PostgreSQL through asyncpg.
                return SecretStr("postgresql+asyncpg://" + url[len(scheme) :])
        raise ValueError(
            "must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:5432/DB); "
            "leave it unset to use SQLite"
        )

    @model_validator(mode="after")
    def _default_run_dir(self) -> StackSettings:
        if self.run_dir is None:
            self.run_dir = self.home / "run"
        return self
