"""numerapi's documented calls, as a participant makes them, answered by the sandbox as Numerai
answers them: the return types numerapi documents, and Numerai's rules behind them."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from pathlib import Path

import numerapi
import numpy as np
import pandas as pd
import pytest

from flows.tournaments import CLASSIC, SIGNALS
from sandbox.performance import SCORE_DAYS
from sandbox.runner import Sandbox
from sandbox.state import ManualClock
from tests.thirdparty.conftest import ranked

NUMERAI_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")  # no microseconds, a `Z`


# --- data ---------------------------------------------------------------------------------------
def test_list_datasets_lists_what_numerai_lists_per_version(napi: numerapi.NumerAPI):
    names = napi.list_datasets()
    assert names == sorted(names)
    version = {name.split("/")[0] for name in names}
    assert version == {"v5.2"}
    files = {name.split("/", 1)[1] for name in names}
    assert files == {
        "features.json",
        "train.parquet",
        "validation.parquet",
        "live.parquet",
        "train_benchmark_models.parquet",
        "validation_benchmark_models.parquet",
        "live_benchmark_models.parquet",
        "validation_example_preds.parquet",
        "validation_example_preds.csv",
        "live_example_preds.parquet",
        "live_example_preds.csv",
        "meta_model.parquet",
    }


def test_every_listed_file_downloads_and_reads(napi: numerapi.NumerAPI, tmp_path: Path):
    for name in napi.list_datasets():
        path = Path(napi.download_dataset(name, str(tmp_path / name)))
        if name.endswith(".parquet"):
            assert len(pd.read_parquet(path)) > 0, name
        elif name.endswith(".csv"):
            assert list(pd.read_csv(path).columns) == ["id", "prediction"], name
        else:
            assert set(pd.read_json(path, typ="series").index) == {"feature_sets", "targets"}


def test_live_files_of_a_past_round_stay_downloadable(
    napi: numerapi.NumerAPI, sandbox: Sandbox, tmp_path: Path
):
    first = sandbox.live_ids()
    sandbox.open_round()
    old = napi.download_dataset("v5.2/live.parquet", str(tmp_path / "old.parquet"), round_num=1000)
    new = napi.download_dataset("v5.2/live.parquet", str(tmp_path / "new.parquet"))
    assert list(pd.read_parquet(old).index) == first
    assert list(pd.read_parquet(new).index) == sandbox.live_ids() != first


def test_signals_lists_its_data_and_examples(sapi: numerapi.SignalsAPI, tmp_path: Path):
    names = sapi.list_datasets()
    assert "signals/v2.0/live.parquet" in names
    assert "signals/v2.0/live_example_preds.parquet" in names
    path = sapi.download_dataset("signals/v2.0/live_example_preds.parquet", str(tmp_path / "e"))
    assert list(pd.read_parquet(path).columns) == ["numerai_ticker", "signal"]


# --- rounds, account, models --------------------------------------------------------------------
def test_rounds(napi: numerapi.NumerAPI, sandbox: Sandbox):
    assert napi.get_current_round() == sandbox.current_round()
    assert napi.check_round_open() is True
    [current] = napi.list_rounds()
    assert isinstance(current["openTime"], dt.datetime) and current["openTime"].tzinfo
    assert current["openTime"].microsecond == 0
    [competition] = napi.get_competitions()
    assert competition["number"] == sandbox.current_round()


def test_get_account(napi: numerapi.NumerAPI, sandbox: Sandbox):
    account = napi.get_account()
    assert account["username"] == sandbox.state.username
    assert isinstance(account["insertedAt"], dt.datetime)
    assert isinstance(account["availableNmr"], decimal.Decimal)
    assert {m["name"] for m in account["models"]} == set(sandbox.models)
    assert account["apiTokens"][0]["public_id"] == sandbox.public_id


def test_get_models_per_tournament(napi, sapi, sandbox: Sandbox):
    assert napi.get_models() == {"sandbox_model": sandbox.models["sandbox_model"]}
    assert sapi.get_models() == {"sandbox_signals": sandbox.models["sandbox_signals"]}
    assert napi.get_models(SIGNALS) == sapi.get_models()
    assert napi.modelid_to_modelname(sandbox.models["sandbox_model"]) == "sandbox_model"


def test_the_public_profiles(napi: numerapi.NumerAPI, sandbox: Sandbox):
    username = sandbox.state.username
    assert napi.models_of_account(username) == {"sandbox_model": sandbox.models["sandbox_model"]}
    profile = napi.public_user_profile("sandbox_model")
    assert profile["id"] == sandbox.models["sandbox_model"]
    assert isinstance(profile["startDate"], dt.datetime) and profile["nmrStaked"] is None
    assert napi.stake_get("sandbox_model") is None
    with pytest.raises(ValueError, match="no account named"):
        napi.models_of_account("somebody_else")


# --- submitting ---------------------------------------------------------------------------------
def test_upload_and_list_submissions(napi: numerapi.NumerAPI, sandbox: Sandbox, tmp_path: Path):
    model_id = sandbox.models["sandbox_model"]
    path = tmp_path / "predictions.csv"
    ranked(sandbox.live_ids()).to_csv(path, index=False)
    submission_id = napi.upload_predictions(str(path), model_id=model_id)
    [listed] = napi.submission_ids(model_id)
    assert listed["id"] == submission_id
    # numerapi leaves this list's times as Numerai sends them (its `replace` skips lists)
    assert NUMERAI_TIME.match(listed["insertedAt"])
    [filename] = napi.get_submission_filenames(model_id=model_id)
    assert filename["round_num"] == sandbox.current_round() and filename["tournament"] == CLASSIC


def test_a_resubmission_replaces_the_first(napi: numerapi.NumerAPI, sandbox: Sandbox):
    model_id = sandbox.models["sandbox_model"]
    napi.upload_predictions(df=ranked(sandbox.live_ids()), model_id=model_id)
    napi.upload_predictions(df=ranked(sandbox.live_ids()[::-1]), model_id=model_id)
    assert len(napi.submission_ids(model_id)) == 2
    assert len(napi.get_submission_filenames(model_id=model_id)) == 2


def test_signals_upload(sapi: numerapi.SignalsAPI, sandbox: Sandbox):
    tickers = sandbox.live_ids(SIGNALS)
    frame = pd.DataFrame({"numerai_ticker": tickers, "signal": np.linspace(0, 1, len(tickers))})
    submission_id = sapi.upload_predictions(df=frame, model_id=sandbox.models["sandbox_signals"])
    [record] = sandbox.submissions("sandbox_signals")
    assert record.id == submission_id and record.tournament == SIGNALS


def test_set_submission_webhook(napi: numerapi.NumerAPI, sandbox: Sandbox):
    model_id = sandbox.models["sandbox_model"]
    assert napi.set_submission_webhook(model_id, "http://127.0.0.1:9/hook") is True
    assert napi.set_submission_webhook(model_id, None) is True


# --- round performances -------------------------------------------------------------------------
@pytest.fixture
def scored(data_root: Path, point_numerapi):
    """A sandbox on a hand-moved clock where sandbox_model submitted to round 1000, which then
    closed (round 1001 opened)."""
    clock = ManualClock()
    with Sandbox(data_root, clock=clock) as sb:
        point_numerapi(sb)
        api = numerapi.NumerAPI(sb.public_id, sb.secret_key, verbosity="warning")
        model_id = sb.models["sandbox_model"]
        api.upload_predictions(df=ranked(sb.live_ids()), model_id=model_id)
        sb.open_round()
        yield api, model_id, clock


def _performances(api: numerapi.NumerAPI, model_id: str) -> list[dict]:
    with pytest.warns(DeprecationWarning, match="round_model_performances_v2"):
        return api.round_model_performances_v2(model_id)


def test_a_round_has_no_scores_until_it_has_closed_a_day(scored):
    api, model_id, _ = scored
    [performance] = _performances(api, model_id)
    assert performance["roundNumber"] == 1000 and performance["submissionScores"] == []
    assert performance["roundResolved"] is False


def test_a_closed_round_is_scored_daily_until_it_resolves(scored):
    api, model_id, clock = scored
    clock.advance(dt.timedelta(days=3, hours=1))
    [performance] = _performances(api, model_id)
    latest = {s["displayName"]: s for s in performance["submissionScores"]}
    assert set(latest) == {"v2_corr20", "mmc", "bmc"}
    assert {s["day"] for s in latest.values()} == {3}
    assert isinstance(latest["v2_corr20"]["date"], dt.datetime)
    assert all(-1 <= s["value"] <= 1 and 0 <= s["percentile"] <= 1 for s in latest.values())
    assert {m["displayName"] for m in performance["payoutMultipliers"]} == {"v2_corr20", "mmc"}
    assert isinstance(performance["atRisk"], decimal.Decimal)
    [intra] = api.intra_round_scores(model_id)
    assert len(intra["intraRoundSubmissionScores"]) == 3 * 3
    assert api.submission_scores(model_id, resolved=True) == []

    clock.advance(dt.timedelta(days=40))
    [performance] = _performances(api, model_id)
    assert performance["roundResolved"] is True
    assert {s["day"] for s in performance["submissionScores"]} == {SCORE_DAYS}
    scores = api.submission_scores(model_id, display_name="v2_corr20")
    assert [s["day"] for s in scores] == list(range(1, SCORE_DAYS + 1))
    assert scores[-1]["value"] == next(
        s["value"] for s in performance["submissionScores"] if s["displayName"] == "v2_corr20"
    )
    final = api.submission_scores(model_id, distinct_on_round=True, resolved=True)
    assert {(s["roundNumber"], s["day"]) for s in final} == {(1000, SCORE_DAYS)}
    assert len(final) == 3


def test_the_deprecated_name_lookup_still_answers(scored):
    api, _model_id, _ = scored
    with pytest.warns(DeprecationWarning):
        [by_name] = api.round_model_performances("sandbox_model")
    assert by_name["roundNumber"] == 1000
