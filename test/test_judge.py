"""Using a tagger (local/judge/verdict.py): judging clips, similar tracks, tagging files, and bad input; the tagger is
conftest.demo_tagger, trained by the real stage 3 on a real demo dataset."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from helpers import run_script

from local.audio.encoding import write_wav
from local.audio.waveform import mu_law_decode, mu_law_encode
from local.core.fileio import write_json_atomic
from local.judge import excerpts as judge_excerpts
from local.judge import figures as judge_figures
from local.judge import tagging as judge_tagging
from local.judge import verdict as judge_verdict
from local.model.wavenet import WaveNetConfig, build_wavenet
from local.store import dataset_files, rundir
from local.train import wavenet_task


@pytest.fixture(scope="module")
def loaded(demo_tagger):
    return judge_tagging.Tagger(demo_tagger["run_dir"])


@pytest.fixture(scope="module")
def judged(demo_tagger, loaded):
    return judge_verdict.Judge(loaded, demo_tagger["data_dir"])


def held_out_rows(data_dir):
    return [r for r in dataset_files.read_index(data_dir) if r["split"] in ("valid", "test")]


def test_frechet_distance_is_zero_for_one_set_and_grows_with_the_gap():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 4))
    assert judge_figures.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    near, far = judge_figures.frechet_distance(a, a + 0.1), judge_figures.frechet_distance(a, a + 1.0)
    assert near == pytest.approx(4 * 0.01, rel=1e-3) and far == pytest.approx(4.0, rel=1e-3)
    assert judge_figures.frechet_distance(a, 3 * rng.normal(size=(400, 4))) > 10  # wider spread


def test_flatness_is_low_for_a_tone_and_high_for_white_noise():
    t = np.arange(16000) / 16000
    assert judge_figures.spectral_flatness(0.5 * np.sin(2 * np.pi * 440 * t)) < 0.01
    assert judge_figures.spectral_flatness(np.random.default_rng(0).uniform(-0.5, 0.5, 16000)) > 0.3


def clicks(rate_hz, seconds=4.0, sample_rate=16000):
    """A 5 ms 1 kHz blip every 1 / rate_hz seconds, the first at 0.25 s (float, (n,))."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    on = ((t - 0.25) % (1 / rate_hz) < 0.005) & (t >= 0.25)
    return np.where(on, 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0)


def test_onset_rate_counts_beats_and_not_silence_dither_or_a_tone():
    assert judge_figures.onset_rate(clicks(2), 16000) == pytest.approx(2, abs=0.25)
    assert judge_figures.onset_rate(clicks(4), 16000) / judge_figures.onset_rate(clicks(2), 16000) == pytest.approx(2, rel=0.15)
    assert judge_figures.onset_rate(np.zeros(64000), 16000) == 0
    dither = mu_law_decode(np.random.default_rng(0).integers(127, 130, 64000))  # near-silence, as codes give it
    assert judge_figures.onset_rate(dither, 16000) == 0
    t = np.arange(64000) / 16000
    assert judge_figures.onset_rate(0.3 * np.sin(2 * np.pi * 440 * t), 16000) <= 0.25  # a held tone: at most its start


def test_onset_rate_ratio_compares_each_genre_with_its_own_real_excerpts():
    rates = {hz: judge_figures.onset_rate(clicks(hz), 16000) for hz in (1, 2, 4)}
    real_genres = ["Slow"] * 3 + ["Fast"] * 1  # an uneven real split: the overall ratio must not care
    overall, per_genre = judge_figures.onset_rates_by_genre(
        [rates[2], rates[2], rates[4], rates[4]], ["Slow", "Slow", "Fast", "Fast"],
        [rates[1]] * 3 + [rates[4]], real_genres)
    assert per_genre["Slow"]["onset_rate_ratio"] == pytest.approx(2, rel=0.2)  # twice as many beats as real
    assert per_genre["Fast"]["onset_rate_ratio"] == pytest.approx(1)
    assert per_genre["Slow"]["n_clips"] == 2 and per_genre["Slow"]["n_real_excerpts"] == 3
    expected = (2 * rates[1] + 2 * rates[4]) / 4
    assert overall["onset_rate_ratio"] == pytest.approx((2 * rates[2] + 2 * rates[4]) / 4 / expected)
    silent, _ = judge_figures.onset_rates_by_genre([0.0, 0.0], ["Fast", "Fast"], [rates[4]], ["Fast"])
    assert silent["onset_rate_ratio"] == 0
    none, _ = judge_figures.onset_rates_by_genre([rates[2]], ["Fast"], [], [])
    assert none["onset_rate_ratio"] is None


def test_the_wilson_interval_of_a_share_matches_published_values_and_its_edges():
    assert judge_figures.wilson_interval(8, 10) == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert judge_figures.wilson_interval(20, 30) == pytest.approx([0.4878, 0.8077], abs=1e-4)  # 0.67 of 30 clips
    low, high = judge_figures.wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)  # not the normal approximation's empty [0, 0]
    low, high = judge_figures.wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == 1
    assert judge_figures.wilson_interval(0, 0) is None
    assert judge_figures.with_interval(20 / 30, judge_figures.wilson_interval(20, 30)) == "0.67 [0.49, 0.81]"


def test_the_bootstrap_interval_is_reproducible_and_holds_the_ratio():
    rng = np.random.default_rng(3)
    flatness = rng.uniform(0.01, 0.2, 30)
    real = [0.05] * 30
    interval = judge_figures.bootstrap_ratio_interval(flatness, real)
    assert interval == judge_figures.bootstrap_ratio_interval(flatness, real)  # seeded: the same every run
    assert interval != judge_figures.bootstrap_ratio_interval(flatness, real, seed=1)
    assert interval[0] < flatness.mean() / 0.05 < interval[1]
    wide = judge_figures.bootstrap_ratio_interval(flatness[:6], real[:6])
    assert wide[1] - wide[0] > interval[1] - interval[0]  # fewer clips, less known
    assert judge_figures.bootstrap_ratio_interval([0.1] * 5, [0.05] * 5) == pytest.approx([2, 2])
    assert judge_figures.bootstrap_ratio_interval([], []) is None
    assert judge_figures.bootstrap_ratio_interval([1.0, 2.0], [0.0, 0.0]) is None
    overall, per_genre = judge_figures.onset_rates_by_genre([1.0, 3.0, 4.0, 4.5], ["A", "A", "B", "B"],
                                                            [2.0, 4.0], ["A", "B"])
    for figures in (overall, per_genre["A"], per_genre["B"]):
        low, high = figures["onset_rate_ratio_interval"]
        assert low <= figures["onset_rate_ratio"] <= high
    assert per_genre["A"]["onset_rate_ratio_interval"] == pytest.approx([0.5, 1.5])  # clips 1 or 3 vs real 2


def test_a_floor_set_is_formed_from_the_excerpts_that_exist_or_their_halves():
    rows = lambda k, n: [np.full((n, 2), float(i)) for i in range(k)]  # noqa: E731  k excerpts of n windows
    reference, floor, method = judge_figures.floor_sets(rows(8, 1), rows(3, 1), 3)
    assert method == "disjoint" and len(reference) == 8 and len(floor) == 3
    reference, floor, method = judge_figures.floor_sets(rows(6, 1), [], 30)  # 30 clips, 6 excerpts
    assert method == "split" and len(reference) == len(floor) == 3
    reference, floor, method = judge_figures.floor_sets(rows(2, 4), [], 30)  # 2 long excerpts
    assert method == "split" and len(reference) == len(floor) == 1
    reference, floor, method = judge_figures.floor_sets(rows(1, 5), [], 30)  # one long excerpt: its halves
    assert method == "halves" and [len(e) for e in reference] == [2] and [len(e) for e in floor] == [3]
    assert judge_figures.floor_sets(rows(1, 1), [], 30)[2] == "none"
    clips = [np.random.default_rng(k).normal(size=(1, 2)) for k in range(12)]
    assert isinstance(judge_figures.matched_distance(clips, 3, reference), float)


def test_real_excerpts_judged_as_if_generated_pass_and_white_noise_does_not(demo_tagger, judged):
    n = 24000  # 1.5 s clips
    # excerpts that start half a clip into the held-out tracks: not the reference set's excerpts
    excerpts = judge_excerpts.real_excerpts(held_out_rows(demo_tagger["data_dir"]), n, offset=n // 2)
    genres = [g for g in ("Ambient", "Electronic", "Folk") for _ in range(2)]
    real = [excerpts[g][k] for g, k in zip(genres, [0, 1] * 3)]
    per_clip, summary = judged.judge(real, genres)
    assert summary["n_clips"] == 6 and summary["genre_accuracy"] >= 5 / 6, per_clip
    assert 0.5 < summary["flatness_ratio"] < 2.0, summary
    assert 0.67 < summary["onset_rate_ratio"] < 1.5, summary  # real excerpts keep their genre's rhythm
    assert set(summary["per_genre"]) == {"Ambient", "Electronic", "Folk"}
    assert summary["per_genre"]["Electronic"]["real_onset_rate"] > 2 * summary["per_genre"]["Ambient"]["real_onset_rate"]
    for clip in per_clip:
        assert 0 <= clip["asked_genre_probability"] <= 1 and clip["nearest_training_track"].startswith("demo-")
    hits = sum(c["top_genre"] == c["asked_genre"] for c in per_clip)
    assert summary["genre_accuracy_interval"] == judge_figures.wilson_interval(hits, 6)
    for figures in [summary] + list(summary["per_genre"].values()):  # every ratio with a 95% interval around it
        for key in ("genre_accuracy", "flatness_ratio", "onset_rate_ratio"):
            low, high = figures[f"{key}_interval"]
            assert low <= figures[key] <= high, (key, figures)
    assert summary["per_genre"]["Folk"]["n_judged_clips"] == 2 and summary["per_genre"]["Folk"]["real_flatness"] > 0

    noise = [mu_law_encode(np.random.default_rng(k).uniform(-0.5, 0.5, n)) for k in range(6)]
    _, noise_summary = judged.judge(noise, genres)
    assert noise_summary["flatness_ratio"] > 10 * summary["flatness_ratio"], (noise_summary, summary)
    assert noise_summary["frechet_distance"] > 3 * noise_summary["frechet_distance_floor"], noise_summary
    assert summary["frechet_distance"] < noise_summary["frechet_distance"]
    _, silence_summary = judged.judge([np.zeros(n, np.int64) + 128] * 6, genres)  # code 128: silence
    assert silence_summary["onset_rate_ratio"] == 0 and silence_summary["per_genre"]["Folk"]["clip_onset_rate"] == 0
    assert len(judged._real) == 1  # the real excerpts' statistics were computed once for both calls


def test_more_clips_than_real_excerpts_still_get_a_frechet_distance(demo_tagger, judged):
    n = 32000  # 2 s: the 6 held-out tracks of 4 s give 12 excerpts, fewer than two per clip for 12 clips
    excerpts = judge_excerpts.real_excerpts(held_out_rows(demo_tagger["data_dir"]), n)
    genres = [g for g in ("Ambient", "Electronic", "Folk") for _ in range(4)]
    clips = [excerpts[g][k % len(excerpts[g])] for k, g in enumerate(genres)]
    _, summary = judged.judge(clips, genres)
    assert summary["n_reference_excerpts"] == 12 and summary["n_floor_excerpts"] == 0, summary
    assert isinstance(summary["frechet_distance"], float) and summary["frechet_distance_floor"] is None
    assert 0.67 < summary["onset_rate_ratio"] < 1.5 and 0.5 < summary["flatness_ratio"] < 2, summary


def test_judge_clips_takes_wav_paths_or_waveforms_and_keeps_its_judge(demo_tagger, judged, tmp_path):
    n = 24000
    excerpts = judge_excerpts.real_excerpts(held_out_rows(demo_tagger["data_dir"]), n, offset=n // 2)
    genres = ["Ambient", "Electronic", "Folk"]
    waveforms = [mu_law_decode(excerpts[g][0]) for g in genres]
    paths = [write_wav(str(tmp_path / f"{g}.wav"), y, 16000) for g, y in zip(genres, waveforms)]
    judge_verdict._JUDGES.clear()
    from_paths = judge_verdict.judge_clips(paths, genres, demo_tagger["run_dir"], demo_tagger["data_dir"])
    from_waveforms = judge_verdict.judge_clips(waveforms, genres, demo_tagger["run_dir"], demo_tagger["data_dir"])
    assert len(judge_verdict._JUDGES) == 1  # one Judge (tagger, embeddings, real excerpts) for both calls
    (kept,) = judge_verdict._JUDGES.values()
    assert len(kept._real) == 1
    for clips, summary in (from_paths, from_waveforms):
        assert summary["n_clips"] == 3 and summary["genre_accuracy"] >= 2 / 3 and 0.5 < summary["flatness_ratio"] < 2
    # a 16-bit WAV gives the tagger (nearly) the codes of the waveform it was written from
    assert from_paths[1]["genre_accuracy"] == from_waveforms[1]["genre_accuracy"]
    for a, b in zip(from_paths[0], from_waveforms[0]):
        assert a["top_genre"] == b["top_genre"] and a["top_genre_probability"] == pytest.approx(
            b["top_genre_probability"], abs=0.02)


def test_a_track_s_own_audio_finds_itself_first_and_the_cache_is_reused(demo_tagger, tmp_path):
    row = next(r for r in demo_tagger["manifest"] if r["split"] == "test" and r["genre"] == "Folk")
    audio = os.path.join(demo_tagger["raw"], row["path"])
    result = run_script("run_model_predictions.py", f"--run_dir={demo_tagger['run_dir']}", f"--similar_to={audio}",
                        "--top_k=3", f"--out_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "similar.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rank", "track_id", "genre", "similarity", "source_path"] and len(rows) == 3
    assert rows[0]["track_id"] == row["track_id"] and float(rows[0]["similarity"]) > 0.9999
    assert float(rows[1]["similarity"]) < float(rows[0]["similarity"])

    result = run_script("run_model_predictions.py", f"--run_dir={demo_tagger['run_dir']}",
                        f"--similar_to={row['track_id']}", "--top_k=2", f"--out_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "cached embeddings of 18 tracks" in result.stdout
    with open(tmp_path / "similar.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and row["track_id"] not in [r["track_id"] for r in rows]  # not its own neighbour


def test_a_changed_dataset_refreshes_the_cached_embeddings(demo_tagger, loaded, tmp_path):
    data_dir = str(tmp_path / "processed")
    shutil.copytree(demo_tagger["data_dir"], data_dir)
    first = judge_tagging.dataset_embeddings(loaded, data_dir, progress=False)
    again = judge_tagging.dataset_embeddings(loaded, data_dir, progress=False)
    assert first["refreshed"] and not again["refreshed"]
    np.testing.assert_array_equal(first["embedding"], again["embedding"])
    dataset_files.drop_tracks(data_dir, [str(first["track_id"][0])])
    changed = judge_tagging.dataset_embeddings(loaded, data_dir, progress=False)
    assert changed["refreshed"] and len(changed["track_id"]) == len(first["track_id"]) - 1
    os.remove(judge_tagging.embeddings_path(loaded, data_dir))


def test_tagging_a_folder_lists_an_unreadable_file_and_tags_the_rest(demo_tagger, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    tracks = [r for r in demo_tagger["manifest"] if r["split"] == "test"]
    for row in tracks:
        shutil.copy(os.path.join(demo_tagger["raw"], row["path"]), folder / "sub" / f"{row['track_id']}.mp3")
    (folder / "broken.mp3").write_bytes(b"\xff\xfb\x90" + os.urandom(3000))
    (folder / "notes.txt").write_text("not audio, not listed")
    out = tmp_path / "out"
    result = run_script("run_model_predictions.py", f"--run_dir={demo_tagger['run_dir']}", f"--audio={folder}",
                        f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    with open(out / "tags.csv", newline="") as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values()))) == ["path", "genre", "probability", "Ambient", "Electronic", "Folk",
                                               "reason"]
    assert set(rows) == {"broken.mp3"} | {f"{r['track_id']}.mp3" for r in tracks}
    assert rows["broken.mp3"]["genre"] == "" and rows["broken.mp3"]["reason"]
    assert "broken.mp3" in result.stdout
    hits = [rows[f"{r['track_id']}.mp3"]["genre"] == r["genre"] for r in tracks]
    assert sum(hits) >= 2, rows
    for row in tracks:
        tagged = rows[f"{row['track_id']}.mp3"]
        total = sum(float(tagged[g]) for g in ("Ambient", "Electronic", "Folk"))
        assert total == pytest.approx(1, abs=1e-4) and tagged["reason"] == ""


def test_a_tagger_run_given_as_tagger_tags_as_run_dir_does(demo_tagger, tmp_path):
    row = next(r for r in demo_tagger["manifest"] if r["split"] == "test" and r["genre"] == "Folk")
    result = run_script("run_model_predictions.py", f"--tagger={demo_tagger['run_dir']}",
                        f"--audio={os.path.join(demo_tagger['raw'], row['path'])}", f"--out_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "tags.csv", newline="") as f:
        (tagged,) = list(csv.DictReader(f))
    assert list(tagged) == ["path", "genre", "probability", "Ambient", "Electronic", "Folk", "reason"]


def test_an_empty_folder_or_a_wavenet_run_is_one_line(demo_tagger, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_script("run_model_predictions.py", f"--run_dir={demo_tagger['run_dir']}",
                        f"--audio={tmp_path / 'empty'}", f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 2 and "no audio files" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "tags.csv").exists()
    result = run_script("run_model_predictions.py", f"--run_dir={demo_tagger['run_dir']}",
                        f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 2 and "is a tagger run" in result.stderr


def save_wavenet(run_dir, data_dir, genres, sample_rate):
    """A genre-conditioned tiny WaveNet with random weights saved as a stage-3 run directory."""
    wavenet = WaveNetConfig([1, 2, 4], residual_channels=8, dilation_channels=8, skip_channels=16,
                            genre_conditioning=True, genre_channels=4, n_genres=len(genres))
    os.makedirs(run_dir, exist_ok=True)
    rundir.save_model(build_wavenet(wavenet), run_dir)
    rundir.write_model_json(run_dir, wavenet_task.wavenet_model_json(wavenet, genres=genres, sample_rate=sample_rate,
                                                                   data_dir=data_dir))
    write_json_atomic(os.path.join(run_dir, "config.json"), wavenet.to_json())


def test_judging_a_wavenet_adds_the_judge_to_generation_json(demo_tagger, tmp_path):
    run_dir, out = str(tmp_path / "wavenet"), tmp_path / "generated"
    save_wavenet(run_dir, demo_tagger["data_dir"], ["Ambient", "Electronic", "Folk"], 16000)
    result = run_script("run_model_predictions.py", f"--run_dir={run_dir}", f"--out_dir={out}", "--seconds=1.5",
                        f"--judge={demo_tagger['run_dir']}")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "generation.json").read_text())
    summary = report["judge_summary"]
    for key in ("genre_accuracy", "flatness_ratio", "frechet_distance", "frechet_distance_floor", "onset_rate_ratio"):
        assert isinstance(summary[key], float), (key, summary)
    per_genre = report["judge_per_genre"]
    assert set(per_genre) == {"Ambient", "Electronic", "Folk"} and "per_genre" not in summary
    for figures in per_genre.values():
        assert figures["n_clips"] == 1 and figures["real_onset_rate"] > 0 and figures["clip_onset_rate"] >= 0
        assert len(figures["genre_accuracy_interval"]) == 2 and len(figures["flatness_ratio_interval"]) == 2
    assert summary["genre_accuracy_interval"] == judge_figures.wilson_interval(round(3 * summary["genre_accuracy"]), 3)
    assert summary["external_frechet_floor_method"] in ("disjoint", "split")
    assert summary["n_clips"] == 3 and summary["flatness_ratio"] > 1  # an untrained WaveNet: far from music
    for clip in report["clips"]:
        verdict = clip["judge"]
        assert verdict["top_genre"] in ("Ambient", "Electronic", "Folk") and verdict["asked_genre"] == clip["genre"]
        assert 0 < verdict["spectral_flatness"] <= 1 and -1 <= verdict["nearest_similarity"] <= 1
    for key in ("external_frechet_distance", "external_frechet_floor", "external_tag_similarity"):
        assert isinstance(summary[key], float), (key, summary)  # the external ear beside the project's tagger
    assert all(len(clip["judge"]["external_tags"]) == 3 for clip in report["clips"])
    last = result.stdout.strip().splitlines()[-5:]
    assert last[0].startswith("judge: genre accuracy") and "flatness ratio" in last[0] and "onset rate ratio" in last[0]
    accuracy = judge_figures.with_interval(summary["genre_accuracy"], summary["genre_accuracy_interval"])
    assert last[0].startswith(f"judge: genre accuracy {accuracy}, flatness ratio ") and "]" in accuracy
    assert "external (MTT_musicnn): Frechet distance" in last[0]
    assert last[1].startswith("per genre: Ambient accuracy") and "onset rate ratio" in last[1]
    assert all(line.split()[0].endswith(".wav") and "onsets/s" in line for line in last[2:])


def test_a_tagger_from_another_dataset_stops_before_generation(demo_tagger, tmp_path):
    run_dir, out = str(tmp_path / "wavenet"), tmp_path / "generated"
    save_wavenet(run_dir, demo_tagger["data_dir"], ["Drone", "Chirp"], 8000)
    result = run_script("run_model_predictions.py", f"--run_dir={run_dir}", f"--out_dir={out}", "--seconds=1",
                        f"--judge={demo_tagger['run_dir']}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "genres" in message and "8000 Hz" in message and "Ambient" in message
    assert not list(out.glob("*.wav")) if out.exists() else True
    result = run_script("run_model_predictions.py", f"--run_dir={run_dir}", f"--out_dir={out}", "--seconds=1",
                        f"--judge={run_dir}")
    assert result.returncode == 2 and "not a tagger" in result.stderr


def test_training_with_a_judge_adds_its_figures_to_metrics_and_samples(demo_tagger, tmp_path):
    import csv

    import run_model_training
    run_dir = tmp_path / "wavenet"
    run_model_training.main([f"--data_dir={demo_tagger['data_dir']}", f"--run_dir={run_dir}", "--dilations=1,2,4",
                             "--residual_channels=8", "--dilation_channels=8", "--skip_channels=16",
                             "--genre_conditioning=true", "--batch_size=2", "--window=256", "--valid_windows=2",
                             "--steps=4", "--eval_every=2", "--checkpoint_every=4", "--sample_every=2",
                             "--sample_seconds=1.5", f"--judge={demo_tagger['run_dir']}"])
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]
    for row in rows:
        assert 0 <= float(row["judge_genre_accuracy"]) <= 1 and float(row["judge_flatness_ratio"]) > 0
        assert float(row["judge_onset_rate_ratio"]) >= 0
    verdicts = json.loads((run_dir / "samples" / "step-4" / "samples.json").read_text())
    assert "judge" in json.dumps(verdicts) and "flatness_ratio" in json.dumps(verdicts)
    assert "external_frechet_distance" in json.dumps(verdicts) and "external_top_tags" in json.dumps(verdicts)
    assert '<section id="judge">' in (run_dir / "report.html").read_text()


def test_training_with_a_judge_of_other_genres_stops_before_training(demo_tagger, tmp_path):
    from test_training import write_tone_dataset
    data_dir = write_tone_dataset(tmp_path / "tones")
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={tmp_path / 'run'}",
                        "--dilations=1,2", "--residual_channels=8", "--dilation_channels=8", "--skip_channels=16",
                        "--batch_size=2", "--window=64", "--valid_windows=2", "--steps=2", "--eval_every=2",
                        "--sample_every=2", f"--judge={demo_tagger['run_dir']}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not fit" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "metrics.csv").exists()
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={tmp_path / 'run'}",
                        "--sample_every=0", f"--judge={demo_tagger['run_dir']}")
    assert result.returncode == 2 and "--judge=" in result.stderr and "sample_every" in result.stderr
