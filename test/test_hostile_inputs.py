"""The second round of hostile inputs (issue 20): decode bombs, ... Each test fails on the code before the fix."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, make_audio

from local.audio import decoding
from local.audio import ffmpeg as audio
from local.dataset import build


def one_hz_wav(path, n_frames=96000):
    """A 96 kB 8-bit WAV whose header claims 1 Hz: 27 hours of audio once resampled to 16 kHz."""
    body = bytes((128 + 100 * ((i % 7) - 3)) & 255 for i in range(n_frames))
    fmt = struct.pack("<HHIIHH", 1, 1, 1, 1, 1, 8)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + n_frames) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                + b"data" + struct.pack("<I", n_frames) + body)
    return path


def near_silent_flac(path, seconds):
    """A small FLAC of ``seconds`` of 44.1 kHz stereo: 2 s of tone, then digital silence."""
    subprocess.run([audio.ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=f=440:d={seconds}:r=44100", "-af", "volume=enable='gt(t,2)':volume=0", "-ac", "2",
                    path], check=True)
    return path


PEAK_RSS = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # the old code reached 21 GB: stop it at 3
from local.audio import decoding
track, reason = decoding.decode_track(sys.argv[1])
status = open("/proc/self/status").read()
hwm_kb = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"reason": reason, "n_samples": track and track["n_samples"], "peak_rss_mb": hwm_kb / 1024}))
"""


def peak_rss_of_decode(path):
    """decode_track(path) in a fresh process: its reason, n_samples and peak RSS (VmHWM, MB)."""
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, path], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_wav_claiming_1_hz_is_refused_in_bounded_memory(tmp_path):
    path = one_hz_wav(str(tmp_path / "bomb.wav"))
    assert os.path.getsize(path) < 100_000
    outcome = peak_rss_of_decode(path)
    assert outcome["n_samples"] is None and "sample rate 1 Hz" in outcome["reason"], outcome
    assert outcome["peak_rss_mb"] < 300, outcome


def test_a_small_flac_of_long_near_silence_streams_in_bounded_memory(tmp_path):
    path = near_silent_flac(str(tmp_path / "quiet.flac"), seconds=420)  # 148 MB as float PCM; 0.4 MB as FLAC
    assert os.path.getsize(path) < decoding.STREAM_ABOVE_BYTES
    outcome = peak_rss_of_decode(path)
    assert outcome["reason"] == "" and 1.9 * 16000 < outcome["n_samples"] < 2.5 * 16000, outcome
    assert outcome["peak_rss_mb"] < 300, outcome  # the old whole decode: 560 MB


def test_streaming_is_chosen_by_decoded_length_not_file_size(tmp_path, monkeypatch):
    """A small file longer than WHOLE_DECODE_MAX_SECONDS is streamed, from a path and from bytes (a Spark
    executor), with the codes a whole decode gives; a short one in the same batch is decoded whole."""
    long_path = make_audio(str(tmp_path / "long.mp3"), seconds=6.0)
    short_path = make_audio(str(tmp_path / "short.mp3"), seconds=2.0, freq_hz=330)
    settings = decoding.DecodeSettings(min_seconds=0.5)
    items = [{"path": long_path}, {"path": short_path}]
    whole = decoding.process_batch(items, settings)
    streamed_inputs = []
    real = decoding.process_long_input
    monkeypatch.setattr(decoding, "process_long_input",
                        lambda item, *args: streamed_inputs.append(item["path"]) or real(item, *args))
    monkeypatch.setattr(decoding, "WHOLE_DECODE_MAX_SECONDS", 4.0)
    datas = [open(p, "rb").read() for p in (long_path, short_path)]
    for outcome in (decoding.process_batch(items, settings), decoding.process_batch(items, settings, datas)):
        assert [r[2] for r in outcome] == ["", ""]
        assert [bytes(r[1]["codes"]) for r in outcome] == [bytes(r[1]["codes"]) for r in whole]
        assert outcome[0][0]["sha256"] == whole[0][0]["sha256"]
    assert streamed_inputs == [long_path, long_path]
    # a caller that needs the waveform gets a reason, not a whole decode of hours
    track, reason = decoding.decode_track(long_path, settings, keep_waveform=True)
    assert track is None and "too long to keep its waveform" in reason


def test_every_whole_decoder_stops_holding_audio_past_the_bound(tmp_path):
    path = make_audio(str(tmp_path / "six.flac"), seconds=6.0)
    data = open(path, "rb").read()
    for decode in (lambda: audio.decode_audio(path, max_seconds=4), lambda: audio.decode_audio(data, max_seconds=4),
                   lambda: audio.decode_with_libsndfile(data, max_seconds=4)):
        with pytest.raises(audio.TooLongToHold, match="6 s of audio at 22050 Hz"):
            decode()
    short = make_audio(str(tmp_path / "two.flac"), seconds=2.0)
    outcomes = audio.decode_many([data, open(short, "rb").read()], max_seconds=4)
    assert isinstance(outcomes[0], audio.TooLongToHold) and outcomes[1][0].shape == (44100, 1)
    np.testing.assert_array_equal(outcomes[1][0], audio.decode_audio(short)[0])


def test_clip_names_are_unique_per_genre_id_and_readable_in_any_script(tmp_path):
    from local.generate import clip_files
    genres = ["Hip Hop", "Hip-Hop", "Hip_Hop", "Поп", "Рок", "ロック", "", "../../etc", ".hidden", "a/b", "x" * 300]
    names = [clip_files.clip_name(genre, k) for k, genre in enumerate(genres)]
    assert len(set(names)) == len(genres), names
    assert names[3] == "Поп_03" and names[4] == "Рок_04" and names[5] == "ロック_05" and names[6] == "clip_06"
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name.encode()) < 200, name
    # stage 4 writes through the same function: two non-Latin genres are two files
    codes = np.random.default_rng(0).integers(0, 256, (2, 1600)).astype(np.int32)
    clips = clip_files.write_clips(str(tmp_path), codes, np.zeros(0, np.int32), genres=["Поп", "Рок"],
                                   genre_ids=[0, 1], sample_rate=16000, quantization_channels=256, title="t")
    assert [os.path.basename(c["wav"]) for c in clips] == ["Поп_00.wav", "Рок_01.wav"]
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".wav")) == ["Поп_00.wav", "Рок_01.wav"]


@pytest.fixture(scope="module")
def stage4(tmp_path_factory):
    """A tiny saved WaveNet run (test_predictions' helpers) and its dataset."""
    from test_predictions import save_dataset, save_run
    root = tmp_path_factory.mktemp("stage4")
    save_dataset(str(root / "processed"))
    save_run(str(root / "run"), str(root / "processed"))
    return root


def stage4_call(root, out, *args):
    from helpers import run_script
    return run_script("run_model_predictions.py", f"--run_dir={root / 'run'}", f"--out_dir={out}", "--seconds=0.05",
                      "--threads=1", *args)


def wavs_in(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".wav"))


def listed_wavs(folder):
    with open(os.path.join(folder, "generation.json")) as f:
        return sorted(os.path.basename(c["wav"]) for c in json.load(f)["clips"])


@pytest.mark.slow
def test_a_stage4_folder_holds_the_clips_of_one_call(stage4, tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    (out / "mine.wav").write_bytes(b"a user's own file: never touched")
    first = stage4_call(stage4, out, "--streams=3")
    assert first.returncode == 0, first.stderr
    assert listed_wavs(out) == ["Chirp_01.wav", "Drone_00.wav", "Drone_02.wav"]
    second = stage4_call(stage4, out, "--streams=1")  # the old code kept Chirp_01 and Drone_02 beside it
    assert second.returncode == 0, second.stderr
    assert wavs_in(out) == listed_wavs(out) + ["mine.wav"] == ["Drone_00.wav", "mine.wav"]
    # a call killed while writing its clips: the previous call's generation.json is gone with its clips, and
    # the next call clears what the killed one wrote
    from local.store import clip_folder
    clip_folder.claim_folder(str(out), ["Chirp_01.wav", "Chirp_01.png"])
    (out / "Chirp_01.wav").write_bytes(b"half a clip")
    assert not (out / "generation.json").exists() and wavs_in(out) == ["Chirp_01.wav", "mine.wav"]
    third = stage4_call(stage4, out, "--streams=1")
    assert third.returncode == 0, third.stderr
    assert wavs_in(out) == ["Drone_00.wav", "mine.wav"] and listed_wavs(out) == ["Drone_00.wav"]
    assert not [n for n in os.listdir(out) if n.startswith(".") and n != ".waveforms.lock"]


@pytest.mark.slow
def test_a_second_stage4_call_on_one_out_dir_is_refused(stage4, tmp_path):
    from local.core import locks
    out = tmp_path / "gen"
    with locks.acquire_lock(str(out), "stage 4"):
        refused = stage4_call(stage4, out)
    assert refused.returncode == 2 and "in use by process" in refused.stderr and "Traceback" not in refused.stderr
    assert not wavs_in(out) and not (out / "config.json").exists()


def read_failures(out_dir):
    import csv
    with open(os.path.join(out_dir, "failures.csv"), newline="") as f:
        return {r["path"]: r["reason"] for r in csv.DictReader(f)}


def test_a_duplicate_track_id_in_the_manifest_is_listed_in_failures(tmp_path):
    import csv

    from local.store import manifest
    raw, out = tmp_path / "raw", str(tmp_path / "out")
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.0)
    make_audio(str(raw / "Rock" / "b.mp3"), seconds=1.0, freq_hz=330)
    make_audio(str(raw / "Jazz" / "c.mp3"), seconds=1.0, freq_hz=550)
    with open(raw / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(manifest.MANIFEST_COLUMNS)
        for track_id, genre, path in (("t1", "Rock", "Rock/a.mp3"), ("t2", "Jazz", "Jazz/c.mp3"),
                                      ("t1", "Rock", "Rock/b.mp3"), ("t2", "Jazz", "Jazz/c.mp3")):
            writer.writerow([track_id, genre, "", "", "", path, "", "", ""])
    summary = build.preprocess(str(raw), out, workers=1, min_seconds=0.5, progress=False)
    assert summary["processed"] == 2  # t1 (b.mp3, the later row) and t2 (listed twice for one file: no loss)
    failures = read_failures(out)
    assert list(failures) == [str(raw / "Rock" / "a.mp3")], failures
    assert "duplicate track_id 't1'" in failures[str(raw / "Rock" / "a.mp3")] and "Rock/b.mp3" in \
        failures[str(raw / "Rock" / "a.mp3")]


def test_a_refused_stage2_rerun_leaves_config_json_as_it_was(tmp_path):
    from helpers import run_script
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.0)
    first = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={out}", "--workers=1",
                       "--min_seconds=0.5")
    assert first.returncode == 0, first.stderr
    before = (out / "config.json").read_bytes()
    refused = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={out}", "--workers=1",
                         "--min_seconds=0.5", "--sample_rate=8000")
    assert refused.returncode == 2 and "sample_rate=16000" in refused.stderr, refused.stderr
    assert (out / "config.json").read_bytes() == before


def test_a_file_name_that_is_not_utf8_is_reported_and_the_rest_goes_on(tmp_path):
    import shutil

    from local.collect import music_folder
    from local.judge import tagging, verdict
    folder, raw = tmp_path / "music", tmp_path / "raw"
    good = make_audio(str(folder / "Rock" / "good.mp3"), seconds=1.0)
    bad = os.fsdecode(os.fsencode(str(folder / "Rock")) + b"/caf\xe9.mp3")  # latin-1, as old CDs were ripped
    shutil.copy(good, bad)
    imported = music_folder.import_music_folder(str(folder), str(raw), progress=False)
    assert imported["downloaded"] == 1
    assert imported["failed"] == [(str(folder / "Rock") + "/caf\\xe9.mp3", "its file name is not UTF-8: skipped "
                                   "(rename it, e.g. with convmv -f latin1 -t utf8)")]
    summary = build.preprocess(str(folder), str(tmp_path / "out"), workers=1, min_seconds=0.5, progress=False)
    assert summary["processed"] == 1 and [p for p, _ in summary["failed"]] == [str(folder / "Rock") + "/caf\\xe9.mp3"]
    tagged = list(tagging.decode_files([good, bad], decoding.DecodeSettings(min_seconds=0.5)))
    assert tagged[0][2] == "" and tagged[1][0].endswith("caf\\xe9.mp3") and "not UTF-8" in tagged[1][2]


@pytest.mark.slow
def test_an_out_dir_that_is_an_input_folder_is_refused(stage4, tmp_path):
    from helpers import run_script
    raw = tmp_path / "raw"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.0)
    (raw / "config.json").write_text('{"source": "folder"}')
    same = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={raw}/../raw/")
    assert same.returncode == 2 and "is raw_dir too" in same.stderr and "Traceback" not in same.stderr, same.stderr
    assert (raw / "config.json").read_text() == '{"source": "folder"}' and not (raw / "failures.csv").exists()
    before = (stage4 / "run" / "config.json").read_bytes()
    into_run = stage4_call(stage4, stage4 / "run")
    assert into_run.returncode == 2 and "out_dir=" in into_run.stderr and "is run_dir too" in into_run.stderr
    assert (stage4 / "run" / "config.json").read_bytes() == before
    from local.train import runner
    with pytest.raises(Exception, match="run_dir=.* is data_dir too"):
        runner.check_config({"run_dir": str(raw), "data_dir": str(raw) + "/"})


def test_genres_differing_in_case_or_spacing_are_one_and_path_like_ones_are_refused(tmp_path):
    import csv

    from local.collect import music_folder
    from local.store import manifest
    raw, out = tmp_path / "raw", str(tmp_path / "out")
    rows = [("t1", "Rock", "a.mp3"), ("t2", "rock", "b.mp3"), ("t3", "ROCK ", "c.mp3"), ("t4", "Hip  Hop", "d.mp3"),
            ("t5", "../../etc", "e.mp3"), ("t6", "Old-Time / Historic", "f.mp3")]
    with open(make_dirs(raw) / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(manifest.MANIFEST_COLUMNS)
        for k, (track_id, genre, path) in enumerate(rows):
            make_audio(str(raw / path), seconds=1.0, freq_hz=300 + 40 * k)
            writer.writerow([track_id, genre, "", "", "", path, "", "", ""])
    summary = build.preprocess(str(raw), out, workers=1, min_seconds=0.5, progress=False)
    assert summary["dataset"]["genres"] == ["Hip Hop", "Old-Time / Historic", "Rock"]
    assert read_failures(out) == {str(raw / "e.mp3"): "genre '../../etc' reads as a path: not used "
                                                      "(fix its manifest.csv row)"}
    # a rerun with another spelling keeps the dataset's
    assert [i["genre"] for i in build.unify_genres([{"genre": "ROCK"}, {"genre": "hip hop"}],
                                                           summary["dataset"]["genres"])] == ["Rock", "Hip Hop"]
    # stage 1: a path-like tag falls back to the folder's name
    assert music_folder.choose_genre({"genre": "../../etc"}, "Jazz") == "Jazz"
    assert music_folder.choose_genre({"genre": ".."}, "") == "Unknown"


def make_dirs(path):
    os.makedirs(path, exist_ok=True)
    return path


def test_judge_refuses_a_data_dir_at_another_sample_rate(demo_tagger, tmp_path):
    import shutil

    from local.core.config import StageError
    from local.core.fileio import read_json, write_json_atomic
    from local.judge import tagging, verdict
    data_dir = str(tmp_path / "processed")
    shutil.copytree(demo_tagger["data_dir"], data_dir)
    info = read_json(os.path.join(data_dir, "dataset.json"))
    write_json_atomic(os.path.join(data_dir, "dataset.json"), dict(info, sample_rate=info["sample_rate"] // 2))
    with pytest.raises(StageError, match=f"holds {info['sample_rate'] // 2} Hz tracks but the model in"):
        verdict.Judge(tagging.Tagger(demo_tagger["run_dir"]), data_dir)


def test_every_float_key_is_finite_and_every_count_bounded_by_the_machine(tmp_path):
    from helpers import run_script

    from local.core.config import ConfigError, max_count, resolve_config
    defaults = {"max_minutes": 0.0, "grad_clip": 1.0, "temperature": 1.0, "workers": 2, "threads": 0,
                "concurrency": 2, "dilations": [1.0]}
    for arg, said in (("--max_minutes=nan", "--max_minutes=nan: expected a finite number"),
                      ("--grad_clip=nan", "--grad_clip=nan: expected a finite number"),
                      ("--temperature=inf", "--temperature=inf: expected a finite number"),
                      ("--dilations=1,inf", "--dilations=[1.0, inf]: expected a finite number"),
                      ("--workers=10000", f"--workers=10000: expected 0 to {max_count()}"),
                      ("--concurrency=100000", "--concurrency=100000: expected 0 to"),
                      ("--threads=-1", "--threads=-1: expected 0 to")):
        with pytest.raises(ConfigError, match=said.replace("[", r"\[").replace("]", r"\]")):
            resolve_config(defaults, [arg])
    toml = tmp_path / "c.toml"
    toml.write_text("max_minutes = nan\n")
    with pytest.raises(ConfigError, match=f"--config {toml}: max_minutes = nan: expected a finite number"):
        resolve_config(defaults, [f"--config={toml}"])
    with pytest.raises(ConfigError, match="not a regular file"):
        resolve_config(defaults, ["--config=/dev/zero"])
    assert resolve_config(defaults, ["--workers=4", "--threads=0"])["workers"] == 4
    result = run_script("run_model_training.py", "--max_minutes=nan", f"--run_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "expected a finite number" in result.stderr and "Traceback" not in result.stderr


def test_nan_samples_and_an_undecodable_manifest_are_named_as_such(tmp_path):
    import soundfile
    from helpers import run_script
    y = np.sin(np.arange(32000) / 10).astype(np.float32)
    y[1000:1010] = np.nan
    path = str(tmp_path / "nan.wav")
    soundfile.write(path, y, 16000, subtype="FLOAT")
    track, reason = decoding.decode_track(path)
    assert track is None and reason == "NaN or infinite samples (a broken float file): not audio"
    raw = tmp_path / "raw"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.0)
    (raw / "manifest.csv").write_bytes(b"track_id,genre,path\nt1,Rock\xff\xfe,Rock/a.mp3\n")
    result = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 2 and f"{raw / 'manifest.csv'} cannot be read as a UTF-8 CSV" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_full_disk_is_one_line_in_every_stage(tmp_path, monkeypatch, capsys):
    """ENOSPC met anywhere in a stage's main: one line naming the folder and the space left, no traceback."""
    import errno
    import importlib

    from local.core import config as config_module
    scripts = ["run_webscraper", "run_transformation_scripts", "run_model_training", "run_model_predictions",
               "aws.s3_sync", "aws.spark_preprocessing", "aws.spark_training"]
    for name in scripts:
        module = importlib.import_module(name)
        assert hasattr(module.main, "__wrapped__"), f"{name}.main is not a stage_main"
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / ".tmp-1-part-00001.parquet"))

    @config_module.stage_main
    def writes(argv=None):
        raise full
    with pytest.raises(SystemExit) as stopped:
        writes([])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and "\n" not in err
    assert err.startswith(f"error: no space left on the disk of {tmp_path / 'out'} (") and "MB free" in err
    import run_transformation_scripts
    raw = tmp_path / "raw"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.0)
    from local.store import dataset_files

    def disk_full(*args, **kwargs):
        raise full
    monkeypatch.setattr(dataset_files, "write_dataset_files", disk_full)
    with pytest.raises(SystemExit) as stopped:
        run_transformation_scripts.main([f"--raw_dir={raw}", f"--out_dir={tmp_path / 'out'}", "--workers=1",
                                         "--min_seconds=0.5"])
    assert stopped.value.code == 2 and "no space left on the disk of" in capsys.readouterr().err


@pytest.mark.slow
def test_stage4_checks_that_run_dir_is_writable_before_any_work(stage4, monkeypatch):
    import run_model_predictions
    from local.core import checks
    from local.core.config import StageError
    real = checks.output_folder_problem
    monkeypatch.setattr(checks, "output_folder_problem", lambda path, key: (
        f"{key}={path!r} cannot be written (Read-only file system): pass a writable --{key}" if key == "run_dir"
        else real(path, key)))
    from local.core.config import config_keys
    keys = dict(config_keys(vars(run_model_predictions)), run_dir=str(stage4 / "run"), out_dir=str(stage4 / "gen-ro"))
    with pytest.raises(StageError, match="run_dir=.* cannot be written"):
        run_model_predictions.check_config(keys)


def test_stage1_removes_the_temps_a_killed_run_left(tmp_path):
    from helpers import run_script
    dead = subprocess.Popen(["true"])
    dead.wait()
    folder, out = tmp_path / "music", tmp_path / "raw"
    make_audio(str(folder / "Rock" / "a.mp3"), seconds=1.0)
    os.makedirs(out / "Rock")
    left = [out / "Rock" / f".tmp-{dead.pid}-a-1234.mp3", out / f".tmp-{dead.pid}-manifest.csv"]
    for path in left:
        path.write_bytes(b"half a file")
    live = out / "Rock" / f".tmp-{os.getpid()}-b.mp3"  # a live writer's temp stays
    live.write_bytes(b"being written")
    result = run_script("run_webscraper.py", "--source=folder", f"--folder={folder}", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in left) and live.exists()


def test_folder_import_reads_tags_with_few_processes_and_a_rerun_opens_no_file(tmp_path):
    """The old import ran ffprobe twice per file (about 5 files/s), and again on every rerun;
    bench/bench_folder_import.py gives the figures for 10,000 files."""
    import shutil

    from helpers import run_script
    folder, out = tmp_path / "music", str(tmp_path / "raw")
    tagged = make_audio(str(tmp_path / "tagged.mp3"), seconds=0.5, metadata={"genre": "Rock", "title": "T"})
    plain = make_audio(str(tmp_path / "plain.ogg"), seconds=0.5)
    for k in range(30):
        os.makedirs(folder / f"Album{k % 3}", exist_ok=True)
        shutil.copy(tagged if k % 2 else plain, folder / f"Album{k % 3}" / f"t{k:02d}{'.mp3' if k % 2 else '.ogg'}")
    (folder / "Album0" / "broken.mp3").write_bytes(b"\xff\xfb" + bytes(500))  # ffmpeg cannot open it
    # every ffmpeg and ffprobe the import starts leaves a line in a log
    wrappers, log = tmp_path / "bin", tmp_path / "launches.log"
    wrappers.mkdir()
    for name, real in (("ffmpeg", audio.ffmpeg_binary()), ("ffprobe", shutil.which("ffprobe") or "false")):
        (wrappers / name).write_text(f'#!/bin/sh\necho {name} >> "{log}"\nexec "{real}" "$@"\n')
        (wrappers / name).chmod(0o755)
    env = {"PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}", "WAVEFORMS_FFMPEG": str(wrappers / "ffmpeg")}

    def launches():
        count = len(log.read_text().splitlines()) if log.exists() else 0
        log.unlink(missing_ok=True)
        return count
    first = run_script("run_webscraper.py", "--source=folder", f"--folder={folder}", f"--out_dir={out}", env=env)
    assert first.returncode == 0 and "folder: 31 new, 0 already had, 0 failed" in first.stdout, first.stdout
    assert launches() <= 3  # one ffmpeg for the batch, one more after the file it cannot open
    rows = manifest_rows(out)
    assert {rows[t]["genre"] for t in rows if "t01" in t} == {"Rock"}
    assert rows[next(t for t in rows if "t00" in t)]["genre"] == "Album0"
    again = run_script("run_webscraper.py", "--source=folder", f"--folder={folder}", f"--out_dir={out}", env=env)
    assert again.returncode == 0 and "folder: 0 new, 31 already had" in again.stdout and launches() == 0


def manifest_rows(out):
    from local.store import manifest
    return manifest.read_manifest(out)
