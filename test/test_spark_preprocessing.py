"""aws/spark_preprocessing: on a real local[2] Spark, the dataset equals the local stage's, byte for byte."""
import csv
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from helpers import FIXTURE_OGG, make_audio, make_broken_files, run_script

from local.audio import decoding
from local.core import locks
from local.dataset import build
from local.dataset import settings as dataset_settings
from local.store import dataset_files, manifest

SETTINGS = dict(sample_rate=16000, quantization_channels=256, trim_silence=True, silence_threshold=60.0,
                min_seconds=0.5, valid_fraction=0.2, test_fraction=0.2, split_seed=3)


def make_raw(raw):
    """Two genres, varied formats/rates/channels, a duplicated file name, an HTML page and a too-short file."""
    for g, genre in enumerate(("Rock", "Jazz")):
        for i, ext in enumerate(("mp3", "flac", "ogg")):
            make_audio(str(raw / genre / f"{genre.lower()}{i}.{ext}"), seconds=1.2, freq_hz=200 + 90 * g + 40 * i,
                       channels=1 + i % 2, sample_rate=(22050, 44100, 48000)[i])
    make_audio(str(raw / "Rock" / "same.mp3"), seconds=1.0, freq_hz=300)
    make_audio(str(raw / "Jazz" / "same.mp3"), seconds=1.0, freq_hz=500)
    (raw / "Jazz" / "page.mp3").write_bytes(b"<!DOCTYPE html><html>not found</html>")
    make_audio(str(raw / "Rock" / "blip.wav"), seconds=0.2)


def rows(out_dir):
    return {r["track_id"]: r for r in pq.read_table(os.path.join(out_dir, "tracks")).to_pylist()}


def failures(out_dir):
    with open(os.path.join(out_dir, "failures.csv"), newline="") as f:
        return sorted((os.path.basename(r["path"]), r["reason"]) for r in csv.DictReader(f))


def test_spark_dataset_equals_the_local_stage_byte_for_byte(spark, tmp_path):
    from aws.spark_dataset import preprocess_spark
    raw = tmp_path / "raw"
    make_raw(raw)
    local_out, spark_out = str(tmp_path / "local"), str(tmp_path / "spark")
    local = build.preprocess(str(raw), local_out, workers=1, progress=False, **SETTINGS)
    result = preprocess_spark(spark, str(raw), spark_out, partitions=3, **SETTINGS)

    expected, got = rows(local_out), rows(spark_out)
    assert len(expected) == 8 and "Rock__same" in expected and "Jazz__same" in expected
    assert sorted(got) == sorted(expected)
    for track_id, row in expected.items():
        assert got[track_id] == row, track_id  # codes, split, genre_id, source_path, sha256: all equal
    for genre in ("Rock", "Jazz"):  # the same stratified splits: every genre of 3+ tracks has valid and test
        assert {r["split"] for r in got.values() if r["genre"] == genre} == {"train", "valid", "test"}, genre
    assert dataset_files.read_dataset_json(spark_out) == dataset_files.read_dataset_json(local_out)
    assert failures(spark_out) == failures(local_out) and len(failures(spark_out)) == 2
    assert result["processed"] == local["processed"] == 8 and len(result["failed"]) == 2
    # the local layout: complete parts only, each track its own row group
    parts = dataset_files.list_parts(spark_out)
    assert parts and all(pq.ParquetFile(p).num_row_groups == pq.ParquetFile(p).metadata.num_rows for p in parts)
    assert pq.read_schema(parts[0]).remove_metadata().equals(dataset_files.TRACK_SCHEMA)


def test_uris_manifest_rerun_and_changed_file(spark, tmp_path):
    """file:// URIs go through Hadoop's FileSystem (the hdfs:// and s3:// path); a manifest names the tracks."""
    from aws.spark_dataset import preprocess_spark
    raw = tmp_path / "raw"
    for i, genre in enumerate(("Folk", "Folk", "Pop", "Pop")):
        make_audio(str(raw / genre / f"t{i}.mp3"), seconds=1.0, freq_hz=250 + 60 * i)
    with open(raw / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["track_id", "genre", "title", "artist", "source", "path", "bytes", "sha256", "split"])
        for i, genre in enumerate(("Folk", "Folk", "Pop", "Pop")):
            writer.writerow([f"id{i}", genre, "", "", "", f"{genre}/t{i}.mp3", "", "", "training" if i < 2 else ""])
        writer.writerow(["gone", "Pop", "", "", "", "Pop/gone.mp3", "", "", ""])
    out = tmp_path / "out"
    out_uri, raw_uri = f"file://{out}", f"file://{raw}"

    first = preprocess_spark(spark, raw_uri, out_uri, **SETTINGS)
    local = build.preprocess(str(raw), str(tmp_path / "local"), workers=1, progress=False, **SETTINGS)
    got, expected = rows(str(out)), rows(str(tmp_path / "local"))
    assert sorted(got) == ["id0", "id1", "id2", "id3"] == sorted(expected)
    for track_id in got:
        assert got[track_id]["codes"] == expected[track_id]["codes"]
        assert {k: got[track_id][k] for k in ("split", "genre_id", "source_sha256")} == \
               {k: expected[track_id][k] for k in ("split", "genre_id", "source_sha256")}
        assert got[track_id]["source_path"].startswith("file://")
    assert got["id0"]["split"] == "train" and first["failed"] == [(f"{raw_uri}/Pop/gone.mp3",
                                                                   decoding.MISSING_REASON)]
    assert failures(str(out)) == failures(str(tmp_path / "local"))
    assert json.load(open(out / "dataset.json"))["tracks"] == local["dataset"]["tracks"]
    # no temp or .crc files left beside them; the lock file stays, as the local stage's does (local/core/locks.py)
    assert [n for n in os.listdir(out) if n.startswith(".")] == [locks.LOCK_NAME]

    parts_before = dataset_files.list_parts(str(out))
    again = preprocess_spark(spark, raw_uri, out_uri, **SETTINGS)
    assert again["skipped"] == 4 and again["processed"] == 0 and dataset_files.list_parts(str(out)) == parts_before

    make_audio(str(raw / "Pop" / "t3.mp3"), seconds=1.3, freq_hz=900)  # id3's file changes
    changed = preprocess_spark(spark, raw_uri, out_uri, **SETTINGS)
    after = rows(str(out))
    assert changed["processed"] == 1 and changed["skipped"] == 3 and sorted(after) == sorted(got)
    assert after["id3"]["codes"] != got["id3"]["codes"] and after["id2"] == got["id2"]
    fresh, _ = decoding.decode_track(str(raw / "Pop" / "t3.mp3"), dataset_settings.stage_settings(**SETTINGS)[0])
    assert after["id3"]["codes"] == fresh["codes"]
    assert not [n for n in os.listdir(out / "tracks") if n.startswith("_rewrite")]


def test_script_help_and_bad_config_answer_without_spark(tmp_path):
    result = run_script("aws/spark_preprocessing.py", "--help", timeout=60)
    assert result.returncode == 0 and "--partitions" in result.stdout and "--master" in result.stdout
    bad = run_script("aws/spark_preprocessing.py", "--partitions=many", f"--out_dir={tmp_path / 'o'}", timeout=60)
    assert bad.returncode == 2 and "partitions" in bad.stderr and "valid keys" in bad.stderr
    missing = run_script("aws/spark_preprocessing.py", f"--raw_dir={tmp_path / 'nope'}", timeout=60)
    assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "o").exists()


def test_the_job_runs_in_process_on_the_active_session_and_writes_its_config(spark, tmp_path, capsys):
    from aws import spark_preprocessing
    raw, out = tmp_path / "raw", tmp_path / "out"
    for i in range(2):
        make_audio(str(raw / "Folk" / f"f{i}.mp3"), seconds=1.0, freq_hz=300 + 100 * i)
    spark_preprocessing.main([f"--raw_dir={raw}", f"--out_dir={out}", "--min_seconds=0.5"])
    assert json.load(open(out / "config.json"))["min_seconds"] == 0.5
    assert sorted(rows(str(out))) == ["f0", "f1"]
    assert not spark.sparkContext._jsc.sc().isStopped()  # a borrowed session is left running
    printed = capsys.readouterr().out
    assert "2 tracks processed, 0 already done, 0 failed" in printed and f"dataset: {out}  2 tracks" in printed
    with pytest.raises(SystemExit) as stop:  # the same out_dir with another sample rate: one line, exit 2
        spark_preprocessing.main([f"--raw_dir={raw}", f"--out_dir={out}", "--sample_rate=8000"])
    assert stop.value.code == 2 and "sample_rate=16000" in capsys.readouterr().err


def test_a_local_rerun_on_a_spark_dataset_keeps_it_readable_by_spark(spark, tmp_path):
    """Spark leaves Hadoop checksums (.part-*.crc) beside its parts; a local rerun that rewrites a part for a
    changed file must not leave a stale one, or Spark's next read of the dataset fails its checksum."""
    from aws.spark_dataset import preprocess_spark
    raw = tmp_path / "raw"
    for i in range(3):
        make_audio(str(raw / "Rock" / f"r{i}.mp3"), seconds=1.0, freq_hz=300 + 50 * i)
    out = str(tmp_path / "out")
    preprocess_spark(spark, str(raw), out, partitions=1, **SETTINGS)
    assert [n for n in os.listdir(os.path.join(out, "tracks")) if n.endswith(".crc")], "Spark wrote checksums"
    before = {p: open(p, "rb").read() for p in dataset_files.list_parts(out)}
    make_audio(str(raw / "Rock" / "r1.mp3"), seconds=2.0, freq_hz=900)  # changed: its part is rewritten
    summary = build.preprocess(str(raw), out, workers=1, progress=False, **SETTINGS)
    assert summary["processed"] == 1 and summary["skipped"] == 2
    rewritten = [p for p in before if not os.path.exists(p) or open(p, "rb").read() != before[p]]
    assert rewritten, "the changed track's old part was rewritten (or removed) without its row"
    for part in rewritten:  # a checksum of the old bytes would fail Hadoop's verification or linger
        assert not os.path.exists(os.path.join(os.path.dirname(part), f".{os.path.basename(part)}.crc"))
    table = spark.read.parquet(os.path.join(out, "tracks")).select("track_id", "n_samples").collect()
    assert sorted(r.track_id for r in table) == ["r0", "r1", "r2"]
    assert {r.track_id: r.n_samples for r in table}["r1"] > 1.5 * 16000


def test_the_same_failures_genres_and_fallback_as_the_local_stage(spark, tmp_path):
    """Every input the Spark job does not use is listed with the local stage's reason - the empty file too,
    which Spark's file source never hands to a task; a genre whose every file failed gets no id; an Ogg that
    only libsndfile decodes gives the same codes and is counted; a later genre never renumbers the others."""
    from aws.spark_dataset import UNREAD_REASON, preprocess_spark
    raw = tmp_path / "raw"
    broken = make_broken_files(str(raw / "Bad"), str(tmp_path))  # "Bad" sorts first: its id would be 0
    for i in range(2):
        make_audio(str(raw / "Rock" / f"rock{i}.mp3"), seconds=1.2, freq_hz=300 + 70 * i)
    make_audio(str(raw / "Jazz" / "jazz0.flac"), seconds=1.2, freq_hz=520)
    shutil.copy(FIXTURE_OGG, raw / "Jazz" / "ocean.ogg")  # a real Ogg that ffmpeg refuses, libsndfile reads
    local_out, spark_out = str(tmp_path / "local"), str(tmp_path / "spark")
    local = build.preprocess(str(raw), local_out, workers=1, progress=False, **SETTINGS)
    result = preprocess_spark(spark, str(raw), spark_out, partitions=2, **SETTINGS)

    assert failures(spark_out) == failures(local_out)
    assert sorted(name for name, _ in failures(spark_out)) == sorted(broken)
    assert dict(failures(spark_out))["empty.mp3"] == "empty file (0 bytes)"
    expected, got = rows(local_out), rows(spark_out)
    assert sorted(got) == sorted(expected) == sorted(["rock0", "rock1", "jazz0"] + ["ocean"])
    for track_id, row in expected.items():
        assert {k: v for k, v in got[track_id].items()} == row, track_id
    spark_json = dataset_files.read_dataset_json(spark_out)
    assert spark_json == dataset_files.read_dataset_json(local_out)
    assert spark_json["genres"] == ["Jazz", "Rock"]  # no "Bad": it has no track
    assert result["processed"] == local["processed"] and len(result["failed"]) == len(broken)
    assert result["decoded_with_libsndfile"] == local["decoded_with_libsndfile"] == 1

    # a new genre that sorts first, and a name Spark's file source hides: ids stay, the hidden file is listed
    make_audio(str(raw / "Ambient" / "amb0.wav"), seconds=1.2, freq_hz=610)
    make_audio(str(raw / "Rock" / "_take2.mp3"), seconds=1.2, freq_hz=330)
    again = preprocess_spark(spark, str(raw), spark_out, **SETTINGS)
    grown = rows(spark_out)
    assert dataset_files.read_dataset_json(spark_out)["genres"] == ["Jazz", "Rock", "Ambient"]
    assert all(grown[t]["genre_id"] == got[t]["genre_id"] for t in got) and grown["amb0"]["genre_id"] == 2
    assert (str(raw / "Rock" / "_take2.mp3"), UNREAD_REASON) in again["failed"]
    assert dict(failures(spark_out))["_take2.mp3"] == UNREAD_REASON


def test_the_file_decides_unchanged_paths_outside_raw_dir_and_settings_from_the_rows_as_locally(spark, tmp_path):
    """The Spark job follows the local rules of issue 12: a file replaced under a manifest that still claims
    the old sha256 is processed again; manifest paths leaving raw_dir are refused with the local reason; a
    rerun with other settings over Spark-written rows is refused even when dataset.json is gone."""
    from aws.spark_dataset import preprocess_spark
    raw = tmp_path / "raw"
    a = make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.2, freq_hz=300)
    make_audio(str(raw / "Rock" / "b.mp3"), seconds=1.2, freq_hz=400)
    secret = make_audio(str(tmp_path / "secret.mp3"), seconds=1.2, freq_hz=600)
    with open(raw / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(manifest.MANIFEST_COLUMNS)
        writer.writerow(["a", "Rock", "", "", "", "Rock/a.mp3", "", manifest.sha256_file(a), ""])
        writer.writerow(["b", "Rock", "", "", "", "Rock/b.mp3", "", "", ""])
        writer.writerow(["secret", "Rock", "", "", "", "../secret.mp3", "", "", ""])
        writer.writerow(["passwd", "Rock", "", "", "", "../../../../../../etc/passwd", "", "", ""])
    local_out, spark_out = str(tmp_path / "local"), str(tmp_path / "spark")
    build.preprocess(str(raw), local_out, workers=1, progress=False, **SETTINGS)
    result = preprocess_spark(spark, str(raw), spark_out, partitions=2, **SETTINGS)
    assert failures(spark_out) == failures(local_out)
    assert [os.path.basename(p) for p, r in result["failed"] if "outside raw_dir" in r] == ["secret.mp3", "passwd"]
    before = rows(spark_out)["a"]

    make_audio(a, seconds=2.4, freq_hz=900)  # new audio; the manifest still claims the old sha256
    again = preprocess_spark(spark, str(raw), spark_out, **SETTINGS)
    assert again["processed"] == 1 and again["skipped"] == 1
    after = rows(spark_out)["a"]
    assert after["source_sha256"] == manifest.sha256_file(a) != before["source_sha256"]
    assert after["n_samples"] > before["n_samples"]

    os.remove(os.path.join(spark_out, "dataset.json"))  # as after a kill before dataset.json was written
    for job in (lambda: preprocess_spark(spark, str(raw), spark_out, **dict(SETTINGS, min_seconds=0.7)),
                lambda: build.preprocess(str(raw), spark_out, workers=1, progress=False,
                                                 **dict(SETTINGS, trim_silence=False))):
        with pytest.raises(ValueError, match="holds tracks made with (min_seconds=0.5|trim_silence=True)"):
            job()


def test_a_second_writer_on_a_local_out_dir_is_refused_as_on_the_local_stage(spark, tmp_path, capsys):
    import signal

    from test_locks import hold_lock

    from aws import spark_dataset, spark_preprocessing
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Folk" / "f0.mp3"), seconds=1.0)
    holder = hold_lock(out)  # a local stage 2 (or another Spark job) writing there now
    try:
        with pytest.raises(SystemExit) as stop:
            spark_preprocessing.main([f"--raw_dir={raw}", f"--out_dir={out}", "--min_seconds=0.5"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and f"in use by process {holder.pid}" in err, err
        assert sorted(os.listdir(out)) == [locks.LOCK_NAME]  # the refused run wrote nothing, not even config.json
        with pytest.raises(ValueError, match="in use by process"):  # a file: URI is the same folder
            spark_dataset.preprocess_spark(spark, str(raw), f"file://{out}", min_seconds=0.5)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    summary = spark_dataset.preprocess_spark(spark, str(raw), str(out), min_seconds=0.5)  # the holder is gone
    assert summary["processed"] == 1
