"""Fetch one file over HTTP into the cache: resumable, every response checked, validated whole.

numerapi's own download appends a resumed response without looking at its status (an error
page became part of a parquet file) and shares one `.temp` name between concurrent nodes. This
one is only called under the file's lock (flows.cache), keeps its partial file beside the
destination so a retry resumes it, appends only a 206 that starts where the part ends, and moves
the file into place only once its size matches and it parses.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import DatasetNotFound, NodeError, NumeraiUnavailable
from flows.files import PART_SUFFIX

# Files up to this size are read whole to validate them (live data); larger ones by their footer.
FULL_CHECK_BYTES = 64 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@functools.cache
def http() -> httpx.Client:
    """The process's HTTP client for Numerai's file storage (downloads and uploads).

    One client holds one TLS context and one connection pool for every transfer of a run; each
    bare `httpx.get`/`httpx.put` builds both anew, and the TLS context alone (loading the CA
    bundle) costs more CPU than a small live file's transfer. A forked child drops its parent's.
    """
    return httpx.Client()


os.register_at_fork(after_in_child=http.cache_clear)


class _StartOver(NumeraiUnavailable):
    """The part file cannot be resumed: the retry downloads the file from its start."""


class CorruptFile(NodeError, ValueError):
    """A file that does not parse (a cut or garbled download, or a damaged cache entry)."""

    transient = True


def part_path(dest: Path) -> Path:
    """Where the download of `dest` accumulates until it is whole."""
    return dest.with_name(dest.name + PART_SUFFIX)


def check_file(path: Path, *, full: bool | None = None, kind: str | None = None) -> None:
    """Raise CorruptFile unless `path` parses as its kind says (JSON, parquet); else a no-op.

    Parquet files are checked by their footer (which a cut file lacks) and, when `full` (by
    default: small files, such as live data), by reading every column.
    """
    kind = kind or path.suffix
    try:
        if kind == ".json":
            json.loads(path.read_bytes())
        elif kind == ".parquet":
            whole = path.stat().st_size <= FULL_CHECK_BYTES if full is None else full
            parquet = pq.ParquetFile(path)
            if whole:
                parquet.read()
    except (ValueError, pa.ArrowException, OSError) as exc:  # JSON, Arrow and IO parse errors
        raise CorruptFile(f"{path.name} is damaged ({type(exc).__name__}: {exc})"[:300]) from None


def fetch(
    url: str,
    dest: Path,
    *,
    timeout: httpx.Timeout,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> int:
    """Download `url` to `dest` (resuming its part file), check it, and rename it into place.

    Returns the file's size. A short or failed transfer keeps the part for the next attempt and
    raises NumeraiUnavailable (transient); a complete file that does not parse is deleted and
    raises CorruptFile (transient: the retry downloads it again).
    """
    part = part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with http().stream(
            "GET", url, headers=headers, timeout=timeout, follow_redirects=True
        ) as response:
            try:
                total, offset = _accept(response, offset, dest.name)
            except _StartOver:
                part.unlink(missing_ok=True)
                raise
            with part.open("ab" if offset else "wb") as out:
                written = offset
                for chunk in response.iter_bytes():  # as received: a cut keeps every byte
                    out.write(chunk)
                    written += len(chunk)
                    if on_progress is not None:
                        on_progress(written, total)
    except httpx.HTTPError as exc:
        raise NumeraiUnavailable(
            f"Downloading {dest.name} failed ({type(exc).__name__}) after "
            f"{part.stat().st_size if part.exists() else 0} bytes; a retry resumes where it "
            "stopped."
        ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise NumeraiUnavailable(
            f"The download of {dest.name} stopped at {size} of {total} bytes; a retry "
            "resumes where it stopped."
        )
    try:
        check_file(part, full=size <= FULL_CHECK_BYTES, kind=dest.suffix)
    except CorruptFile:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return size


def served_size(url: str, *, timeout: httpx.Timeout) -> int | None:
    """The size the server announces for `url` (it reads the headers, not the body)."""
    try:
        with http().stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                return None
            length = response.headers.get("content-length")
            return int(length) if length else None
    except httpx.HTTPError as exc:
        raise NumeraiUnavailable(
            f"Numerai's file storage did not answer ({type(exc).__name__})."
        ) from None


def _accept(response: httpx.Response, offset: int, name: str) -> tuple[int | None, int]:
    """(total size, offset to append at) of an answer, or the error it stands for."""
    status = response.status_code
    if offset and status == 206:
        found = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
        if found and int(found.group(1)) == offset:
            total = found.group(3)
            return (int(total) if total != "*" else None), offset
        # A range we did not ask for: start again rather than stitch the wrong bytes.
        raise _StartOver(
            f"Resuming {name} got an unexpected range "
            f"({response.headers.get('content-range')!r}); a retry starts from the beginning."
        )
    if status == 200:
        length = response.headers.get("content-length")
        return (int(length) if length else None), 0
    if status == 416:
        # The part is as long as (or longer than) the file: it cannot be resumed.
        raise _StartOver(
            f"{name}'s partial download does not fit the file any more; the retry starts over."
        )
    if status == 404:
        raise DatasetNotFound(f"Numerai's file storage has no {name} (HTTP 404).")
    raise NumeraiUnavailable(
        f"Numerai's file storage answered HTTP {status} for {name} (nothing of that "
        "answer is kept)."
    )
