"""A node racing others for one cached file: run in a fresh process by the shared-cache tests.

It imports only what a node's download step needs, so each racing process starts fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flows import cache
from flows.errors import NodeError
from flows.numerai import NumeraiClient


def race(
    url: str,
    cache_dir: str,
    filename: str,
    start: Any,
    results: Any,
    round_number: int | None = None,
) -> None:
    """Wait for the start, fetch `filename`, read it whole, report (was_cached, size); a node
    error is reported as (its class name, its message)."""
    client = NumeraiClient(url)
    start.wait()
    try:
        path, cached = cache.fetch(client, Path(cache_dir), "v5.2", filename, round_number)
    except NodeError as exc:
        results.put((type(exc).__name__, str(exc)))
        return
    if path.suffix == ".json":
        json.loads(path.read_text())
    else:
        pq.read_table(path)  # the whole file reads: never a cut or doubled copy
    results.put((cached, path.stat().st_size))


def hold(url: str, cache_dir: str, filename: str, round_number: int) -> None:
    """Fetch `filename` from a slow sandbox; the test kills this process while it holds the lock."""
    cache.fetch(NumeraiClient(url), Path(cache_dir), "v5.2", filename, round_number)
