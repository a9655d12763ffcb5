"""The data cache: static files per data version, live files per round, shared by every node."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from flows import files
from flows.download import CorruptFile, check_file
from flows.numerai import NumeraiClient

# How long a node waits for another node that is downloading the same file.
DEFAULT_LOCK_TIMEOUT = 1800.0


def dataset_path(
    data_dir: Path, data_version: str, filename: str, round_number: int | None
) -> Path:
    """Where a dataset file lives in the cache.

    Live data changes every round while keeping its name, and numerapi skips a download when a
    file of the same size exists, so live files get a directory per round.
    """
    name = Path(filename).name
    if is_per_round(filename):
        if round_number is None:
            raise ValueError(f"'{filename}' changes every round; pass the round number")
        return data_dir / data_version / "rounds" / str(round_number) / name
    return data_dir / data_version / name


def is_per_round(filename: str) -> bool:
    """Live data and the live universe change every round."""
    return "live" in Path(filename).name


def fetch(
    client: NumeraiClient,
    data_dir: Path,
    data_version: str,
    filename: str,
    round_number: int | None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> tuple[Path, bool]:
    """Return (path, was_cached), downloading `data_version/filename` if the cache lacks it.

    Safe when many nodes ask at once: one downloads (under the file's lock) while the others
    wait, then find it whole. A cached file that does not parse is discarded and fetched again.
    A per-round file found in the cache is compared with what Numerai serves now (a restarted
    local Numerai can serve other data for the same round), unless another node put it there
    while this one waited for the lock: that node has just fetched it, so nobody asks again.
    """
    dest = dataset_path(data_dir, data_version, filename, round_number)
    per_round = is_per_round(filename)
    if not per_round and _whole(dest):
        return dest, True
    remote = filename if "/" in filename else f"{data_version}/{filename}"
    served_round = round_number if per_round else None
    before = _identity(dest)
    with files.locked(dest, lock_timeout):
        files.remove_leftovers(dest)
        fresh = _whole(dest) and (
            not per_round
            or _identity(dest) != before
            or client.served_size(remote, served_round) == dest.stat().st_size
        )
        if fresh:
            return dest, True
        client.download(remote, dest, served_round)
    return dest, False


def discard(path: Path) -> None:
    """Remove a cached file that failed to read, so the next attempt fetches it again."""
    path.unlink(missing_ok=True)


@contextlib.contextmanager
def reading(path: Path) -> Iterator[Path]:
    """Read a cached file in the block; if it turns out damaged, discard it and raise CorruptFile
    (transient: the task's retry fetches it again). Never fatal for the node."""
    try:
        yield path
    except (pa.ArrowInvalid, pa.ArrowIOError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        discard(path)
        raise CorruptFile(
            f"The cached {path.name} was damaged ({type(exc).__name__}); it was discarded and "
            "the retry downloads it again."
        ) from None


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """Which file is at `path` (device, inode, size, mtime); None when there is none. A file
    renamed into place is another file: its identity differs from the one it replaced."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def _whole(path: Path) -> bool:
    """Whether a cached file is there and whole. Only its footer is read: the file was read in
    full before it was renamed into place, and `reading` catches damage found later."""
    if not path.exists():
        return False
    try:
        check_file(path, full=False)
    except CorruptFile:
        discard(path)
        return False
    return True


def predictions_path(data_dir: Path, data_version: str, round_number: int, node: str) -> Path:
    """Where a node's predictions for a round are written before upload."""
    return data_dir / data_version / "rounds" / str(round_number) / "predictions" / f"{node}.csv"
