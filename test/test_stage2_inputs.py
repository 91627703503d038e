"""Stage 2 on real files that real libraries and hostile manifests hold (issue 12).

ffmpeg-refused Ogg decoded by libsndfile, manifest paths outside raw_dir, special files, files changed under
an unchanged manifest, nonsense settings, constant (DC) files, genres without a kept track, and reruns with
other settings over rows made with the old ones.
"""
import csv
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import FIXTURE_OGG, encode, make_audio, run_script

from local.audio import decoding
from local.audio import ffmpeg as audio
from local.dataset import build, inputs
from local.store import manifest

FAST = dict(workers=1, min_seconds=0.5, progress=False)


def read_failures(out_dir):
    with open(os.path.join(out_dir, "failures.csv"), newline="") as f:
        return {r["path"]: r["reason"] for r in csv.DictReader(f)}


def rows_by_id(out_dir):
    return {r["track_id"]: r for r in pq.read_table(os.path.join(out_dir, "tracks")).to_pylist()}


def write_manifest(raw, rows):
    with open(os.path.join(raw, "manifest.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(manifest.MANIFEST_COLUMNS)
        for track_id, genre, path, sha in rows:
            writer.writerow([track_id, genre, "", "", "", path, "", sha, ""])


def test_an_ogg_ffmpeg_refuses_is_decoded_by_libsndfile_and_counted(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    os.makedirs(raw / "Game")
    shutil.copy(FIXTURE_OGG, raw / "Game" / "ocean.ogg")
    make_audio(str(raw / "Game" / "tone.mp3"), seconds=1.5)
    with open(FIXTURE_OGG, "rb") as f:
        data = f.read()
    with pytest.raises(audio.DecodeError):  # the point of the fixture: ffmpeg refuses it
        audio.decode_audio(data)
    summary = build.preprocess(str(raw), str(out), **FAST)
    assert summary["processed"] == 2 and summary["failed"] == [] and summary["decoded_with_libsndfile"] == 1
    samples, rate, _ = audio.decode_with_libsndfile(data)
    assert samples.shape == (159872, 2) and rate == 44100
    expected = decoding.track_from_samples(samples, rate, "", decoding.DecodeSettings(min_seconds=0.5))
    assert rows_by_id(str(out))["ocean"]["codes"] == expected["codes"]
    result = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={tmp_path / 'o2'}",
                        "--workers=1", "--min_seconds=0.5")
    assert result.returncode == 0, result.stderr
    assert "1 of them refused by ffmpeg and decoded with libsndfile" in result.stdout


def test_manifest_paths_outside_raw_dir_and_special_files_are_refused(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Rock" / "good.mp3"), seconds=1.5)
    os.symlink("/dev/zero", raw / "Rock" / "zero.mp3")
    os.mkfifo(raw / "Rock" / "pipe.mp3")
    secret = tmp_path / "secret.mp3"
    make_audio(str(secret), seconds=1.5, freq_hz=300)
    write_manifest(str(raw), [("good", "Rock", "Rock/good.mp3", ""),
                              ("passwd", "Rock", "../../../../../../../../etc/passwd", ""),
                              ("zero", "Rock", "../dev/zero", ""),
                              ("zlink", "Rock", "Rock/zero.mp3", ""),
                              ("pipe", "Rock", "Rock/pipe.mp3", ""),
                              ("secret", "Rock", "../secret.mp3", "")])
    summary = build.preprocess(str(raw), str(out), **FAST)
    assert summary["processed"] == 1
    reasons = {os.path.basename(p): r for p, r in read_failures(str(out)).items()}
    assert set(reasons) == {"passwd", "zero", "zero.mp3", "pipe.mp3", "secret.mp3"}
    for name in ("passwd", "zero", "zero.mp3", "secret.mp3"):
        assert "outside raw_dir" in reasons[name]
    assert "not a regular file" in reasons["pipe.mp3"]
    assert list(rows_by_id(str(out))) == ["good"]


def test_a_file_replaced_under_an_unchanged_manifest_is_processed_again(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    path = make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.5, freq_hz=300)
    write_manifest(str(raw), [("a", "Rock", "Rock/a.mp3", manifest.sha256_file(path))])
    build.preprocess(str(raw), str(out), **FAST)
    before = rows_by_id(str(out))["a"]
    assert build.preprocess(str(raw), str(out), **FAST)["skipped"] == 1
    make_audio(path, seconds=2.5, freq_hz=900)  # new audio; the manifest still claims the old sha256
    summary = build.preprocess(str(raw), str(out), **FAST)
    assert summary["processed"] == 1 and summary["skipped"] == 0
    after = rows_by_id(str(out))["a"]
    assert after["source_sha256"] == manifest.sha256_file(path) != before["source_sha256"]
    assert after["n_samples"] > before["n_samples"]
    with open(out / "source_stats.json") as f:  # the fast path: size and mtime of the file last read
        assert json.load(f)[path][2] == after["source_sha256"]


@pytest.mark.parametrize("arg,key", [("--silence_threshold=-10", "silence_threshold"),
                                     ("--min_seconds=-1", "min_seconds"), ("--sample_rate=1", "sample_rate"),
                                     ("--min_seconds=nan", "min_seconds")])
def test_nonsense_settings_are_one_line_errors(tmp_path, arg, key):
    raw = tmp_path / "raw"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=0.5)
    result = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={tmp_path / 'o'}", arg)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{key}=" in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_constant_file_is_reported_like_a_silent_one(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    encode(str(raw / "Rock" / "dc.wav"), np.full((32000, 1), 0.5, np.float32), 16000)
    make_audio(str(raw / "Rock" / "good.mp3"), seconds=1.5)
    summary = build.preprocess(str(raw), str(out), **FAST)
    reasons = {os.path.basename(p): r for p, r in summary["failed"]}
    assert list(reasons) == ["dc.wav"] and reasons["dc.wav"].startswith("silent") and "constant" in reasons["dc.wav"]


def test_a_genre_without_a_kept_track_is_no_genre_and_ids_never_move(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Jazz" / "j.mp3"), seconds=1.5)
    (raw / "Broken").mkdir()
    (raw / "Broken" / "b.mp3").write_bytes(bytes(range(256)) * 40)
    make_audio(str(raw / "Rock" / "r.mp3"), seconds=1.5, freq_hz=300)
    info = build.preprocess(str(raw), str(out), **FAST)["dataset"]
    assert info["genres"] == ["Jazz", "Rock"] and "Broken" not in info["per_genre"]
    assert {r["genre"]: r["genre_id"] for r in rows_by_id(str(out)).values()} == {"Jazz": 0, "Rock": 1}
    make_audio(str(raw / "Broken" / "b.mp3"), seconds=1.5, freq_hz=500)  # the folder now has a good track
    make_audio(str(raw / "Ambient" / "a.mp3"), seconds=1.5, freq_hz=700)
    info = build.preprocess(str(raw), str(out), **FAST)["dataset"]
    assert info["genres"] == ["Jazz", "Rock", "Ambient", "Broken"]  # new ones sorted, after the known ones
    ids = {r["genre"]: r["genre_id"] for r in rows_by_id(str(out)).values()}
    assert ids["Jazz"] == 0 and ids["Rock"] == 1 and [info["genres"][ids[g]] for g in ids] == list(ids)


def test_a_rerun_with_other_settings_over_existing_rows_is_one_line(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.5)
    make_audio(str(raw / "Rock" / "b.mp3"), seconds=1.5, freq_hz=300)
    args = [f"--raw_dir={raw}", f"--out_dir={out}", "--workers=1", "--min_seconds=0.5"]
    assert run_script("run_transformation_scripts.py", *args).returncode == 0
    json_before = (out / "dataset.json").read_text()
    for other, key in (("--trim_silence=false", "trim_silence"), ("--min_seconds=0.7", "min_seconds"),
                       ("--silence_threshold=40", "silence_threshold")):
        result = run_script("run_transformation_scripts.py", *args, other)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and f"--{key}=" in result.stderr
        assert (out / "dataset.json").read_text() == json_before
    os.remove(out / "dataset.json")  # as after a kill before dataset.json was written
    make_audio(str(raw / "Rock" / "c.mp3"), seconds=1.5, freq_hz=500)
    result = run_script("run_transformation_scripts.py", *args, "--sample_rate=8000")
    assert result.returncode == 2 and "sample_rate=16000" in result.stderr and "Traceback" not in result.stderr
    assert {r["sample_rate"] for r in rows_by_id(str(out)).values()} == {16000}


@pytest.mark.parametrize("ext,amplitude", [("mp3", 0.5), ("wav", 1.6)])  # a float wav peaking at 1.6: scaled
def test_long_file_streaming_gives_the_codes_of_whole_file_decoding(tmp_path, ext, amplitude):
    from helpers import tone
    samples = tone(12.0, 44100, 2, 330.0, amplitude=amplitude)
    samples[:44100] = 0.0  # a second of silence to trim in front, a quiet tail behind
    samples[-2 * 44100:] *= 1e-4
    path = encode(str(tmp_path / f"x.{ext}"), samples, 44100, codec_args=("-c:a", "pcm_f32le") if ext == "wav" else ())
    with open(path, "rb") as f:
        data = f.read()
    settings = decoding.DecodeSettings()
    whole = decoding.track_from_samples(*audio.decode_audio(data), settings)
    streamed = decoding.track_from_stream(lambda: audio.stream_decode(data, chunk_frames=10000), settings)
    assert streamed["n_samples"] == whole["n_samples"] < 11.5 * 16000
    assert streamed["codes"] == whole["codes"]
    from_path = decoding.track_from_stream(lambda: audio.stream_decode(path, chunk_frames=4096), settings)
    assert from_path["codes"] == whole["codes"]


def test_process_batch_streams_files_above_the_threshold_with_the_same_results(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    os.makedirs(raw / "Game")
    shutil.copy(FIXTURE_OGG, raw / "Game" / "ocean.ogg")
    make_audio(str(raw / "Game" / "tone.mp3"), seconds=3.0)
    (raw / "Game" / "garbage.mp3").write_bytes(bytes(range(256)) * 40)
    items = inputs.list_inputs(str(raw))
    settings = decoding.DecodeSettings(min_seconds=0.5)
    whole = decoding.process_batch(items, settings)
    monkeypatch.setattr(decoding, "STREAM_ABOVE_BYTES", 100)
    streamed = decoding.process_batch(items, settings)
    datas = [open(i["path"], "rb").read() for i in items]
    streamed_bytes = decoding.process_batch(items, settings, datas)  # as a Spark executor calls it
    for one, two, three in zip(whole, streamed, streamed_bytes):
        assert (one[1] is None) == (two[1] is None) == (three[1] is None)
        assert one[2].split(":")[0] == two[2].split(":")[0] == three[2].split(":")[0]
        if one[1] is not None:
            assert one[0]["sha256"] == two[0]["sha256"] == three[0]["sha256"]
            assert one[1]["codes"] == two[1]["codes"] == three[1]["codes"]
            assert one[1]["decoder"] == two[1]["decoder"] == three[1]["decoder"]
    assert [r[1]["decoder"] for r in streamed if r[1]] == ["libsndfile", "ffmpeg"]
