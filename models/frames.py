"""Memory-frugal readers: Numerai parquet files a row group at a time as int8, rows for LightGBM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Numerai features are 0..4; a missing value is read as the middle bin so it carries no signal.
MISSING_FEATURE = 2


def feature_chunks(path: str | Path, features: list[str]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, int8 block) for each row group of the file, in order.

    One row group is decoded at a time (arrow's batch reader buffers far more than that).
    """
    parquet = pq.ParquetFile(path)
    start = 0
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=features)
        block = np.empty((table.num_rows, len(features)), dtype=np.int8, order="F")
        for j, name in enumerate(features):
            block[:, j] = _int8_column(table.column(name))
        del table
        yield start, block
        start += len(block)


def _int8_column(column: pa.ChunkedArray) -> np.ndarray:
    """One feature column as int8, nulls (and float NaNs) read as MISSING_FEATURE."""
    if column.null_count:
        column = pc.fill_null(column, pa.scalar(MISSING_FEATURE, column.type))
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        values = np.nan_to_num(values, nan=MISSING_FEATURE)
    return values.astype(np.int8, copy=False)


def read_feature_matrix(path: str | Path, features: list[str]) -> np.ndarray:
    """Read `features` into one preallocated int8 matrix: 1x the int8 bytes plus one row group.

    Training never needs the whole matrix (see ParquetRows); this is for small files and tests.
    """
    rows = pq.ParquetFile(path).metadata.num_rows
    matrix = np.empty((rows, len(features)), dtype=np.int8, order="F")
    for start, block in feature_chunks(path, features):
        matrix[start : start + len(block)] = block
    return matrix


def read_columns(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """Read a few small columns (ids, eras, targets) with the row index as `id`."""
    frame = pd.read_parquet(path, columns=columns)
    if frame.index.name != "id" and "id" in frame.columns:
        frame = frame.set_index("id")
    return frame


def read_target(path: str | Path, target: str) -> np.ndarray:
    """One target column as float32, without the `id` index (ids cost more than targets)."""
    return pq.read_table(path, columns=[target]).column(0).to_numpy().astype(np.float32)


def read_ids(path: str | Path) -> pd.Index:
    """The `id` index of a Numerai file, in file order."""
    schema = pq.read_schema(path)
    column = "id" if "id" in schema.names else schema.pandas_metadata["index_columns"][0]
    ids = pq.read_table(path, columns=[column]).column(column).to_pylist()
    return pd.Index(ids, name="id")


def streamed_dataset(
    path: str | Path,
    features: list[str],
    label: np.ndarray,
    params: dict,
    rows: np.ndarray | None = None,
) -> lgb.Dataset:
    """A constructed LightGBM Dataset of a file's `rows`, never holding the whole matrix twice.

    The bins come from a sample of `bin_construct_sample_cnt` rows (a small Dataset of its
    own), then every row streams from the file into LightGBM's binned copy (ParquetRows).
    LightGBM's own sampling of a Sequence holds its float64 sample through the whole binning.
    """
    source = ParquetRows(path, features, rows)
    sample = source.sample(int(params.get("bin_construct_sample_cnt", 200_000)))
    reference = lgb.Dataset(sample.astype(np.float32), feature_name=features, params=params)
    reference.construct()
    del sample
    dataset = lgb.Dataset(
        source, label=label, feature_name=features, params=params, reference=reference
    )
    return dataset.construct()


class ParquetRows(lgb.Sequence):
    """Rows of a Numerai file's features for LightGBM's Dataset, streamed from the parquet file.

    LightGBM reads a Sequence in row order: contiguous slices to bin every row (served as
    float32) and, when it samples a Sequence itself, single rows (as float64). Reads go forward
    a row group at a time (a step back starts a new pass), so neither the int8 matrix nor its
    float copy ever exists whole. `rows` (ascending file row numbers) picks the rows served,
    e.g. those with a target; `sample` picks bin-sample rows in one pass of its own.
    """

    def __init__(
        self,
        path: str | Path,
        features: list[str],
        rows: np.ndarray | None = None,
        batch_size: int = 4096,
    ):
        self.path, self.features = Path(path), list(features)
        total = pq.ParquetFile(path).metadata.num_rows
        self.rows = np.arange(total) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) > 1 and (np.diff(self.rows) <= 0).any():
            raise ValueError("ParquetRows needs its rows in ascending file order, without repeats")
        self.batch_size = batch_size
        self._restart()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise IndexError("ParquetRows serves contiguous slices only")
            return np.ascontiguousarray(self._take(start, stop), dtype=np.float32)
        position = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= position < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} rows")
        return self._take(position, position + 1)[0].astype(np.float64)

    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        """`count` served rows picked at random (in file order) as an int8 matrix, in one pass."""
        count = min(count, len(self))
        picked = np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False))
        sample = np.empty((count, len(self.features)), dtype=np.int8)
        self._restart()
        done = 0
        while done < count:
            self._advance()
            upto = int(np.searchsorted(picked, self._first + len(self._block)))
            sample[done:upto] = self._block[picked[done:upto] - self._first]
            done = upto
        self._restart()
        return sample

    def _take(self, start: int, stop: int) -> np.ndarray:
        """Served rows start..stop as int8, read forward (a step back starts a new pass)."""
        if start < self._first:
            self._restart()
        pieces = []
        while start < stop:
            while start >= self._first + len(self._block):
                self._advance()
            end = min(stop, self._first + len(self._block))
            pieces.append(self._block[start - self._first : end - self._first])
            start = end
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _restart(self) -> None:
        self._chunks = feature_chunks(self.path, self.features)
        self._first, self._block = 0, np.empty((0, len(self.features)), dtype=np.int8)

    def _advance(self) -> None:
        """Decode the next row group and keep only its served rows."""
        try:
            file_start, block = next(self._chunks)
        except StopIteration:
            raise IndexError(f"{self.path} has fewer rows than ParquetRows was told") from None
        first = int(np.searchsorted(self.rows, file_start))
        last = int(np.searchsorted(self.rows, file_start + len(block)))
        if last - first < len(block):
            block = block[self.rows[first:last] - file_start]
        self._first, self._block = first, block
