"""A Prefect Cloud-shaped API on loopback: a real Prefect server under a workspace URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from prefect.settings import PREFECT_API_URL, temporary_settings

ACCOUNT = "0b5d8b0e-1f1e-4c43-9a9e-6a4f0c1b2d3e"
WORKSPACE = "7c2a9f4d-5e6b-4f70-8a1b-2c3d4e5f6a7b"
_PREFIX = f"/api/accounts/{ACCOUNT}/workspaces/{WORKSPACE}"
# Headers that describe one hop (or a body httpx already decoded), not the resource.
_HOP = {"connection", "content-encoding", "content-length", "keep-alive", "transfer-encoding"}


@contextmanager
def cloud_shaped_api(server_api_url: str) -> Iterator[str]:
    """Serve `server_api_url` (`http://host:port/api`) at a Prefect Cloud workspace path, and
    point PREFECT_API_URL there; yield that URL.

    Prefect Cloud cannot be reached from a test: this gives the code under test a URL that is
    Prefect Cloud's in shape (`/api/accounts/<id>/workspaces/<id>`), in front of a real server.
    """
    upstream = httpx.Client(base_url=server_api_url.rstrip("/"), timeout=60)

    class Forward(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if not self.path.startswith(_PREFIX):
                self.send_error(404, "not a workspace path")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
            response = upstream.request(
                self.command, self.path[len(_PREFIX) :] or "/", content=body, headers=headers
            )
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}{_PREFIX}"
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()
