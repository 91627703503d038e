"""The pretrained taggers (local/judge/pretrained.py), tagging with them (local/judge/pretrained_tags.py) and the external ear
of the judge (local/judge/external.py), on audio the project synthesizes and on the demo dataset."""
import contextlib
import csv
import io
import json
import os

import numpy as np
import pytest

from local.audio.encoding import write_wav
from local.audio.waveform import mu_law_encode
from local.collect import demo_corpus
from local.judge import commands, figures, pretrained
from local.judge import excerpts as judge_excerpts
from local.judge import external as external_judge
from local.store import dataset_files

SR = pretrained.SAMPLE_RATE


@pytest.fixture(scope="module")
def mtt():
    return pretrained.load("mtt")


def drum_loop(seconds=9.0, bpm=124, seed=0):
    """A drum machine: a synthesized kick on every beat, an off-beat hi-hat, a snare on beats 2 and 4; 16 kHz."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR))
    beat = 60.0 / bpm
    t = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 * t + 60 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 14)
    n = int(0.05 * SR)
    hat = np.diff(rng.uniform(-1, 1, n) * np.exp(-np.arange(n) / (0.008 * SR)), prepend=0.0)
    ts = np.arange(int(0.18 * SR)) / SR
    snare = (0.6 * rng.uniform(-1, 1, len(ts)) + 0.4 * np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts * 25)
    for k, start in enumerate(np.arange(0, seconds, beat)):
        s = int(start * SR)
        demo_corpus.add(out, s, 0.9 * kick)
        demo_corpus.add(out, s + int(beat / 2 * SR), 0.3 * hat)
        if k % 2:
            demo_corpus.add(out, s, 0.5 * snare)
    return (0.89 * out / np.abs(out).max()).astype(np.float32)


def synth_pad(seconds=9.0, seed=0):
    """A sustained synthesizer pad: an A minor chord of detuned saws through a gentle lowpass; 16 kHz."""
    from scipy.signal import lfilter
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for note in (57, 60, 64, 69):
        for detune in (0.995, 1.0, 1.005):
            out += 2.0 * ((demo_corpus.midi_to_hz(note) * detune * t + rng.uniform()) % 1.0) - 1.0
    out = lfilter([0.2], [1, -0.8], out) * np.minimum(1, t / 0.5)
    return (0.89 * out / np.abs(out).max()).astype(np.float32)


def test_the_frozen_graph_equals_the_checkpoint_as_trained_and_tensorflow_stays_eager(mtt):
    import tensorflow as tf
    assert pretrained.load("MTT_musicnn") is mtt  # loaded once per process, under either name
    assert len(mtt.labels) == 50 and mtt.embedding_size == 200 and tf.executing_eagerly()
    batch = np.random.default_rng(0).uniform(0, 4, (3, pretrained.PATCH_FRAMES, pretrained.N_MELS)).astype(np.float32)
    graph, session = pretrained.restored_session(pretrained.checkpoint_folder("mtt"))
    with session:
        fetched = session.run([pretrained.PROBABILITIES_TENSOR, pretrained.EMBEDDING_TENSORS["musicnn"]],
                              {pretrained.INPUT_TENSOR: batch, pretrained.TRAINING_TENSOR: False})
    for ours, theirs in zip(mtt.run(batch), fetched):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert tf.executing_eagerly()


def test_the_front_end_cuts_3_second_patches_and_repeat_pads_a_short_clip():
    import librosa
    assert pretrained.PATCH_FRAMES == librosa.time_to_frames(3, sr=SR, n_fft=512, hop_length=256) + 1  # musicnn's
    y = demo_corpus.synthesize_track("Folk", 0, seconds=7.0, sample_rate=SR)
    cut = pretrained.patches(y)
    assert cut.shape == (2, 187, 96) and cut.dtype == np.float32
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=256, n_mels=96, pad_mode="reflect").T
    np.testing.assert_allclose(cut[1], np.log10(10000 * mel[187:374].astype(np.float16).astype(np.float32) + 1),
                               rtol=1e-6)
    short = y[:SR]  # 1 s: repeated three times and a bit
    np.testing.assert_array_equal(pretrained.patches(short), pretrained.patches(np.tile(short, 3)[:pretrained.PATCH_SAMPLES]))
    assert pretrained.patches(y, max_patches=1).shape == (1, 187, 96)


def test_a_drum_loop_sounds_like_drums_and_a_synth_pad_like_ambient(mtt):
    (_, loop), (_, pad) = mtt.analyze([drum_loop(), synth_pad()])
    loop, pad = (dict(zip(mtt.labels, p.mean(axis=0))) for p in (loop, pad))
    for tag in ("drums", "beat", "techno"):
        assert loop[tag] > 3 * pad[tag], (tag, loop[tag], pad[tag])
    for tag in ("ambient", "slow"):
        assert pad[tag] > 3 * loop[tag], (tag, pad[tag], loop[tag])
    # "synth" alone does not separate them (the drum machine is synthesized too): the three tags together do
    assert sum(pad[t] for t in ("ambient", "synth", "slow")) > 2 * sum(loop[t] for t in ("ambient", "synth", "slow"))


def test_white_noise_is_farther_from_the_demo_than_its_held_out_excerpts(demo_dataset):
    ear = external_judge.ExternalJudge(demo_dataset["data_dir"])
    n = 24000  # 1.5 s clips at the demo's 16 kHz
    rows = [r for r in dataset_files.read_index(demo_dataset["data_dir"])
            if r["split"] in ("valid", "test")]
    excerpts = judge_excerpts.real_excerpts(rows, n, offset=n // 2)  # not the judge's own reference excerpts
    genres = [g for g in demo_corpus.DEMO_GENRES for _ in range(2)]
    real = [excerpts[g][k] for g, k in zip(genres, [0, 1] * 3)]
    per_clip, summary = ear.judge(real, genres)
    noise = [mu_law_encode(np.random.default_rng(k).uniform(-0.5, 0.5, n)) for k in range(6)]
    noise_clips, noise_summary = ear.judge(noise, genres)
    assert noise_summary["external_frechet_distance"] > 2 * summary["external_frechet_distance"], (noise_summary,
                                                                                                  summary)
    assert noise_summary["external_frechet_distance"] > 2 * noise_summary["external_frechet_floor"]
    assert summary["external_tag_similarity"] > 0.9 > noise_summary["external_tag_similarity"]
    assert set(summary["external_tag_similarity_per_genre"]) == set(demo_corpus.DEMO_GENRES)
    assert all(v > 0.8 for v in summary["external_tag_similarity_per_genre"].values()), summary
    matrix = summary["external_tag_similarity_matrix"]  # real Ambient is told from real Electronic by its tags
    assert matrix["Ambient"]["Ambient"] > matrix["Ambient"]["Electronic"], matrix
    assert summary["external_genres_closest_to_their_own"] >= 2 / 3, matrix
    assert len(ear._real) == 1  # the real excerpts were tagged once for both calls
    for clip in per_clip + noise_clips:
        assert len(clip["external_tags"]) == 3 and clip["external_top_tags"].count(",") == 2
    assert "guitar" in per_clip[4]["external_tags"]  # a Folk excerpt: plucked strings


def test_the_external_floor_is_a_number_when_clips_outnumber_held_out_excerpts(demo_dataset):
    ear = external_judge.ExternalJudge(demo_dataset["data_dir"])
    n = 32000  # 2 s: the 6 held-out tracks of 4 s give 12 excerpts, fewer than two per clip for 12 clips
    rows = [r for r in dataset_files.read_index(demo_dataset["data_dir"]) if r["split"] in ("valid", "test")]
    excerpts = judge_excerpts.real_excerpts(rows, n)
    genres = [g for g in demo_corpus.DEMO_GENRES for _ in range(4)]
    _, summary = ear.judge([excerpts[g][k % len(excerpts[g])] for k, g in enumerate(genres)], genres)
    assert isinstance(summary["external_frechet_floor"], float), summary  # was None: no disjoint set of 12
    assert summary["external_frechet_floor_method"] == "split", summary
    assert summary["n_external_floor_excerpts"] == 6 and summary["n_external_reference_excerpts"] == 6
    noise = [mu_law_encode(np.random.default_rng(k).uniform(-0.5, 0.5, n)) for k in range(12)]
    _, noise_summary = ear.judge(noise, genres)
    assert noise_summary["external_frechet_floor"] == summary["external_frechet_floor"]  # the same real sets
    # like with like: noise's distance at the floor set's size is far above the floor, real audio's is not
    assert noise_summary["external_frechet_distance_at_floor_size"] > 2 * noise_summary["external_frechet_floor"]
    assert summary["external_frechet_distance_at_floor_size"] < noise_summary["external_frechet_distance_at_floor_size"]
    from local.judge.verdict import summary_line
    assert ", 6 excerpts, split; clips" in summary_line({**summary, "n_clips": 12})


def run_stage4(*args):
    import run_model_predictions
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        run_model_predictions.main(list(args))
    return stdout.getvalue()


def test_tagging_files_writes_top_tags_and_every_tag_score(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_wav(str(folder / "drums.wav"), drum_loop(seconds=7.0), SR)
    write_wav(str(folder / "pad.wav"), synth_pad(seconds=2.0), SR)  # shorter than a patch
    (folder / "broken.mp3").write_bytes(b"\xff\xfb\x90" + os.urandom(3000))
    printed = run_stage4("--tagger=mtt", f"--audio={folder}", f"--out_dir={tmp_path / 'out'}")
    with open(tmp_path / "out" / "tags.csv", newline="") as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}
    assert list(rows["drums.wav"])[:3] == ["path", "tag_1", "probability_1"]
    assert rows["drums.wav"]["tag_1"] in ("beat", "techno", "drums") and rows["drums.wav"]["n_patches"] == "2"
    assert rows["pad.wav"]["n_patches"] == "1" and rows["broken.mp3"]["tag_1"] == "" and rows["broken.mp3"]["reason"]
    assert "broken.mp3" in printed and "tagged 2 of 3 files" in printed
    with open(tmp_path / "out" / "tag_scores.csv", newline="") as f:
        scores = list(csv.DictReader(f))
    assert list(scores[0]) == ["path", *pretrained.MTT_LABELS] and len(scores) == 2
    drums = next(r for r in scores if r["path"].endswith("drums.wav"))
    assert float(drums[rows["drums.wav"]["tag_1"]]) == pytest.approx(float(rows["drums.wav"]["probability_1"]))


def test_similar_tracks_by_pretrained_embeddings_find_a_track_s_own_audio_first(demo_dataset, tmp_path):
    row = next(r for r in demo_dataset["manifest"] if r["split"] == "test" and r["genre"] == "Electronic")
    audio = os.path.join(demo_dataset["raw"], row["path"])
    run_stage4("--tagger=msd", f"--similar_to={audio}", f"--data_dir={demo_dataset['data_dir']}", "--top_k=3",
               f"--out_dir={tmp_path}")
    with open(tmp_path / "similar.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["track_id"] == row["track_id"] and float(rows[0]["similarity"]) > 0.99
    assert [r["genre"] for r in rows] == ["Electronic"] * 3  # MSD_musicnn never saw these genres


def test_user_mistakes_with_a_pretrained_tagger_get_one_line(tmp_path):
    import run_model_predictions
    from local.core.config import StageError
    base = run_model_predictions.configure(dict(vars(run_model_predictions)), [f"--out_dir={tmp_path}"])
    for changes, words in (({"tagger": "mtt"}, "pass --audio"),
                           ({"tagger": "nosuch", "audio": str(tmp_path)}, "neither a pretrained tagger")):
        with pytest.raises(StageError, match=words) as caught:
            run_model_predictions.check_config(dict(base, **changes))
        assert "\n" not in str(caught.value)
    with pytest.raises(StageError, match="no such file"):
        commands.pretrained_tag_command("mtt", str(tmp_path / "missing.mp3"), str(tmp_path))


@pytest.mark.slow  # ~80 s with a cold numba cache (the generator kernel compiles), 3 s warm
def test_judge_mtt_alone_judges_a_wavenet_s_clips_with_the_external_ear(demo_dataset, tmp_path):
    from test_judge import save_wavenet
    run_dir, out = str(tmp_path / "wavenet"), tmp_path / "generated"
    save_wavenet(run_dir, demo_dataset["data_dir"], demo_corpus.DEMO_GENRES, 16000)
    printed = run_stage4(f"--run_dir={run_dir}", f"--out_dir={out}", "--seconds=1.5", "--judge=mtt")
    report = json.loads((out / "generation.json").read_text())
    summary = report["judge_summary"]
    for key in ("external_frechet_distance", "external_frechet_floor", "external_tag_similarity"):
        assert isinstance(summary[key], float), (key, summary)
    assert summary["external_frechet_distance"] > summary["external_frechet_floor"]  # an untrained WaveNet
    assert "genre_accuracy" not in summary and summary["n_clips"] == 3
    for clip in report["clips"]:
        assert len(clip["judge"]["external_tags"]) == 3 and clip["judge"]["asked_genre"] == clip["genre"]
    assert "external (MTT_musicnn): Frechet distance" in printed
    page = (tmp_path / "wavenet" / "report.html").read_text()
    assert report["clips"][0]["judge"]["external_top_tags"] in page


def test_the_fast_frechet_trace_equals_scipy_s_matrix_square_root():
    from scipy import linalg
    rng = np.random.default_rng(0)
    for n, m, dims in ((12, 64, 200), (3, 17, 200), (400, 400, 4)):  # few clips in 200 dimensions: singular
        s_a = np.cov(rng.normal(size=(n, dims)) @ rng.normal(size=(dims, dims)), rowvar=False)
        s_b = np.cov(rng.normal(size=(m, dims)) @ rng.normal(size=(dims, dims)), rowvar=False)
        expected = np.trace(np.real(linalg.sqrtm(s_a @ s_b)))
        assert figures.trace_sqrt_product(s_a, s_b) == pytest.approx(expected, rel=1e-6)
