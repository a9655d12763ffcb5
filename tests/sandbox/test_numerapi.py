"""The real numerapi client against the sandbox over HTTP: data, rounds, models, submissions."""

from __future__ import annotations

from pathlib import Path

import numerapi
import numpy as np
import pandas as pd
import pytest
import requests

from flows.tournaments import CLASSIC, SIGNALS
from sandbox.runner import Sandbox
from sandbox.state import ManualClock

SUBMISSIONS_QUERY = """
query($modelId: String) {
  submissions(modelId: $modelId) { id filename insertedAt triggerId round { number tournament } }
}
"""


def _predictions(ids: list[str], low: float = 0.1) -> pd.DataFrame:
    """Predictions Numerai accepts: one per id, spread from `low` to 0.9."""
    return pd.DataFrame({"id": ids, "prediction": np.linspace(low, 0.9, len(ids))})


# --- reading data -------------------------------------------------------------------------------
def test_list_datasets(napi: numerapi.NumerAPI):
    """Numerai lists a dozen files per version, sorted by name."""
    assert napi.list_datasets() == [
        "v5.2/features.json",
        "v5.2/live.parquet",
        "v5.2/live_benchmark_models.parquet",
        "v5.2/live_example_preds.csv",
        "v5.2/live_example_preds.parquet",
        "v5.2/meta_model.parquet",
        "v5.2/train.parquet",
        "v5.2/train_benchmark_models.parquet",
        "v5.2/validation.parquet",
        "v5.2/validation_benchmark_models.parquet",
        "v5.2/validation_example_preds.csv",
        "v5.2/validation_example_preds.parquet",
    ]
    assert napi.list_datasets(round_num=1000) == napi.list_datasets()


def test_download_every_dataset(napi: numerapi.NumerAPI, sandbox: Sandbox, tmp_path: Path):
    for name in napi.list_datasets():
        dest = napi.download_dataset(name, str(tmp_path / name))
        served = sandbox.backend.dataset_path(CLASSIC, name, None)
        assert Path(dest).read_bytes() == served.read_bytes()
    live = pd.read_parquet(tmp_path / "v5.2/live.parquet")
    assert list(live.index) == sandbox.live_ids()


def test_download_resumes_a_partial_temp_file(
    napi: numerapi.NumerAPI, sandbox: Sandbox, tmp_path: Path
):
    served = sandbox.backend.dataset_path(CLASSIC, "v5.2/train.parquet", None).read_bytes()
    dest = tmp_path / "train.parquet"
    # numerapi resumes from `<dest>.temp` with `Range: bytes=N-`; a server that ignored the
    # range would append the whole file after these bytes.
    Path(f"{dest}.temp").write_bytes(served[:1000])
    napi.download_dataset("v5.2/train.parquet", str(dest))
    assert dest.read_bytes() == served


def test_unknown_dataset_is_an_error(napi: numerapi.NumerAPI, tmp_path: Path):
    with pytest.raises(ValueError, match="does not exist; available"):
        napi.download_dataset("v5.2/nope.parquet", str(tmp_path / "x"))


# --- rounds and models --------------------------------------------------------------------------
def test_current_round_and_round_times(napi: numerapi.NumerAPI, sandbox: Sandbox):
    assert napi.get_current_round() == sandbox.current_round() == 1000
    assert napi.check_round_open() is True
    assert napi.check_new_round() is True
    rounds = napi.list_rounds()
    assert [r["number"] for r in rounds] == [1000]
    assert rounds[0]["openTime"] < rounds[0]["closeStakingTime"] <= rounds[0]["closeTime"]


def test_closed_round_is_still_current_but_not_open(napi: numerapi.NumerAPI, sandbox: Sandbox):
    sandbox.close_round()
    assert napi.get_current_round() == 1000
    assert napi.check_round_open() is False
    assert sandbox.open_round() == 1001
    assert napi.get_current_round() == 1001
    assert napi.check_round_open() is True


def test_get_models(napi: numerapi.NumerAPI, sandbox: Sandbox):
    assert list(sandbox.models) == ["sandbox_model", "sandbox_signals"]  # Classic, Signals
    assert napi.get_models() == {"sandbox_model": sandbox.models["sandbox_model"]}
    assert napi.get_account()["username"] == "sandbox_user"


def test_keys_are_required_and_checked(sandbox: Sandbox, point_numerapi):
    point_numerapi(sandbox)
    with pytest.raises(ValueError, match="API keys required"):
        numerapi.NumerAPI(verbosity="critical").get_models()
    wrong = numerapi.NumerAPI(sandbox.public_id, "wrong-secret", verbosity="critical")
    with pytest.raises(ValueError, match="Your API key is invalid or missing") as caught:
        wrong.get_models()
    assert "wrong-secret" not in str(caught.value)
    response = requests.post(sandbox.url, json={"query": "{ account { id } }"}, timeout=10)
    assert response.status_code == 200
    assert "no Authorization header" in response.json()["errors"][0]["message"]


# --- submitting ---------------------------------------------------------------------------------
def test_upload_predictions_end_to_end(
    napi: numerapi.NumerAPI, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("TRIGGER_ID", "trigger-123")
    model_id = sandbox.models["sandbox_model"]
    path = tmp_path / "predictions.csv"
    _predictions(sandbox.live_ids(), 0.3).to_csv(path, index=False)

    submission_id = napi.upload_predictions(str(path), model_id=model_id)

    listed = napi.submission_ids(model_id)
    assert [s["id"] for s in listed] == [submission_id]
    assert listed[0]["filename"].endswith("/predictions.csv")
    raw = napi.raw_query(SUBMISSIONS_QUERY, {"modelId": model_id}, authorization=True)
    [entry] = raw["data"]["submissions"]
    assert entry["triggerId"] == "trigger-123"
    assert entry["round"] == {"number": 1000, "tournament": CLASSIC}
    [record] = sandbox.submissions("sandbox_model")
    assert record.id == submission_id and record.trigger_id == "trigger-123"
    assert record.row_count == 200 and set(record.ids) == set(sandbox.live_ids())
    assert record.round == 1000 and record.source == "numerapi"


def test_upload_from_dataframe_without_trigger(napi: numerapi.NumerAPI, sandbox: Sandbox):
    model_id = sandbox.models["sandbox_model"]
    napi.upload_predictions(df=_predictions(sandbox.live_ids()), model_id=model_id)
    [record] = sandbox.submissions()
    assert record.trigger_id is None and record.model_name == "sandbox_model"


def test_closed_round_rejects_submissions(napi: numerapi.NumerAPI, sandbox: Sandbox):
    sandbox.close_round()
    with pytest.raises(ValueError, match="round 1000 is closed"):
        napi.upload_predictions(
            df=_predictions(sandbox.live_ids()), model_id=sandbox.models["sandbox_model"]
        )
    assert sandbox.submissions() == []


def test_round_closes_when_its_time_passes(data_root: Path, point_numerapi):
    clock = ManualClock()
    with Sandbox(data_root, clock=clock) as sb:
        point_numerapi(sb)
        api = numerapi.NumerAPI(sb.public_id, sb.secret_key, verbosity="critical")
        clock.advance(pd.Timedelta(days=2).to_pytimedelta())
        with pytest.raises(ValueError, match="is closed"):
            api.upload_predictions(
                df=_predictions(sb.live_ids()), model_id=sb.models["sandbox_model"]
            )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda df: df.iloc[1:], "1 of the 200 live ids of round 1000 have no prediction"),
        (lambda df: df.assign(id=["nffffffffffffff0", *df["id"][1:]]), "1 ids are not live"),
        (lambda df: pd.concat([df, df.iloc[:1]]), "appear more than once"),
        (lambda df: df.assign(prediction=[float("nan"), *df["prediction"][1:]]), "missing or not"),
        (lambda df: df.assign(prediction=[1.5, *df["prediction"][1:]]), r"outside \[0, 1\]"),
        (lambda df: df.assign(prediction=0.5), "constant predictions"),
        (lambda df: df.rename(columns={"prediction": "pred"}), "an id column"),
        (lambda df: df[["prediction", "id"]], "in this order"),
    ],
)
def test_bad_predictions_are_rejected(napi: numerapi.NumerAPI, sandbox: Sandbox, edit, message):
    frame = edit(_predictions(sandbox.live_ids()))
    with pytest.raises(ValueError, match=message):
        napi.upload_predictions(df=frame, model_id=sandbox.models["sandbox_model"])
    assert sandbox.submissions() == []


def test_predictions_for_the_previous_round_are_rejected(napi, sandbox: Sandbox):
    old_ids = sandbox.live_ids()
    sandbox.open_round()
    assert not set(old_ids) & set(sandbox.live_ids())
    with pytest.raises(ValueError, match="200 live ids of round 1001 have no prediction"):
        napi.upload_predictions(df=_predictions(old_ids), model_id=sandbox.models["sandbox_model"])


def test_unknown_model_is_rejected(napi: numerapi.NumerAPI, sandbox: Sandbox):
    with pytest.raises(ValueError, match="does not exist or is not yours"):
        napi.upload_predictions(df=_predictions(sandbox.live_ids()), model_id="not-a-model")


def test_several_models_need_a_model_id(data_root: Path, point_numerapi):
    with Sandbox(data_root, models=("alpha", "beta", "gamma:signals")) as sb:
        point_numerapi(sb)
        api = numerapi.NumerAPI(sb.public_id, sb.secret_key, verbosity="critical")
        assert set(api.get_models()) == {"alpha", "beta"}
        assert set(numerapi.SignalsAPI(sb.public_id, sb.secret_key).get_models()) == {"gamma"}
        with pytest.raises(ValueError, match="modelId is required"):
            api.upload_predictions(df=_predictions(sb.live_ids()))
        api.upload_predictions(df=_predictions(sb.live_ids()), model_id=sb.models["beta"])
        assert [s.model_name for s in sb.submissions()] == ["beta"]


def test_signals_submission(data_root: Path, point_numerapi):
    with Sandbox(data_root, models=("sig:signals",)) as sb:
        point_numerapi(sb)
        api = numerapi.SignalsAPI(sb.public_id, sb.secret_key, verbosity="critical")
        assert "signals/v2.0/live.parquet" in api.list_datasets()
        tickers = [*sb.live_ids(SIGNALS)[:120], "NOT LIVE"]  # Numerai ignores tickers not live
        frame = pd.DataFrame({"numerai_ticker": tickers, "signal": np.linspace(0.1, 0.9, 121)})
        submission_id = api.upload_predictions(df=frame, model_id=sb.models["sig"])
        [record] = sb.submissions("sig")
        assert record.id == submission_id and record.tournament == SIGNALS
        assert record.ids == tuple(tickers)
        with pytest.raises(ValueError, match="only 99 of the 99 tickers are in the live universe"):
            api.upload_predictions(df=frame.iloc[:99], model_id=sb.models["sig"])


# --- faults -------------------------------------------------------------------------------------
def test_reject_uploads_makes_the_put_fail(napi: numerapi.NumerAPI, sandbox: Sandbox):
    sandbox.faults.reject_uploads = True
    model_id = sandbox.models["sandbox_model"]
    auth = napi._upload_auth("submission_upload_auth", "p.csv", CLASSIC, model_id)
    response = requests.put(auth["url"], data=b"id,prediction\n", timeout=10)
    assert response.status_code == 403 and "reject_uploads" in response.text
    # numerapi ignores the PUT status; the create call then says what happened
    with pytest.raises(ValueError, match="never arrived"):
        napi.upload_predictions(df=_predictions(sandbox.live_ids()), model_id=model_id)


def test_graphql_error_fault_fails_every_call_fast(napi: numerapi.NumerAPI, sandbox: Sandbox):
    sandbox.faults.graphql_error = "Numerai is down for maintenance"
    with pytest.raises(ValueError, match="down for maintenance"):
        napi.get_current_round()
    sandbox.faults.graphql_error = None
    assert napi.get_current_round() == 1000


# --- webhooks -----------------------------------------------------------------------------------
def test_set_submission_webhook(napi: numerapi.NumerAPI, sandbox: Sandbox):
    model_id = sandbox.models["sandbox_model"]
    assert napi.set_submission_webhook(model_id, "http://127.0.0.1:9/hook") is True
    assert sandbox.state.webhook(model_id) == "http://127.0.0.1:9/hook"
    assert napi.set_submission_webhook(model_id, None) is True
    assert sandbox.state.webhook(model_id) is None


def test_trigger_model_webhook_records_a_trigger(napi: numerapi.NumerAPI, sandbox: Sandbox):
    model_id = sandbox.models["sandbox_model"]
    napi.set_submission_webhook(model_id, "http://127.0.0.1:9/hook")
    query = "mutation($modelId: String!) { triggerModelWebhook(modelId: $modelId) }"
    first = napi.raw_query(query, {"modelId": model_id}, authorization=True)
    second = napi.raw_query(query, {"modelId": model_id}, authorization=True)
    ids = [r["data"]["triggerModelWebhook"] for r in (first, second)]
    assert ids[0] != ids[1]
    triggers = sandbox.state.triggers_for(model_id)
    assert [t.id for t in triggers] == ids
    assert triggers[0].webhook == "http://127.0.0.1:9/hook" and triggers[0].round == 1000


def test_other_numerapi_reads_validate_against_the_schema(
    napi: numerapi.NumerAPI, sandbox: Sandbox
):
    model_id = sandbox.models["sandbox_model"]
    napi.upload_predictions(df=_predictions(sandbox.live_ids()), model_id=model_id)
    assert napi.modelid_to_modelname(model_id) == "sandbox_model"
    [filename] = napi.get_submission_filenames(model_id=model_id)
    assert filename["round_num"] == 1000 and filename["tournament"] == CLASSIC
    assert [c["number"] for c in napi.get_competitions()] == [1000]
    assert napi.list_rounds(status="open")[0]["number"] == 1000
    assert napi.list_rounds(status="resolved") == []
    assert len(napi.get_account()["models"][0]["submissions"]) == 1
    assert sandbox.state.submissions == sandbox.submissions()
