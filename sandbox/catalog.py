"""Dataset catalogues: what files a tournament serves per round, and its live ids."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import pyarrow.parquet as pq

from sandbox.errors import SandboxConfigError


@runtime_checkable
class DatasetCatalog(Protocol):
    """The files of one tournament. Names are numerapi's (`v5.2/live.parquet`)."""

    @property
    def version(self) -> str:
        """The data version served now (the newest, when several are): `v5.2`."""
        ...

    def files(self, round_number: int) -> list[str]:
        """Dataset names listed for a round."""
        ...

    def path(self, filename: str, round_number: int) -> Path | None:
        """Local file behind a name for a round (generated if needed); None if unknown."""
        ...

    def live_ids(self, round_number: int) -> list[str]:
        """Ids a submission for the round must cover (Classic ids, Signals tickers)."""
        ...

    def prepare(self, round_number: int) -> None:
        """Make the round's files ready, before the round opens."""
        ...


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a version name by its numbers: v5.9 < v5.10, signals/v1.0 < signals/v2.0."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def newest_version(versions: Iterable[str]) -> str | None:
    """The newest of some version names, compared as versions (not as text); None if none."""
    return max(versions, key=lambda v: (version_key(v), v), default=None)


def read_ids(path: Path) -> list[str]:
    """The `id` column (or pandas index column) of a parquet file, in file order."""
    schema = pq.read_schema(path)
    column = "id"
    if column not in schema.names:
        meta = schema.pandas_metadata or {}
        index_columns = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
        if not index_columns:
            raise SandboxConfigError(f"{path.name} has no `id` column")
        column = index_columns[0]
    return [str(v) for v in pq.read_table(path, columns=[column]).column(column).to_pylist()]


class DirectoryCatalog:
    """Serves a directory of real Numerai files (`<dir>/v5.2/live.parquet`, ...) as they are."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        if not self.data_dir.is_dir():
            raise SandboxConfigError(f"--data-dir {data_dir} is not a directory")
        self._live_ids: list[str] | None = None

    def files(self, round_number: int) -> list[str]:
        return sorted(
            p.relative_to(self.data_dir).as_posix()
            for p in self.data_dir.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.parts)
        )

    def path(self, filename: str, round_number: int) -> Path | None:
        if filename not in self.files(round_number):
            return None
        return self.data_dir / filename

    @property
    def version(self) -> str:
        """The newest version directory with a live.parquet (v5.10 is newer than v5.9)."""
        versions = [p.parent.name for p in self.data_dir.glob("*/live.parquet")]
        newest = newest_version(versions)
        if newest is None:
            if (self.data_dir / "live.parquet").is_file():
                return ""  # files at the top level: no version prefix
            raise SandboxConfigError(f"no live.parquet under {self.data_dir}")
        return newest

    def live_file(self) -> Path:
        """The newest version's live.parquet."""
        return self.data_dir / self.version / "live.parquet"

    def live_ids(self, round_number: int) -> list[str]:
        if self._live_ids is None:
            self._live_ids = read_ids(self.live_file())
        return list(self._live_ids)

    def prepare(self, round_number: int) -> None:
        """Real files do not change between rounds."""
