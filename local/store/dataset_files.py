"""The processed dataset on disk: ``<dir>/tracks/part-*.parquet``, ``dataset.json`` and ``failures.csv``.

One row per usable track (schema :data:`TRACK_SCHEMA`); each track is its own Parquet row group, so a
reader fetches one track's codes without reading any other. Parts are written under a hidden temp name and
renamed when complete: a reader (and a rerun) only ever sees complete parts.
"""
import contextlib
import csv
import glob
import json
import os
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from local.core import fileio
from local.core.config import StageError
from local.store import parquet_cells
from local.store.layout import DatasetDir

TRACK_SCHEMA = pa.schema([
    ("track_id", pa.string()),
    ("genre", pa.string()),
    ("genre_id", pa.int32()),
    ("split", pa.string()),  # train | valid | test
    ("sample_rate", pa.int32()),  # Hz
    ("n_samples", pa.int64()),
    ("codes", pa.binary()),  # uint8 mu-law codes 0..255, one byte per sample
    ("source_path", pa.string()),
    ("source_sha256", pa.string()),  # sha256 of the input file: a changed file is processed again
])
INDEX_COLUMNS = ["track_id", "genre", "genre_id", "split", "n_samples", "source_sha256", "source_path"]
SPLITS = ("train", "valid", "test")


def tracks_dir(dataset_dir):
    return DatasetDir(dataset_dir).tracks


def list_parts(dataset_dir):
    """The complete part files of a dataset, sorted by name (= by time written)."""
    return sorted(glob.glob(os.path.join(tracks_dir(dataset_dir), "part-*.parquet")))


class DamagedFile(StageError):
    """A dataset file that cannot be read (a truncated part, a cut dataset.json); one line naming it and a fix."""


def open_part(part):
    """``pq.ParquetFile(part)``, or DamagedFile naming the part and what to do."""
    try:
        return pq.ParquetFile(part)
    except (pa.ArrowException, OSError) as e:
        raise DamagedFile(f"{part} is damaged ({str(e).splitlines()[0][:120]}): delete it and rerun "
                          f"run_transformation_scripts.py with the same --out_dir to remake its tracks") from None


def read_index(dataset_dir, columns=INDEX_COLUMNS):
    """All rows of the dataset without their codes: a list of dicts, each with ``part`` and ``row_group``.

    Reads only the small columns, so it costs little even for a dataset of many GB. A part that cannot be
    read raises DamagedFile (a ValueError) naming it.
    """
    rows = []
    for part in list_parts(dataset_dir):
        reader = open_part(part)
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=[c for c in columns if c in reader.schema_arrow.names])
            for i, row in enumerate(table.to_pylist()):
                row.update(part=part, row_group=group, row_in_group=i)
                rows.append(row)
    return rows


def read_codes(part, row_group, row_in_group=0):
    """The uint8 codes of one track, read from its row group only; shape (n_samples,).

    The storage layout's own reader; everything outside this module calls :func:`read_track_codes`.
    """
    import numpy as np
    table = pq.ParquetFile(part).read_row_group(row_group, columns=["codes"])
    return np.frombuffer(table.column("codes")[row_in_group].as_py(), dtype=np.uint8)


def read_track_codes(row, start=0, stop=None):
    """The uint8 codes ``start:stop`` of the track of one :func:`read_index` row; shape (stop - start,).

    The one way to read a track's codes: no caller needs to know about parts and row groups.
    """
    return read_codes(row["part"], row["row_group"], row.get("row_in_group", 0))[start:stop]


def read_dataset_json(dataset_dir):
    """The dataset's ``dataset.json`` as a dict, or None when there is none yet."""
    path = DatasetDir(dataset_dir).dataset_json
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except ValueError as e:
        raise DamagedFile(f"{path} is damaged ({str(e).splitlines()[0][:80]}): rerun run_transformation_scripts.py "
                          f"with --out_dir={dataset_dir} (it rewrites it from the tracks)") from None
    if not isinstance(info, dict):
        raise DamagedFile(f"{path} is damaged (not a JSON object): rerun run_transformation_scripts.py "
                          f"with --out_dir={dataset_dir} (it rewrites it from the tracks)")
    return info


BIG_CELL_BYTES = 4 << 20  # a track with more codes than this (4.4 min at 16 kHz) is written by parquet_cells


class PartWriter:
    """Append tracks to Parquet parts, each written under a temp name and renamed into place when complete.

    ``rows_per_part`` bounds how much work a kill can lose; each track is one row group. Use it as a context
    manager: the part in progress is finished when the block ends, and discarded when it ends in an error.
    A track above :data:`BIG_CELL_BYTES` of codes goes to a part of long tracks of its own, written by
    :class:`local.store.parquet_cells.CellParquetWriter` (codes uncompressed, straight from their buffer: pyarrow's
    writer would hold 3 more copies of them, measured; see :mod:`local.store.parquet_cells`); the rest go through
    pyarrow with zstd. Both kinds of part have the same schema and metadata and read alike.
    """

    def __init__(self, dataset_dir, rows_per_part=64, max_part_bytes=256 << 20, metadata=None):
        self.directory = tracks_dir(dataset_dir)
        # key-value metadata of every part (the settings its rows were made with)
        self.schema = TRACK_SCHEMA.with_metadata(metadata) if metadata else TRACK_SCHEMA
        os.makedirs(self.directory, exist_ok=True)
        self.rows_per_part, self.max_part_bytes = rows_per_part, max_part_bytes
        self.open_parts = {}  # "small" / "big" -> [writer, ExitStack of its atomic_path, rows, codes bytes]

    def _open(self, kind):
        stamp = time.strftime("%Y%m%dT%H%M%S")
        final_path = os.path.join(self.directory, f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet")
        part = contextlib.ExitStack()
        path = part.enter_context(fileio.atomic_path(final_path))
        if kind == "big":
            writer = parquet_cells.CellParquetWriter(path, self.schema)
        else:
            small = [name for name in self.schema.names if name != "codes"]
            # no dictionary and no min/max statistics for the codes: each would hold another copy of a track
            writer = pq.ParquetWriter(path, self.schema, compression="zstd", use_dictionary=small,
                                      write_statistics=small)
        self.open_parts[kind] = [writer, part, 0, 0]
        return self.open_parts[kind]

    def write(self, row):
        """Write one track (a dict with the :data:`TRACK_SCHEMA` columns) as its own row group."""
        kind = "big" if len(row["codes"]) > BIG_CELL_BYTES else "small"
        entry = self.open_parts.get(kind) or self._open(kind)
        if kind == "big":
            entry[0].write_row(row)
        else:
            entry[0].write_table(one_row_table(row, self.schema))
        entry[2] += 1
        entry[3] += len(row["codes"])
        if entry[2] >= self.rows_per_part or entry[3] >= self.max_part_bytes:
            self._finish(kind)

    def _finish(self, kind):
        writer, part, _, _ = self.open_parts.pop(kind)
        writer.close()
        part.close()  # atomic_path: sync, rename

    def close(self):
        """Finish the parts in progress and rename them into place (a no-op when none is open)."""
        for kind in list(self.open_parts):
            self._finish(kind)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is None:
            self.close()
            return
        for writer, part, _, _ in self.open_parts.values():  # a part in progress is not trusted: its temp goes
            if isinstance(writer, pq.ParquetWriter):
                writer.close()
            else:
                writer.discard()
            part.__exit__(kind, error, trace)
        self.open_parts = {}


def remove_stale_temps(dataset_dir):
    """Delete the temps (parts, dataset.json, failures.csv) a killed run left; no reader ever saw them."""
    fileio.remove_stale_temps(dataset_dir)
    fileio.remove_stale_temps(tracks_dir(dataset_dir))
def one_row_table(row, schema):
    """A one-row Table of ``row``; the ``codes`` column wraps the row's bytes without copying them (a 2-hour
    track's codes are ~115 MB at 16 kHz: one copy fewer held while its row group is written)."""
    import numpy as np
    columns = []
    for field in schema:
        if field.name == "codes":
            codes = row["codes"]
            offsets = pa.py_buffer(np.array([0, len(codes)], dtype=np.int32))
            columns.append(pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(codes)]))
        else:
            columns.append(pa.array([row[field.name]], type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def binary_cells(column):
    """The cells of a binary (chunked) array as memoryviews of its own buffer, without copying them."""
    import numpy as np
    for chunk in getattr(column, "chunks", [column]):
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
        data = memoryview(chunk.buffers()[2] or b"")
        for start, end in zip(offsets[:-1], offsets[1:]):
            yield data[start:end]


def drop_tracks(dataset_dir, track_ids):
    """Rewrite (atomically, part by part) every part holding one of ``track_ids`` without those rows."""
    track_ids = set(track_ids)

    def drop(table):
        return table.filter(pa.array([tid not in track_ids for tid in table.column("track_id").to_pylist()]))
    rewrite_parts(dataset_dir, track_ids, drop, remove_whole=True)


def set_splits(dataset_dir, splits):
    """Give the tracks of ``splits`` ({track_id: "train" | "valid" | "test"}) that split, rewriting (atomically,
    part by part) only the parts that hold one of them; every other column stays as it was."""
    def resplit(table):
        column = [splits.get(tid, old) for tid, old in zip(table.column("track_id").to_pylist(),
                                                               table.column("split").to_pylist())]
        return table.set_column(table.schema.get_field_index("split"), "split",
                                pa.array(column, type=table.schema.field("split").type))
    rewrite_parts(dataset_dir, set(splits), resplit)


def rewrite_parts(dataset_dir, track_ids, edit, remove_whole=False):
    """Rewrite every part holding one of ``track_ids``, each row group through ``edit(table) -> table`` (an
    empty result drops the group); a part all of whose rows are in ``track_ids`` is deleted when
    ``remove_whole``. Atomic per part; a part keeps its metadata and its kind (pyarrow or long-track cells)."""
    for part in list_parts(dataset_dir):
        ids = pq.read_table(part, columns=["track_id"]).column("track_id").to_pylist()
        if not track_ids.intersection(ids):
            continue
        if remove_whole and track_ids.issuperset(ids):
            os.remove(part)
        else:
            reader = pq.ParquetFile(part)
            metadata = reader.schema_arrow.metadata  # the part keeps the settings its rows were made with
            schema = TRACK_SCHEMA.with_metadata(metadata) if metadata else TRACK_SCHEMA
            cells = parquet_cells.wrote(reader.metadata)  # a part of long tracks stays one: pyarrow would copy them
            with fileio.atomic_path(part) as tmp, (parquet_cells.CellParquetWriter(tmp, schema) if cells else
                                                   pq.ParquetWriter(tmp, schema, compression="zstd")) as writer:
                for group in range(reader.num_row_groups):
                    kept = edit(reader.read_row_group(group))
                    if not kept.num_rows:
                        continue
                    kept = kept.cast(schema)
                    if cells:
                        for row, codes in zip(kept.drop_columns(["codes"]).to_pylist(), binary_cells(kept["codes"])):
                            writer.write_row(dict(row, codes=codes))
                    else:
                        writer.write_table(kept)
        checksum = os.path.join(os.path.dirname(part), f".{os.path.basename(part)}.crc")
        if os.path.exists(checksum):  # Hadoop's checksum of the old bytes (a part Spark wrote) is now wrong
            os.remove(checksum)


def summarize(index, sample_rate, quantization_channels, genres, extra=None):
    """The ``dataset.json`` dict: settings, genres (index = genre_id) and track/sample counts per split/genre."""
    counts = {"tracks": {s: 0 for s in SPLITS}, "samples": {s: 0 for s in SPLITS}}
    per_genre = {g: {"tracks": {s: 0 for s in SPLITS}, "samples": {s: 0 for s in SPLITS}} for g in genres}
    for row in index:
        for target in (counts, per_genre.setdefault(row["genre"], {"tracks": {s: 0 for s in SPLITS},
                                                                     "samples": {s: 0 for s in SPLITS}})):
            target["tracks"][row["split"]] += 1
            target["samples"][row["split"]] += int(row["n_samples"])
    summary = {"sample_rate": int(sample_rate), "quantization_channels": int(quantization_channels),
               "genres": list(genres), "n_tracks": len(index),
               "n_samples": sum(int(r["n_samples"]) for r in index), **counts, "per_genre": per_genre}
    summary.update(extra or {})
    return summary


def write_failures(dataset_dir, failures):
    """Write ``failures.csv`` (columns path, reason) atomically; ``failures`` is a list of (path, reason)."""
    path = DatasetDir(dataset_dir).failures_csv
    with fileio.atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows(sorted(failures))
    return path


def write_dataset_files(dataset_dir, dataset, failures):
    """Write the end of a stage-2 run: ``dataset.json`` (the dict ``dataset``) and ``failures.csv``.

    Returns their paths. The Spark job writes them into a local folder and publishes them from there.
    """
    return (fileio.write_json_atomic(DatasetDir(dataset_dir).dataset_json, dataset),
            write_failures(dataset_dir, failures))
