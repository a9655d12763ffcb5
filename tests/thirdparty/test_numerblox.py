"""numerblox's downloader and submitter, unmodified, against the sandbox."""

from __future__ import annotations

from pathlib import Path

import numerapi
import pandas as pd
import pytest
from numerblox.download import NumeraiClassicDownloader, NumeraiSignalsDownloader
from numerblox.misc import Key
from numerblox.submission import NumeraiClassicSubmitter, NumeraiSignalsSubmitter

from flows.tournaments import SIGNALS
from sandbox.runner import Sandbox

VERSION = "5.2"  # what the sandbox serves, without numerblox's `v`


@pytest.fixture
def downloader(sandbox: Sandbox, point_numerapi, tmp_path: Path) -> NumeraiClassicDownloader:
    point_numerapi(sandbox)
    return NumeraiClassicDownloader(str(tmp_path / "data"), verbosity="warning")


def test_the_downloader_sees_the_served_version(downloader: NumeraiClassicDownloader):
    assert downloader.dataset_versions == {f"v{VERSION}"}


def test_training_and_live_data(downloader: NumeraiClassicDownloader, sandbox: Sandbox):
    downloader.download_training_data("train", version=VERSION)
    downloader.download_live_data("live", version=VERSION)
    train = pd.read_parquet(downloader.dir / "train" / "train.parquet")
    validation = pd.read_parquet(downloader.dir / "train" / "validation.parquet")
    assert {"era", "target"} <= set(train.columns) and len(validation) > 0
    live = pd.read_parquet(downloader.dir / "live" / "live.parquet")
    assert list(live.index) == sandbox.live_ids()


def test_example_predictions(downloader: NumeraiClassicDownloader, sandbox: Sandbox):
    downloader.download_example_data("examples", version=VERSION)
    live = pd.read_parquet(downloader.dir / "examples" / "live_example_preds.parquet")
    validation = pd.read_parquet(downloader.dir / "examples" / "validation_example_preds.parquet")
    assert list(live.index) == sandbox.live_ids() and list(live.columns) == ["prediction"]
    assert live["prediction"].between(0, 1).all() and len(validation) > 0


def test_meta_model_and_features(downloader: NumeraiClassicDownloader):
    meta = downloader.download_meta_model_preds("meta", filename=f"v{VERSION}/meta_model.parquet")
    assert "numerai_meta_model" in meta.columns and meta["numerai_meta_model"].between(0, 1).all()
    features = downloader.get_classic_features("meta", filename=f"v{VERSION}/features.json")
    assert set(features["feature_sets"]) >= {"small", "medium", "all"}


def test_an_unserved_version_is_refused_before_any_download(downloader):
    with pytest.raises(AssertionError, match="not available"):
        downloader.download_live_data(version="4.3")


def test_the_submitter_uploads_example_predictions(
    downloader: NumeraiClassicDownloader, sandbox: Sandbox, tmp_path: Path
):
    downloader.download_example_data("examples", version=VERSION)
    predictions = pd.read_parquet(downloader.dir / "examples" / "live_example_preds.parquet")
    submitter = NumeraiClassicSubmitter(
        str(tmp_path / "submissions"), key=Key(sandbox.public_id, sandbox.secret_key), sleep_time=0
    )
    submitter(
        predictions.rename(columns={"prediction": "prediction_mine"}),
        "sandbox_model",
        cols="prediction_mine",
    )
    [record] = sandbox.submissions("sandbox_model")
    assert set(record.ids) == set(sandbox.live_ids())


def test_the_submitter_gives_up_on_refused_predictions(sandbox: Sandbox, point_numerapi, tmp_path):
    point_numerapi(sandbox)
    submitter = NumeraiClassicSubmitter(
        str(tmp_path), key=Key(sandbox.public_id, sandbox.secret_key), max_retries=1, sleep_time=0
    )
    stale = pd.DataFrame({"prediction": [0.2, 0.8]}, index=pd.Index(["n1", "n2"], name="id"))
    with pytest.raises(ValueError, match="have no prediction"):
        submitter(stale, "sandbox_model")
    assert sandbox.submissions() == []


def test_signals_download_and_submit(sandbox: Sandbox, point_numerapi, tmp_path: Path):
    point_numerapi(sandbox)
    signals = NumeraiSignalsDownloader(str(tmp_path / "signals"), verbosity="warning")
    assert signals.dataset_versions == {"v2.0"}
    signals.download_live_data("live", version="2.0")
    signals.download_example_data("examples", version="2.0")
    live = pd.read_parquet(signals.dir / "live" / "live.parquet")
    assert set(live["numerai_ticker"]) == set(sandbox.live_ids(SIGNALS))
    example = pd.read_parquet(signals.dir / "examples" / "live_example_preds.parquet")
    submitter = NumeraiSignalsSubmitter(
        str(tmp_path / "out"), key=Key(sandbox.public_id, sandbox.secret_key), sleep_time=0
    )
    submitter(example, "sandbox_signals", cols=["numerai_ticker", "signal"])
    [record] = sandbox.submissions("sandbox_signals")
    assert record.row_count == len(example)
    assert (
        numerapi.SignalsAPI(sandbox.public_id, sandbox.secret_key).submission_ids(
            sandbox.models["sandbox_signals"]
        )[0]["id"]
        == record.id
    )
