"""Long files in bounded memory (issue 12): the parts local/store/parquet_cells.py writes read as pyarrow's do (pyarrow
and Spark alike), and a stage-2 run that streams its files and writes their codes that way gives the dataset a
run decoding them whole gives. The memory itself is measured in bench/bench_preprocessing.py --rss_only=true.
"""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_audio

from local.audio import decoding
from local.dataset import build, settings
from local.store import dataset_files as store
from local.store import parquet_cells


def sample_rows():
    rng = np.random.default_rng(5)
    codes = [rng.integers(0, 256, n, dtype=np.uint8) for n in (0, 1, 70_000, 300)]
    return [{"track_id": f"t{i}-é", "genre": ["Rock", "Jazz"][i % 2], "genre_id": i % 2, "split": "train",
             "sample_rate": 16000, "n_samples": 2 ** 40 + len(c), "codes": bytearray(c.tobytes()),
             "source_path": f"raw/ü/{i}.mp3", "source_sha256": "ab" * 32} for i, c in enumerate(codes)]


def test_cell_writer_files_read_back_as_pyarrow_written_ones(tmp_path):
    schema = store.TRACK_SCHEMA.with_metadata(settings.part_metadata(decoding.DecodeSettings()))
    rows = sample_rows()
    with parquet_cells.CellParquetWriter(str(tmp_path / "cells.parquet"), schema) as writer:
        for row in rows:
            writer.write_row(row)
    with pq.ParquetWriter(str(tmp_path / "arrow.parquet"), schema) as writer:
        for row in rows:
            writer.write_table(store.one_row_table(row, schema))
    cells, arrow = pq.read_table(tmp_path / "cells.parquet"), pq.read_table(tmp_path / "arrow.parquet")
    assert cells.schema.equals(arrow.schema, check_metadata=True)
    assert cells.equals(arrow)
    reader = pq.ParquetFile(tmp_path / "cells.parquet")
    assert reader.num_row_groups == len(rows)  # one track per row group, as the dataset's readers expect
    assert reader.read_row_group(2, columns=["codes"]).column(0)[0].as_py() == bytes(rows[2]["codes"])


def test_long_tracks_go_to_parts_of_their_own_and_read_as_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "BIG_CELL_BYTES", 1000)
    rows = sample_rows()
    with store.PartWriter(str(tmp_path), rows_per_part=64) as writer:
        for row in rows:
            writer.write(row)
    parts = store.list_parts(str(tmp_path))
    writers = sorted(pq.ParquetFile(p).metadata.created_by.split()[0] for p in parts)
    assert writers == ["parquet-cpp-arrow", "waveforms"]
    index = {r["track_id"]: r for r in store.read_index(str(tmp_path))}
    for row in rows:
        assert store.read_track_codes(index[row["track_id"]]).tobytes() == bytes(row["codes"])
        assert index[row["track_id"]]["n_samples"] == row["n_samples"]


def test_a_failed_write_leaves_no_part_of_long_tracks(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "BIG_CELL_BYTES", 1000)
    rows = sample_rows()
    with pytest.raises(KeyError):
        with store.PartWriter(str(tmp_path)) as writer:
            writer.write(rows[2])
            writer.write({k: v for k, v in rows[1].items() if k != "genre"})
    assert os.listdir(store.tracks_dir(str(tmp_path))) == []


def test_spark_reads_the_cell_writers_parts(tmp_path, spark):
    schema = store.TRACK_SCHEMA.with_metadata(settings.part_metadata(decoding.DecodeSettings()))
    rows = sample_rows()
    os.makedirs(tmp_path / "tracks")
    with parquet_cells.CellParquetWriter(str(tmp_path / "tracks" / "part-0.parquet"), schema) as writer:
        for row in rows:
            writer.write_row(row)
    read = {r.track_id: r for r in spark.read.parquet(str(tmp_path / "tracks")).collect()}
    assert sorted(read) == sorted(r["track_id"] for r in rows)
    for row in rows:
        got = read[row["track_id"]]
        assert bytes(got.codes) == bytes(row["codes"])
        assert (got.genre_id, got.n_samples, got.source_path) == (row["genre_id"], row["n_samples"],
                                                                 row["source_path"])


def dataset_codes(out_dir):
    return {r["track_id"]: store.read_track_codes(r).tobytes() for r in store.read_index(out_dir)}


def test_streamed_stage_gives_the_dataset_of_whole_decoding(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for k, genre in enumerate(["Rock", "Rock", "Jazz"]):
        os.makedirs(raw / genre, exist_ok=True)
        make_audio(str(raw / genre / f"long{k}.mp3"), seconds=6.0 + k, freq_hz=220.0 * (k + 1), seed=k)
    make_audio(str(raw / "Jazz" / "short.mp3"), seconds=1.5, freq_hz=660.0)  # ~24 kB
    keys = dict(workers=1, progress=False, sample_rate=8000)
    whole = build.preprocess(str(raw), str(tmp_path / "whole"), **keys)
    monkeypatch.setattr(decoding, "STREAM_ABOVE_BYTES", 30_000)  # the long ones (~100 kB) stream
    monkeypatch.setattr(store, "BIG_CELL_BYTES", 20_000)  # their codes (~50 kB) go through parquet_cells
    streamed = build.preprocess(str(raw), str(tmp_path / "streamed"), **keys)
    assert streamed["processed"] == whole["processed"] == 4
    assert streamed["dataset"] == whole["dataset"]
    codes = dataset_codes(str(tmp_path / "streamed"))
    assert codes == dataset_codes(str(tmp_path / "whole"))
    assert sorted(len(c) > 20_000 for c in codes.values()) == [False, True, True, True]
    parts = store.list_parts(str(tmp_path / "streamed"))
    assert {pq.ParquetFile(p).metadata.created_by.split()[0] for p in parts} == {"parquet-cpp-arrow", "waveforms"}
    assert {pq.ParquetFile(p).schema_arrow.metadata[settings.SETTINGS_METADATA_KEY] for p in parts} == \
        {settings.part_metadata(settings.stage_settings(sample_rate=8000)[0])[
            settings.SETTINGS_METADATA_KEY]}
    again = build.preprocess(str(raw), str(tmp_path / "streamed"), **keys)  # a rerun: all done already
    assert (again["processed"], again["skipped"]) == (0, 4)
    # a long file changes: its old row leaves the part of long tracks, which stays one (drop_tracks)
    make_audio(str(raw / "Rock" / "long0.mp3"), seconds=6.5, freq_hz=300.0, seed=9)
    changed = build.preprocess(str(raw), str(tmp_path / "streamed"), **keys)
    monkeypatch.undo()
    whole = build.preprocess(str(raw), str(tmp_path / "whole"), **keys)
    assert (changed["processed"], changed["skipped"]) == (whole["processed"], whole["skipped"]) == (1, 3)
    codes = dataset_codes(str(tmp_path / "streamed"))
    assert codes == dataset_codes(str(tmp_path / "whole")) and len(codes) == 4
    for row in store.read_index(str(tmp_path / "streamed")):
        wrote_cells = parquet_cells.wrote(pq.ParquetFile(row["part"]).metadata)
        assert wrote_cells == (row["track_id"] != "short"), row


def test_cell_writer_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(TypeError, match="not double"):
        parquet_cells.CellParquetWriter(str(tmp_path / "x.parquet"), pa.schema([("x", pa.float64())]))
    assert not os.path.exists(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="no nulls"):
        with parquet_cells.CellParquetWriter(str(tmp_path / "y.parquet"), store.TRACK_SCHEMA) as writer:
            writer.write_row(dict(sample_rows()[1], genre=None))
