"""The model store: trained models and their records, shared by training runs and round-day nodes.

A model is stored under its key (everything that shapes it: spec, data version, code digest,
library versions; see flows/training.py) beside a record of what it is: its spec family,
features, size, validation scores and when it was trained. The record is written after the
model, so a record always names a whole model.

Where it lives:
- locally, files under `<home>/models/<Numerai API>/` (atomic writes, a lock per key while
  training: two nodes of one spec on one machine train it once);
- on a cloud pool, the pool's result storage block (S3, GCS or Azure Blob: the pools set
  PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK), under `models/`, so a fresh container finds the model
  a training run wrote elsewhere.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from prefect.results import resolve_result_storage
from pydantic import BaseModel, Field

from flows import files
from flows.errors import ConfigurationError
from flows.report import EraScores
from flows.settings import load_settings, source_label

# The environment variable naming the pools' result storage block, e.g. `s3-bucket/results`.
STORAGE_BLOCK_ENV = "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"
_RECORDS = "records"
_SUFFIX = ".json"


class ModelRecord(BaseModel):
    """What one stored model is: enough to list it, choose it, and predict with it."""

    key: str = Field(description="The model's key: the same spec, code and data, the same key.")
    family: str = Field(description="The spec's name; a node falls back to its family's newest.")
    tournament: int
    model: str = Field(description="The model module.")
    params: dict[str, Any]
    data_version: str
    feature_set: str
    target: str
    features: list[str] = Field(repr=False)
    code: str = Field(description="Digest of the model module and the project code it imports.")
    libraries: dict[str, str] = Field(default_factory=dict)
    trained_at: datetime
    trained_by: str = Field(description="The flow run that trained it.")
    size_bytes: int
    validation: EraScores | None = Field(None, repr=False)
    artifact: Literal["pickle", "directory"] = Field(
        "pickle",
        description="A pickled Python model, or a command model's directory (stored as a tar).",
    )

    @property
    def validation_corr(self) -> float | None:
        return None if self.validation is None else self.validation.mean


class _Storage(Protocol):
    where: str

    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes) -> None: ...
    def names(self, folder: str) -> list[str]: ...


class _LocalStorage:
    """Files under a directory, written atomically."""

    def __init__(self, root: Path):
        self.root = root
        self.where = str(root)

    def read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        files.write_bytes(self.root / path, data)

    def names(self, folder: str) -> list[str]:
        directory = self.root / folder
        return sorted(p.name for p in directory.glob("*") if not p.name.startswith("."))


class _BlockStorage:
    """A Prefect storage block (S3Bucket, GcsBucket, AzureBlobStorageContainer) under the folder
    `models/`."""

    def __init__(self, block: Any, slug: str):
        self.block = block
        self.where = slug

    def read(self, path: str) -> bytes | None:
        try:
            return self.block.read_path(f"models/{path}")
        except Exception as exc:  # each block has its own "not found"
            if _not_found(exc):
                return None
            raise

    def write(self, path: str, data: bytes) -> None:
        self.block.write_path(f"models/{path}", data)

    def names(self, folder: str) -> list[str]:
        if hasattr(self.block, "list_objects"):  # S3Bucket
            keys = [item["Key"] for item in self.block.list_objects(f"models/{folder}")]
        elif hasattr(self.block, "container_name"):  # AzureBlobStorageContainer
            # It lists the whole container, by full name (its base folder included).
            base = (self.block.base_folder or "").strip("/")
            prefix = "/".join(part for part in (base, "models", folder) if part) + "/"
            keys = [name for name in self.block.list_blobs() if name.startswith(prefix)]
        elif hasattr(self.block, "list_blobs"):  # GcsBucket
            keys = [blob.name for blob in self.block.list_blobs(f"models/{folder}")]
        else:
            raise ConfigurationError(
                f"The storage block {self.where} cannot list its files, so the model store "
                "cannot find its models there. Use an S3, GCS or Azure Blob Storage block."
            )
        return sorted(PurePosixPath(key).name for key in keys)


def _not_found(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(mark in text for mark in ("NoSuchKey", "NotFound", "404", "does not exist"))


class ModelStore:
    """Trained models and their records, in one storage."""

    def __init__(
        self, storage: _Storage, lock_dir: Path | None = None, unpack_dir: Path | None = None
    ):
        self._storage = storage
        self._lock_dir = lock_dir
        # Where directory models are unpacked to be read (one copy per key and machine).
        self._unpack_dir = unpack_dir or Path(tempfile.gettempdir()) / "numerai-nodes-models"

    @property
    def where(self) -> str:
        return self._storage.where

    def record(self, key: str) -> ModelRecord | None:
        """The record of the model stored under `key`, if there is one."""
        data = self._storage.read(f"{_RECORDS}/{key}{_SUFFIX}")
        return None if data is None else ModelRecord.model_validate_json(data)

    def records(self) -> list[ModelRecord]:
        """Every stored model's record, newest first."""
        found = []
        for name in self._storage.names(_RECORDS):
            if name.endswith(_SUFFIX) and (record := self.record(name[: -len(_SUFFIX)])):
                found.append(record)
        return sorted(found, key=lambda record: record.trained_at, reverse=True)

    def newest_of(self, family: str, tournament: int) -> ModelRecord | None:
        """The family's newest model: the last good one when its own is not trained yet."""
        for record in self.records():
            if record.family == family and record.tournament == tournament:
                return record
        return None

    def load(self, record: ModelRecord) -> Any:
        """The model a record names; a directory model's is the path of its unpacked copy."""
        if record.artifact == "directory" and (self._unpack_dir / record.key).is_dir():
            return self._unpack_dir / record.key
        data = self._storage.read(_file_of(record))
        if data is None:
            raise ConfigurationError(
                f"The model store at {self.where} lists the model {record.key} of "
                f"{record.family} but holds no model file for it; train it again "
                f"(`numerai-nodes train {record.family} --force`)."
            )
        if record.artifact == "directory":
            return self._unpacked(record.key, data)
        return pickle.loads(data)

    def save(self, record: ModelRecord, model: Any, data: bytes | None = None) -> ModelRecord:
        """Store `model`, then its record (so a record always names a whole model). A directory
        model (a Path) is stored as a tar, and the directory moves to its unpacked copy."""
        if data is None:
            data = pack(model) if record.artifact == "directory" else pickle.dumps(model)
        self._storage.write(_file_of(record), data)
        if record.artifact == "directory":
            self._keep(Path(model), self._unpack_dir / record.key)
        return self.save_record(record)

    def _unpacked(self, key: str, data: bytes) -> Path:
        self._unpack_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._unpack_dir / f".{key}-{uuid.uuid4().hex[:8]}"
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.extractall(tmp, filter="data")  # no paths out of the directory
        self._keep(tmp, self._unpack_dir / key)
        return self._unpack_dir / key

    @staticmethod
    def _keep(directory: Path, dest: Path) -> None:
        """Move `directory` to `dest`, unless another run put a copy there first."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.rename(dest)
        except OSError:  # dest exists already (another run's copy), or another file system
            if not dest.is_dir():
                shutil.copytree(directory, dest, dirs_exist_ok=True)
            shutil.rmtree(directory, ignore_errors=True)

    def save_record(self, record: ModelRecord) -> ModelRecord:
        """Write a stored model's record (again: e.g. with its validation scores added)."""
        self._storage.write(f"{_RECORDS}/{record.key}{_SUFFIX}", record.model_dump_json().encode())
        return record

    @contextlib.contextmanager
    def training(self, key: str, timeout: float) -> Iterator[None]:
        """Hold the key's training lock (locally): a second run of the same spec waits, then
        finds the model stored. Cloud storage has no lock: there the training deployment's
        concurrency limit of 1 keeps a spec's trainings apart."""
        if self._lock_dir is None:
            yield
            return
        with files.locked(self._lock_dir / key, timeout):
            yield


def pack(directory: Path) -> bytes:
    """A directory model as one file: a gzipped tar of its contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=".")
    return buffer.getvalue()


def _file_of(record: ModelRecord) -> str:
    return f"{record.key}.tar.gz" if record.artifact == "directory" else f"{record.key}.pkl"


def model_store() -> ModelStore:
    """The store of this process: the pool's result storage block if it has one, else files."""
    slug = os.environ.get(STORAGE_BLOCK_ENV)
    settings = load_settings()
    unpack_dir = settings.home / "models" / "unpacked"
    if slug:
        block = resolve_result_storage(slug)
        return ModelStore(_BlockStorage(block, slug), unpack_dir=unpack_dir)
    root = settings.home / "models" / source_label(settings.api_url)
    return ModelStore(_LocalStorage(root), lock_dir=root / "locks", unpack_dir=unpack_dir)
