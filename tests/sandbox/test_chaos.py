"""Seeded chaos on a real sandbox: each fault as the real numerapi and httpx meet it; replays."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx
import numerapi
import numpy as np
import pandas as pd
import pytest
import requests

from flows.tournaments import CLASSIC
from sandbox.chaos_asgi import CHAOS_HEADER
from sandbox.runner import Sandbox

OFF = {"graphql_5xx": 0, "delay": 0, "truncate": 0, "put_fail": 0, "drop": 0}
LIST_DATASETS = {"query": "{ listDatasets }"}
TRAIN = "v5.2/train.parquet"


def _chaos(sandbox: Sandbox, **settings: Any) -> dict[str, Any]:
    """Turn chaos on over the admin API: every kind off unless named."""
    response = httpx.post(
        f"{sandbox.url}_sandbox/chaos", json={"seed": 0, **OFF, **settings}, timeout=10
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _counts(sandbox: Sandbox) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(f"{sandbox.url}_sandbox/chaos").json()["counts"]
    return counts


def _ranks(sandbox: Sandbox) -> np.ndarray:
    """Predictions Numerai accepts: spread over (0, 1), one per live id."""
    return np.linspace(0.1, 0.9, len(sandbox.live_ids()))


def _file_url(sandbox: Sandbox, name: str = TRAIN) -> str:
    return f"{sandbox.url}files/{name}?tournament={CLASSIC.value}"


def _served(sandbox: Sandbox, name: str = TRAIN) -> bytes:
    return sandbox.backend.dataset_path(CLASSIC, name, None).read_bytes()


def _upload_url(sandbox: Sandbox) -> tuple[str, str]:
    record = sandbox.state.create_upload("p.csv", sandbox.models["sandbox_model"], CLASSIC)
    return record.key, f"{sandbox.url}uploads/{record.key}"


def _outcome(client: httpx.Client, method: str, url: str, **kwargs: Any) -> str:
    """What a client saw: status and fault header, or the transport error."""
    try:
        with client.stream(method, url, **kwargs) as response:
            response.read()
            return f"{response.status_code} {response.headers.get(CHAOS_HEADER, '-')}"
    except httpx.TransportError as exc:
        return f"{type(exc).__name__}: {exc}"


def _replay(sandbox: Sandbox) -> list[str]:
    """One fixed sequence of GraphQL calls, downloads, resumes and uploads."""
    outcomes = []
    with httpx.Client(timeout=10) as client:
        for _ in range(6):
            outcomes.append(_outcome(client, "POST", sandbox.url, json=LIST_DATASETS))
            outcomes.append(_outcome(client, "GET", _file_url(sandbox)))
            ranged = {"Range": "bytes=10-"}
            outcomes.append(_outcome(client, "GET", _file_url(sandbox), headers=ranged))
            upload = _upload_url(sandbox)[1]
            outcomes.append(_outcome(client, "PUT", upload, content=b"id,prediction\n"))
    return outcomes


def test_the_same_seed_replays_the_same_faults(sandbox: Sandbox):
    every = {"graphql_5xx": 0.5, "truncate": 0.5, "put_fail": 0.5, "drop": 0.3}
    settings = {**every, "delay": 0.5, "delay_s": [0.001, 0.002]}
    _chaos(sandbox, seed=11, **settings)
    first, first_counts = _replay(sandbox), _counts(sandbox)
    _chaos(sandbox, seed=11, **settings)
    assert _replay(sandbox) == first and _counts(sandbox) == first_counts
    assert sum(first_counts.values()) > 0 and any(o.startswith("200 -") for o in first)
    _chaos(sandbox, seed=12, **settings)
    assert _replay(sandbox) != first


def test_a_graphql_5xx_reaches_numerapi(
    sandbox: Sandbox, napi: numerapi.NumerAPI, caplog: pytest.LogCaptureFixture
):
    _chaos(sandbox, graphql_5xx=1.0)
    response = httpx.post(sandbox.url, json=LIST_DATASETS)
    assert response.status_code in (502, 503) and response.text.strip()
    assert response.headers[CHAOS_HEADER] == "graphql_5xx"
    with caplog.at_level(logging.ERROR, logger="numerapi"):
        # numerapi retries a 5xx, then logs it and answers {} instead of raising.
        assert napi.raw_query(LIST_DATASETS["query"], retries=2, delay=0) == {}
    assert "Http Error: 50" in caplog.text
    assert _counts(sandbox)["graphql_5xx"] == 3


def test_a_truncated_download_is_a_short_read(
    sandbox: Sandbox, napi: numerapi.NumerAPI, tmp_path: Path
):
    served = _served(sandbox)
    _chaos(sandbox, truncate=1.0)
    got = b""
    with (
        pytest.raises(httpx.RemoteProtocolError, match="complete message body"),
        httpx.stream("GET", _file_url(sandbox)) as response,
    ):
        assert response.headers["content-length"] == str(len(served))
        assert response.headers[CHAOS_HEADER] == "truncate"
        for chunk in response.iter_raw():
            got += chunk
    assert 0 < len(got) < len(served) and got == served[: len(got)]
    dest = tmp_path / "train.parquet"
    with pytest.raises(requests.RequestException):
        napi.download_dataset(TRAIN, str(dest))
    # What reached `.temp` is a prefix (empty when the cut fell inside numerapi's first chunk).
    partial = Path(f"{dest}.temp").read_bytes()
    assert len(partial) < len(served) and served.startswith(partial)
    assert not dest.exists()
    assert _counts(sandbox)["truncate"] == 2


def test_a_range_resume_is_answered_503(sandbox: Sandbox, napi: numerapi.NumerAPI, tmp_path: Path):
    served = _served(sandbox)
    _chaos(sandbox, truncate=1.0)
    response = httpx.get(_file_url(sandbox), headers={"Range": "bytes=1000-"})
    assert response.status_code == 503 and "<Code>SlowDown</Code>" in response.text
    assert response.headers[CHAOS_HEADER] == "range_503"
    # numerapi appends whatever its resume request gets: the error body lands in the file.
    dest = tmp_path / "train.parquet"
    Path(f"{dest}.temp").write_bytes(served[:1000])
    napi.download_dataset(TRAIN, str(dest))
    assert dest.read_bytes() == served[:1000] + response.content
    assert _counts(sandbox)["range_503"] == 2


def test_a_failed_put_is_a_5xx_and_stores_nothing(sandbox: Sandbox, napi: numerapi.NumerAPI):
    _chaos(sandbox, put_fail=1.0)
    key, url = _upload_url(sandbox)
    response = httpx.put(url, content=b"id,prediction\n")
    assert response.status_code in (500, 503) and "<Error>" in response.text
    assert response.headers[CHAOS_HEADER] == "put_fail"
    upload = sandbox.state.upload(key)
    assert upload is not None and upload.data is None
    frame = pd.DataFrame({"id": sandbox.live_ids(), "prediction": _ranks(sandbox)})
    with pytest.raises(ValueError, match="never arrived"):  # numerapi ignores its PUT's status
        napi.upload_predictions(df=frame, model_id=sandbox.models["sandbox_model"])
    assert sandbox.submissions() == [] and _counts(sandbox)["put_fail"] == 2


def test_a_dropped_connection_is_a_transport_error(sandbox: Sandbox):
    _chaos(sandbox, seed=3, drop=1.0)
    with pytest.raises(httpx.TransportError):
        httpx.post(sandbox.url, json=LIST_DATASETS)
    seen = {"before": 0, "after": 0}
    for _ in range(12):
        before = sandbox.chaos.counts["drop_after"]
        key, url = _upload_url(sandbox)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            httpx.put(url, content=b"id,prediction\n")
        after_processing = sandbox.chaos.counts["drop_after"] > before
        upload = sandbox.state.upload(key)
        assert upload is not None and (upload.data is not None) == after_processing
        seen["after" if after_processing else "before"] += 1
    assert seen["before"] > 0 and seen["after"] > 0
    counts = _counts(sandbox)
    assert counts["drop"] + counts["drop_after"] == 13


def test_a_delay_waits_within_its_range(sandbox: Sandbox):
    _chaos(sandbox, delay=1.0, delay_s=[0.05, 0.08])
    for method, url in (("POST", sandbox.url), ("GET", _file_url(sandbox, "v5.2/features.json"))):
        started = time.monotonic()
        response = httpx.request(method, url, json=LIST_DATASETS if method == "POST" else None)
        assert response.status_code == 200 and time.monotonic() - started >= 0.05
    assert _counts(sandbox)["delay"] == 2


def test_probability_zero_changes_nothing(
    sandbox: Sandbox, napi: numerapi.NumerAPI, tmp_path: Path
):
    assert _chaos(sandbox, seed=5)["enabled"] is True
    served = _served(sandbox)
    assert TRAIN in napi.list_datasets()
    dest = tmp_path / "train.parquet"
    napi.download_dataset(TRAIN, str(dest))
    assert dest.read_bytes() == served
    resumed = tmp_path / "resumed.parquet"
    Path(f"{resumed}.temp").write_bytes(served[:1000])
    napi.download_dataset(TRAIN, str(resumed))
    assert resumed.read_bytes() == served
    tail = httpx.get(_file_url(sandbox), headers={"Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == served[100:]
    frame = pd.DataFrame({"id": sandbox.live_ids(), "prediction": _ranks(sandbox)})
    napi.upload_predictions(df=frame, model_id=sandbox.models["sandbox_model"])
    assert len(sandbox.submissions()) == 1
    state = httpx.get(f"{sandbox.url}_sandbox/chaos").json()
    assert set(state["counts"].values()) == {0} and state["requests"] >= 6


def test_admin_routes_are_never_faulted(sandbox: Sandbox):
    every = dict.fromkeys(OFF, 1.0)
    _chaos(sandbox, **every, delay_s=[5.0, 5.0])
    base = sandbox.url.rstrip("/")
    started = time.monotonic()
    for method, path in (
        ("GET", "/_sandbox/state"),
        ("GET", "/_sandbox/chaos"),
        ("GET", "/_sandbox/faults"),
        ("GET", "/_sandbox/submissions"),
        ("GET", "/_sandbox/webhooks"),
        ("POST", "/_sandbox/rounds/open"),
        ("POST", "/_sandbox/rounds/close"),
        ("GET", "/healthz"),
        ("GET", "/"),
        ("GET", "/yahoo/v7/finance/quote?symbols=AAPL"),
    ):
        response = httpx.request(method, base + path)
        assert CHAOS_HEADER not in response.headers, path
        assert response.status_code < 500, path
    assert time.monotonic() - started < 5.0  # no delay either
    state = httpx.get(f"{base}/_sandbox/chaos").json()
    assert set(state["counts"].values()) == {0} and state["requests"] == 0
    httpx.post(f"{base}/_sandbox/chaos", json={"delay": 0})
    with pytest.raises(httpx.TransportError):  # while the Numerai API itself is down
        httpx.post(sandbox.url, json=LIST_DATASETS)
