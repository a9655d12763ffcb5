"""CSV copies of the data a command model reads, for programs that cannot read parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from flows import cache, files
from flows.errors import ConfigurationError
from flows.settings import load_settings

_KEPT = ("id", "era")  # beside the feature set's columns and the spec's target


def csv_copy(parquet_path: Path, features_path: Path, feature_set: str, target: str) -> Path:
    """The CSV beside `parquet_path` with only id, era, the feature set and `target` (the
    columns the parquet has of these); written once per data file, atomically, under its lock,
    a row group at a time. A newer parquet (downloaded again) is copied again."""
    dest = parquet_path.with_name(f"{parquet_path.stem}.{feature_set}.{target}.csv")
    with files.locked(dest, timeout=load_settings().lock_timeout_seconds):
        if dest.is_file() and dest.stat().st_mtime_ns >= parquet_path.stat().st_mtime_ns:
            return dest
        with cache.reading(features_path):
            feature_sets = json.loads(features_path.read_text())["feature_sets"]
        if feature_set not in feature_sets:
            raise ConfigurationError(
                f"Feature set '{feature_set}' is not in {features_path.name} "
                f"(it has {', '.join(sorted(feature_sets))})."
            )
        with cache.reading(parquet_path):
            source = pq.ParquetFile(parquet_path)
            present = set(source.schema_arrow.names)
            wanted = [*_KEPT, *feature_sets[feature_set], target]
            columns = [name for name in dict.fromkeys(wanted) if name in present]
            with files.atomic_path(dest) as tmp:
                kept = pa.schema([source.schema_arrow.field(name) for name in columns])
                with pa_csv.CSVWriter(tmp, kept) as writer:
                    for batch in source.iter_batches(columns=columns):
                        writer.write_batch(batch.select(columns))
    return dest
