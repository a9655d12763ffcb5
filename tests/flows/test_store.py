"""The model store on local files and on an S3 bucket (moto's server, through prefect-aws's
S3Bucket block, as a cloud pool's result storage): missing, saved, listed, newest of a family."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from flows.store import ModelRecord, ModelStore, _BlockStorage, _LocalStorage
from tests.integration.ecs_runner import moto_aws

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def _record(key: str, family: str, hours: int, tournament: int = 8) -> ModelRecord:
    return ModelRecord(
        key=key,
        family=family,
        tournament=tournament,
        model="models.tournament",
        params={"n_estimators": 10},
        data_version="v5.2",
        feature_set="small",
        target="target",
        features=["feature_a", "feature_b"],
        code="c0de",
        trained_at=T0 + timedelta(hours=hours),
        trained_by="train-small-r1",
        size_bytes=0,
    )


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[None]:
    """One moto server for the module: prefect-aws caches its boto3 clients, endpoint included."""
    with moto_aws(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(params=["files", "s3"])
def store(request, tmp_path: Path) -> Iterator[ModelStore]:
    if request.param == "files":
        yield ModelStore(_LocalStorage(tmp_path / "models"), lock_dir=tmp_path / "locks")
        return
    from prefect_aws import S3Bucket

    request.getfixturevalue("s3")
    bucket = f"results-{tmp_path.name.replace('_', '-').lower()}"[:63]
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield ModelStore(_BlockStorage(S3Bucket(bucket_name=bucket), f"s3-bucket/{bucket}"))


def test_a_missing_model_is_none_and_a_saved_one_is_found_listed_and_loaded(store):
    check_saving_listing_and_loading(store)


def test_a_record_is_written_after_its_model(store):
    check_a_rewritten_record_keeps_its_model(store)


# What every storage of the store must do (tests/integration/test_store_gcs.py runs them too).


def check_saving_listing_and_loading(store: ModelStore) -> None:
    assert store.record("model-missing") is None
    assert store.records() == []

    store.save(_record("model-old", "small", hours=0), {"trees": 1})
    store.save(_record("model-new", "small", hours=5), {"trees": 2})
    store.save(_record("model-other", "medium", hours=9), {"trees": 3})
    store.save(_record("model-signals", "small", hours=12, tournament=11), {"trees": 4})

    found = store.record("model-new")
    assert found is not None and found.features == ["feature_a", "feature_b"]
    assert [r.key for r in store.records()] == [
        "model-signals", "model-other", "model-new", "model-old"
    ]  # fmt: skip
    newest = store.newest_of("small", 8)
    assert newest is not None and newest.key == "model-new"  # its family and tournament only
    assert store.load(newest) == {"trees": 2}
    assert store.newest_of("large", 8) is None


def check_a_rewritten_record_keeps_its_model(store: ModelStore) -> None:
    """A record always names a whole model; rewriting it (scores added) keeps the model."""
    record = _record("model-a", "small", hours=0)
    store.save(record, {"trees": 1})
    store.save_record(record.model_copy(update={"size_bytes": 42}))
    again = store.record("model-a")
    assert again is not None and again.size_bytes == 42
    assert store.load(again) == {"trees": 1}
