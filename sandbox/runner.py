"""`Sandbox`: a local Numerai served by uvicorn on a background thread, for tests and the CLI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.routing import BaseRoute, Mount

from flows.tournaments import CLASSIC, CRYPTO, SIGNALS
from sandbox.backend import Backend
from sandbox.catalog import DatasetCatalog, DirectoryCatalog
from sandbox.chaos import Chaos
from sandbox.classic_data import SyntheticClassic
from sandbox.classic_spec import DATA_VERSION
from sandbox.crypto_data import SyntheticCrypto
from sandbox.defaults import DEFAULT_MODELS, DEFAULT_PUBLIC_ID, DEFAULT_SECRET_KEY
from sandbox.server import create_app
from sandbox.signals_data import SyntheticSignals
from sandbox.sizes import size_preset
from sandbox.state import FIRST_ROUND, Clock, Faults, SandboxState, SubmissionRecord, utc_now
from sandbox.webhooks import WebhookDelivery
from sandbox.yahoo import YahooFake
from sandbox.yahoo import create_app as create_yahoo_app

YAHOO_PATH = "/yahoo"  # where the Yahoo fake is mounted
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class Sandbox:
    """A running local Numerai. Use as a context manager, or call `start()` and `stop()`.

    It serves Classic, Signals and Crypto datasets (synthetic Classic data as `data_version`,
    or the real files of `data_dir`), and under `yahoo_url` a fake of Yahoo Finance with the
    daily prices the Signals and Crypto targets were made from (crypto symbols trade every day).
    """

    def __init__(
        self,
        root: Path,
        *,
        size: str = "tiny",
        seed: int = 0,
        data_version: str = DATA_VERSION,
        data_dir: Path | None = None,
        public_id: str = DEFAULT_PUBLIC_ID,
        secret_key: str = DEFAULT_SECRET_KEY,
        models: Sequence[str] = DEFAULT_MODELS,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = utc_now,
        first_round: int = FIRST_ROUND,
        catalogs: Mapping[int, DatasetCatalog] | None = None,
        routes: Sequence[BaseRoute] = (),
        chaos: Chaos | None = None,
    ) -> None:
        size_preset(size)  # fail early on a bad size
        self.root = Path(root)
        self.public_id = public_id
        self.secret_key = secret_key
        self.host = host
        self._requested_port = port
        classic: DatasetCatalog = (
            DirectoryCatalog(data_dir)
            if data_dir is not None
            else SyntheticClassic(self.root / "data", size=size, seed=seed, version=data_version)
        )
        self.signals = SyntheticSignals(self.root / "data", size=size, seed=seed)
        self.crypto = SyntheticCrypto(self.root / "data", size=size, seed=seed)
        yahoo = create_yahoo_app([*self.signals.yahoo_symbols, *self.crypto.yahoo_symbols], seed)
        self.yahoo: YahooFake = yahoo.state.yahoo
        self.state = SandboxState(
            public_id=public_id,
            secret_key=secret_key,
            models=models,
            clock=clock,
            first_round=first_round,
            chaos=chaos,
        )
        self.backend = Backend(
            self.state,
            {CLASSIC: classic, SIGNALS: self.signals, CRYPTO: self.crypto, **(catalogs or {})},
        )
        self.webhooks = WebhookDelivery(self.backend.data_version)
        self.state.webhook_sender = self.webhooks.send
        routes = [Mount(YAHOO_PATH, app=yahoo), *routes]
        self.app = create_app(self.backend, routes, self.webhooks)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Generate the current round's data, then serve until `stop()`."""
        if self._thread is not None:
            return self
        for tournament in self.backend.catalogs:
            self.backend.prepare(tournament)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this. asyncio sets it only on sockets it made itself;
        # without it every response waits ~40 ms for a delayed ACK (Nagle's algorithm).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(128)
        self._socket = sock
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sandbox-uvicorn", daemon=True
        )
        self._thread.start()
        self._wait_started()
        return self

    def _wait_started(self) -> None:
        assert self._server is not None and self._thread is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline and self._thread.is_alive():
            if self._server.started:
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"the sandbox server did not start on {self.host}")

    def stop(self) -> None:
        """Stop serving and wait for the server thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self.webhooks.close()
        self._server, self._thread, self._socket = None, None, None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where it is ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The GraphQL endpoint, e.g. `http://127.0.0.1:54321/` (what NUMERAI_API_URL gets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def yahoo_url(self) -> str:
        """The Yahoo fake's base URL (what NUMERAI_NODES_YAHOO_URL gets)."""
        return self.url.rstrip("/") + YAHOO_PATH

    # --- what it holds ----------------------------------------------------------------------
    @property
    def models(self) -> dict[str, str]:
        """Model name -> model id."""
        return {m.name: m.id for m in self.state.models()}

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def chaos(self) -> Chaos:
        """Seeded chaos (off unless started with one); `configure` changes it while serving."""
        return self.state.chaos

    def submissions(self, model_name: str | None = None) -> list[SubmissionRecord]:
        return [
            s for s in self.state.submissions if model_name is None or s.model_name == model_name
        ]

    def current_round(self, tournament: int = CLASSIC) -> int:
        return self.state.current_round(tournament).number

    def open_round(self, tournament: int = CLASSIC, window: timedelta | None = None) -> int:
        """Open the next round (with new live data), for `window`, and return its number."""
        return self.backend.open_round(tournament, window).number

    def close_round(self, tournament: int = CLASSIC) -> None:
        """Close the current round: its closeStakingTime and closeTime move into the past."""
        self.state.close_round(tournament)

    def live_ids(self, tournament: int = CLASSIC) -> list[str]:
        """The current round's live ids."""
        return self.backend.live_ids(tournament)
