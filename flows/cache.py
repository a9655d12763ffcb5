"""The data cache: static files per data version, live files per round."""

from __future__ import annotations

from pathlib import Path

from flows.numerai import NumeraiClient


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
) -> tuple[Path, bool]:
    """Return (path, was_cached), downloading `data_version/filename` if it is not cached yet.

    A per-round file is always checked against Numerai: numerapi re-downloads it when the
    served size differs (a restarted local Numerai can serve other data for the same round).
    """
    dest = dataset_path(data_dir, data_version, filename, round_number)
    per_round = is_per_round(filename)
    if dest.exists() and not per_round:
        return dest, True
    before = dest.stat().st_mtime_ns if dest.exists() else None
    remote = filename if "/" in filename else f"{data_version}/{filename}"
    client.download(remote, dest, round_number if per_round else None)
    return dest, before is not None and dest.stat().st_mtime_ns == before


def predictions_path(data_dir: Path, data_version: str, round_number: int, node: str) -> Path:
    """Where a node's predictions for a round are written before upload."""
    return data_dir / data_version / "rounds" / str(round_number) / "predictions" / f"{node}.csv"
