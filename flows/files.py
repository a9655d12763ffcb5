"""Files that concurrent nodes share: written whole or not at all, and fetched under a lock.

Many nodes on one machine (or on shared storage) read the same data cache, price cache and
predictions folder. A file there is only ever replaced by an atomic rename of a complete,
checked temporary file, so a reader sees the old file or the new one, never half of either.
A writer that may race another takes the file's lock (a `filelock` lock file beside it); the
operating system releases it if the holder dies, so a crash never wedges the others.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from flows.errors import NodeError

LOCK_SUFFIX = ".lock"
PART_SUFFIX = ".part"
_TMP_MARK = ".tmp-"
# A temporary file this old was left by a writer that died: nobody will finish it.
STALE_SECONDS = 6 * 3600


class CacheBusy(NodeError, TimeoutError):
    """Another node held a shared file's lock for longer than this node would wait."""

    transient = True


def lock_path(path: Path) -> Path:
    """The lock file that guards `path`."""
    return path.with_name(path.name + LOCK_SUFFIX)


@contextlib.contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold `path`'s lock for the block; a CacheBusy after `timeout` seconds (-1: no limit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise CacheBusy(
            f"Another run has held {path.name} for over {timeout:.0f} s (its lock is "
            f"{lock_path(path)}). If no other run is working on it, its process hangs: "
            "stop it."
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A unique temporary path beside `dest`; renamed onto `dest` when the block succeeds.

    On any failure the temporary file is removed and `dest` is left as it was.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(dest: Path, data: bytes) -> None:
    """Replace `dest` with `data`, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: Path, text: str) -> None:
    """Replace `dest` with `text`, atomically."""
    write_bytes(dest, text.encode())


def remove_leftovers(dest: Path, older_than: float = STALE_SECONDS) -> int:
    """Remove the temporary files of writers of `dest` that died; returns how many."""
    removed = 0
    cutoff = time.time() - older_than
    for leftover in dest.parent.glob(f".{dest.name}{_TMP_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed += 1
    return removed
