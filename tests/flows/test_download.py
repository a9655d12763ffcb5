"""Fetching one file: every response checked, resumes that only append what was asked for."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from flows import download
from flows.errors import NumeraiUnavailable
from tests.integration.servers import UvicornThread

BODY = json.dumps({"feature_sets": {"small": [f"feature_{i}" for i in range(300)]}}).encode()
TIMEOUT = httpx.Timeout(5.0)


class FileStorage:
    """A working fake of Numerai's file storage, with a script of what to answer."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.requests: list[str | None] = []
        self.peers: list[int | None] = []  # the client's port: one per TCP connection

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/features.json", self.serve)])

    async def serve(self, request: Request) -> Response:
        self.requests.append(request.headers.get("range"))
        self.peers.append(request.client.port if request.client else None)
        step = self.script.pop(0) if self.script else "ok"
        if step == "503":
            return Response(b"<Error>SlowDown</Error>", status_code=503)
        if step == "cut":  # full Content-Length, then the connection ends half way

            async def half():
                yield BODY[: len(BODY) // 2]
                await asyncio.sleep(0.3)  # let the first half reach the client
                raise ConnectionResetError("the sandbox's storage cut the transfer")

            return StreamingResponse(half(), headers={"content-length": str(len(BODY))})
        start = (
            int(request.headers["range"].split("=")[1].rstrip("-"))
            if "range" in request.headers
            else 0
        )
        if start:
            return Response(
                BODY[start:],
                status_code=206,
                headers={"content-range": f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"},
            )
        return Response(BODY)


@pytest.fixture
def storage():
    fake = FileStorage()
    with UvicornThread(fake.app()) as server:
        fake.url = f"{server.url}/features.json"  # type: ignore[attr-defined]
        yield fake


def test_a_cut_download_resumes_and_a_503_answer_to_the_resume_is_never_kept(storage, tmp_path):
    dest = tmp_path / "features.json"
    storage.script = ["cut", "503"]
    with pytest.raises(NumeraiUnavailable, match="resumes where it stopped"):
        download.fetch(storage.url, dest, timeout=TIMEOUT)
    kept = download.part_path(dest).stat().st_size
    assert 0 < kept < len(BODY) and not dest.exists()
    with pytest.raises(NumeraiUnavailable, match="HTTP 503"):
        download.fetch(storage.url, dest, timeout=TIMEOUT)
    assert download.part_path(dest).stat().st_size == kept  # the error body was not appended
    assert download.fetch(storage.url, dest, timeout=TIMEOUT) == len(BODY)
    assert dest.read_bytes() == BODY and not download.part_path(dest).exists()
    assert storage.requests[-1] == f"bytes={kept}-"


def test_a_whole_download_that_does_not_parse_is_deleted_and_transient(storage, tmp_path):
    dest = tmp_path / "features.json"
    download.part_path(dest).write_bytes(b"{not json")  # a part left by a broken writer
    storage.script = ["ok"]
    with pytest.raises(download.CorruptFile) as raised:
        download.fetch(storage.url, dest, timeout=TIMEOUT)
    assert raised.value.transient
    assert not dest.exists() and not download.part_path(dest).exists()
    assert download.fetch(storage.url, dest, timeout=TIMEOUT) == len(BODY)


def test_a_peer_that_never_answers_costs_a_timeout_not_the_round(tmp_path):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/features.json"
        with pytest.raises(NumeraiUnavailable, match="ReadTimeout"):
            download.fetch(url, tmp_path / "features.json", timeout=httpx.Timeout(0.5))


def test_the_transfers_of_a_process_share_one_connection(storage, tmp_path):
    for name in ("a.json", "b.json"):
        download.fetch(storage.url, tmp_path / name, timeout=TIMEOUT)
    assert download.served_size(storage.url, timeout=TIMEOUT) == len(BODY)
    assert len(storage.peers) == 3 and len(set(storage.peers)) == 1


def test_a_forked_child_makes_its_own_client():
    parent = download.http()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running the parent's cleanup
        os.write(write, b"own" if download.http() is not parent else b"shared")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"own"
    os.close(read)
    assert download.http() is parent
