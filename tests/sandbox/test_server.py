"""The HTTP surface beyond numerapi: byte ranges, admin endpoints, faults, serving real files."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import numerapi
import numpy as np
import pandas as pd
import pytest

from flows.tournaments import CLASSIC
from sandbox.errors import SandboxConfigError
from sandbox.runner import Sandbox


def _file_url(sandbox: Sandbox, name: str) -> str:
    return f"{sandbox.url}files/{name}?tournament={CLASSIC.value}&round={sandbox.current_round()}"


def test_files_advertise_length_and_ranges(sandbox: Sandbox):
    served = sandbox.backend.dataset_path(CLASSIC, "v5.2/validation.parquet", None).read_bytes()
    url = _file_url(sandbox, "v5.2/validation.parquet")
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == served
    assert whole.headers["content-length"] == str(len(served))
    assert whole.headers["accept-ranges"] == "bytes"
    tail = httpx.get(url, headers={"Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == served[100:]
    assert tail.headers["content-range"] == f"bytes 100-{len(served) - 1}/{len(served)}"
    middle = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == served[10:20]
    assert httpx.get(url, headers={"Range": f"bytes={len(served)}-"}).status_code == 416


def test_the_download_log_counts_each_fetch_of_each_file(sandbox: Sandbox):
    before = httpx.get(f"{sandbox.url}_sandbox/downloads").json()
    url = _file_url(sandbox, "v5.2/features.json")
    httpx.get(url)
    httpx.get(url, headers={"Range": "bytes=10-"})
    after = httpx.get(f"{sandbox.url}_sandbox/downloads").json()
    assert after.get("v5.2/features.json", 0) - before.get("v5.2/features.json", 0) == 2


def test_the_call_log_counts_graphql_requests_by_top_level_field(sandbox: Sandbox):
    query = "query($t: Int!) { rounds(tournament: $t, number: 0) { number } }"
    httpx.post(sandbox.url, json={"query": query, "variables": {"t": 8}})
    httpx.post(sandbox.url, json={"query": query, "variables": {"t": 8}})
    httpx.post(sandbox.url, json={"query": "{ account { username } datasets: listDatasets }"})
    httpx.post(sandbox.url, json={"query": "{ not graphql"})
    assert httpx.get(f"{sandbox.url}_sandbox/calls").json() == {
        "rounds": 2,
        "account": 1,
        "listDatasets": 1,
    }


def test_unknown_file_and_unknown_upload_are_404(sandbox: Sandbox):
    assert httpx.get(f"{sandbox.url}files/../secrets.txt").status_code == 404
    assert httpx.get(f"{sandbox.url}files/v5.2/nope.parquet").status_code == 404
    bad_round = httpx.get(f"{sandbox.url}files/v5.2/live.parquet", params={"round": "last"})
    assert bad_round.status_code == 404 and "round must be a round number" in bad_round.text
    assert httpx.put(f"{sandbox.url}uploads/never-issued", content=b"x").status_code == 404


def test_bad_graphql_is_an_error_not_a_5xx(sandbox: Sandbox):
    bodies: tuple[object, ...] = ({"query": "{ nope }"}, {"variables": {}}, "not an object")
    for body in bodies:
        response = httpx.post(sandbox.url, json=body)
        assert response.status_code == 200 and response.json()["errors"][0]["message"]
    assert httpx.post(sandbox.url, content=b"{not json").json()["errors"]


def test_admin_state_has_no_keys(sandbox: Sandbox):
    state = httpx.get(f"{sandbox.url}_sandbox/state").json()
    assert state["models"][0]["name"] == "sandbox_model"
    classic = state["rounds"][str(CLASSIC.value)]
    assert classic["number"] == 1000 and classic["isOpen"]
    text = httpx.get(f"{sandbox.url}_sandbox/state").text
    assert sandbox.secret_key not in text and sandbox.public_id not in text
    assert httpx.get(f"{sandbox.url}healthz").json() == {"status": "ok"}


def test_admin_rounds_and_submissions(sandbox: Sandbox, point_numerapi):
    point_numerapi(sandbox)
    api = numerapi.NumerAPI(sandbox.public_id, sandbox.secret_key, verbosity="critical")
    frame = pd.DataFrame({"id": sandbox.live_ids(), "prediction": np.linspace(0.1, 0.9, 200)})
    api.upload_predictions(df=frame, model_id=sandbox.models["sandbox_model"])
    listed = httpx.get(f"{sandbox.url}_sandbox/submissions").json()
    assert [(s["model_name"], s["round"], s["row_count"]) for s in listed] == [
        ("sandbox_model", 1000, 200)
    ]
    with_ids = httpx.get(f"{sandbox.url}_sandbox/submissions", params={"ids": "1"}).json()
    assert set(with_ids[0]["ids"]) == set(sandbox.live_ids())
    assert httpx.get(f"{sandbox.url}_sandbox/submissions", params={"model": "x"}).json() == []

    closed = httpx.post(
        f"{sandbox.url}_sandbox/rounds/close", json={"tournament": CLASSIC.label}
    ).json()
    assert closed["number"] == 1000 and api.check_round_open() is False
    opened = httpx.post(f"{sandbox.url}_sandbox/rounds/open").json()
    assert opened["number"] == 1001 == api.get_current_round()
    bad = httpx.post(f"{sandbox.url}_sandbox/rounds/open", json={"tournament": "x"})
    assert bad.status_code == 400 and "Unknown tournament 'x'" in bad.json()["error"]
    not_json = httpx.post(f"{sandbox.url}_sandbox/rounds/close", content=b"{nope")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]


def test_admin_faults(sandbox: Sandbox):
    url = f"{sandbox.url}_sandbox/faults"
    assert httpx.post(url, json={"reject_uploads": True}).json()["reject_uploads"] is True
    assert sandbox.faults.reject_uploads is True
    assert httpx.post(url, json={"graphql_error": "boom"}).json()["graphql_error"] == "boom"
    assert httpx.post(sandbox.url, json={"query": "{ listDatasets }"}).json() == {
        "data": None,
        "errors": [{"message": "boom"}],
    }
    assert httpx.post(url, json={"nope": 1}).status_code == 400
    assert httpx.post(url, json={"latency_s": [1]}).status_code == 400
    httpx.post(url, json={"graphql_error": None, "latency_s": 0.3})
    started = time.monotonic()
    httpx.post(sandbox.url, json={"query": "{ listDatasets }"})
    assert time.monotonic() - started >= 0.3
    assert httpx.get(url).json() == {
        "reject_uploads": True,
        "graphql_error": None,
        "latency_s": 0.3,
    }


def test_data_dir_serves_real_files(sandbox: Sandbox, tmp_path: Path, point_numerapi):
    real = tmp_path / "real"
    for name in ("v5.2/live.parquet", "v5.2/features.json"):
        (real / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sandbox.backend.dataset_path(CLASSIC, name, None), real / name)
    with Sandbox(tmp_path / "root", data_dir=real) as sb:
        point_numerapi(sb)
        api = numerapi.NumerAPI(sb.public_id, sb.secret_key, verbosity="critical")
        assert api.list_datasets() == ["v5.2/features.json", "v5.2/live.parquet"]
        assert sb.live_ids() == sandbox.live_ids()
        dest = api.download_dataset("v5.2/live.parquet", str(tmp_path / "live.parquet"))
        assert Path(dest).read_bytes() == (real / "v5.2/live.parquet").read_bytes()
        frame = pd.DataFrame({"id": sb.live_ids(), "prediction": np.linspace(0.1, 0.9, 200)})
        api.upload_predictions(df=frame, model_id=sb.models["sandbox_model"])
        assert sb.submissions()[0].row_count == len(sb.live_ids())
        # No synthetic Classic data was made (Signals data stays synthetic).
        assert not any((tmp_path / "root").rglob("v5.2/*.parquet"))


def test_bad_size_and_missing_data_dir_fail_early(tmp_path: Path):
    with pytest.raises(SandboxConfigError, match="unknown sandbox size"):
        Sandbox(tmp_path, size="huge")
    with pytest.raises(SandboxConfigError, match="is not a directory"):
        Sandbox(tmp_path, data_dir=tmp_path / "missing")
