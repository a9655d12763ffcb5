"""Azurite, Microsoft's Azure Storage emulator, serving Blob storage on a free loopback port.

Nothing is installed at test time: .ci/run installs the npm package `azurite` (3.x) into
`INSTALL_DIR`; a test finds it there or on PATH, and is skipped, naming the install command,
when it is absent. Each `Azurite` keeps its data in a workspace of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.integration.servers import free_port

INSTALL_DIR = Path.home() / ".cache" / "numerai-nodes" / "azurite"
INSTALL_COMMAND = f"npm install --prefix {INSTALL_DIR} azurite@3"
# Azurite's one account and its key, the same in every copy of Azurite (documented, not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def executable() -> str | None:
    """The `azurite-blob` program: installed by .ci/run, or on PATH."""
    installed = INSTALL_DIR / "node_modules" / ".bin" / "azurite-blob"
    if installed.is_file() and os.access(installed, os.X_OK):
        return str(installed)
    return shutil.which("azurite-blob")


def unavailable() -> str | None:
    """Why Azurite cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "Node.js is not installed: Azurite needs it (`apt-get install nodejs npm`)"
    if executable() is None:
        return f"Azurite is not installed: `{INSTALL_COMMAND}` (.ci/run does)"
    return None


class Azurite:
    """`azurite-blob` on 127.0.0.1 with its data in `workspace`; a context manager.

    `.connection_string` reaches it with the emulator's account key, `.blob_endpoint` is the
    account's URL. Requests to it go to loopback over plain HTTP.
    """

    def __init__(self, workspace: Path, *, start_timeout: float = 30.0):
        self.workspace = workspace
        self.port = free_port()
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def __enter__(self) -> Azurite:
        program = executable()
        if program is None:
            raise RuntimeError(unavailable())
        self.workspace.mkdir(parents=True, exist_ok=True)
        log = (self.workspace / "azurite.log").open("wb")
        self._process = subprocess.Popen(
            [
                program,
                "--blobHost", "127.0.0.1",
                "--blobPort", str(self.port),
                "--location", str(self.workspace / "data"),
                # The SDK may speak a newer storage API version than this Azurite knows.
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + self._start_timeout
        while not self._listening():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                tail = (self.workspace / "azurite.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Azurite did not start on port {self.port}:\n{tail}")
            time.sleep(0.1)
        return self

    def _listening(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def create_container(self, name: str) -> None:
        """Create a blob container (as the Azure stack's storage account holds the results')."""
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as client:
            client.create_container(name)

    def blob_names(self, container: str) -> list[str]:
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as client:
            return [blob.name for blob in client.get_container_client(container).list_blobs()]
