"""A throwaway PostgreSQL server on loopback for tests (initdb + pg_ctl from the Debian package)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.integration.servers import free_port


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class Postgres:
    """initdb a cluster in `root`, start it on a free port, and stop it on exit.

    As root it runs as the `postgres` user, since PostgreSQL refuses to run as root; the cluster
    then lives in a directory of its own that `postgres` may enter (pytest's are root-only).
    """

    def __init__(self, root: Path, database: str = "prefect", user: str = "prefect"):
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            root = Path(tempfile.mkdtemp(prefix="numerai-nodes-pg-"))
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.database = database
        self.user = user

    @staticmethod
    def available() -> bool:
        return all(_binary(name) for name in ("initdb", "pg_ctl", "createdb"))

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def __enter__(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        log = str(self.root / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                  self.database)  # fmt: skip
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        if self._as_postgres:
            shutil.rmtree(self.root, ignore_errors=True)

    def query(self, sql: str) -> str:
        psql = _binary("psql") or "psql"
        done = subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", self.database,
             "-tAc", sql],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return done.stdout.strip()

    def _run(self, name: str, *args: str, check: bool = True) -> None:
        command = [_binary(name) or name, *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=120, cwd=self.root)
