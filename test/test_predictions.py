"""Stage 4 end to end: run_model_predictions.py on a saved tiny run directory and a real Parquet dataset."""
import json
import os
import shutil
import wave

import numpy as np
import pytest
from helpers import run_script, tone

from local.audio.waveform import mu_law_decode, mu_law_encode, to_pcm16
from local.core.fileio import write_json_atomic
from local.generate import fast
from local.generate import weights as generate_weights
from local.judge import evaluation
from local.model.wavenet import WaveNetConfig, build_wavenet, read_run_model
from local.store import dataset_files, rundir
from local.train import wavenet_task

GENRES = ["Drone", "Chirp"]
SAMPLE_RATE = 8000  # Hz: not the usual 16 kHz, so a WAV at the wrong rate shows
DILATIONS = [1, 2, 4, 8]


def save_run(run_dir, data_dir, seed=0, constant_code=None, extra=None):
    """A genre-conditioned tiny WaveNet with random weights saved as a stage-3 run directory (``extra``: more model
    keys, e.g. a renderer's plan_*)."""
    config = {"dilations": DILATIONS, "filter_width": 3, "residual_channels": 8, "dilation_channels": 8,
              "skip_channels": 16, "quantization_channels": 256, "genre_conditioning": True, "genre_channels": 4,
              **(extra or {})}
    wavenet = WaveNetConfig.from_config(config, n_genres=len(GENRES))
    model = build_wavenet(wavenet)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    if constant_code is not None:  # a broken model: one code overwhelms every other
        kernel, bias = model.get_layer("postprocess2").get_weights()
        bias[constant_code] = 1e4
        model.get_layer("postprocess2").set_weights([kernel * 0, bias])
    os.makedirs(run_dir, exist_ok=True)
    rundir.save_model(model, run_dir)
    rundir.write_model_json(run_dir, wavenet_task.wavenet_model_json(wavenet, genres=GENRES, sample_rate=SAMPLE_RATE,
                                                                   data_dir=data_dir))
    write_json_atomic(os.path.join(run_dir, "config.json"), config)
    return model


def save_dataset(data_dir):
    """Two genres x (2 train + 1 test) short tracks of mu-law coded tones, written with the real store."""
    writer = dataset_files.PartWriter(data_dir)
    rows = []
    for genre_id, genre in enumerate(GENRES):
        for k, split in enumerate(["train", "train", "test"]):
            y = tone(seconds=0.1 + 0.02 * k, sample_rate=SAMPLE_RATE, freq_hz=200.0 * (1 + genre_id) + 30 * k,
                     seed=k)[:, 0]
            codes = mu_law_encode(y)
            row = {"track_id": f"{genre.lower()}-{k}", "genre": genre, "genre_id": genre_id, "split": split,
                   "sample_rate": SAMPLE_RATE, "n_samples": len(codes), "codes": codes.tobytes(),
                   "source_path": f"{genre}/{k}.wav", "source_sha256": "0" * 64}
            writer.write(row)
            rows.append(row)
    writer.close()
    write_json_atomic(os.path.join(data_dir, "dataset.json"),
                      dataset_files.summarize(rows, SAMPLE_RATE, 256, GENRES))
    return rows


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage4")
    data_dir, run_dir = str(root / "processed"), str(root / "run")
    rows = save_dataset(data_dir)
    model = save_run(run_dir, data_dir)
    return {"root": root, "data_dir": data_dir, "run_dir": run_dir, "rows": rows, "model": model}


def read_wav(path):
    with wave.open(path, "rb") as f:
        assert f.getnchannels() == 1 and f.getsampwidth() == 2
        return f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")


def test_one_clip_per_genre_with_wavs_spectrograms_and_report(project):
    out = str(project["root"] / "generated")
    result = run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", f"--out_dir={out}",
                        "--seconds=0.25", "--seed=3")
    assert result.returncode == 0, result.stderr
    report = json.load(open(os.path.join(out, "generation.json")))
    assert [c["genre"] for c in report["clips"]] == GENRES
    n = int(0.25 * SAMPLE_RATE)
    for clip in report["clips"]:
        rate, pcm = read_wav(clip["wav"])
        assert rate == SAMPLE_RATE and len(pcm) == n
        assert np.abs(pcm.astype(np.int32)).max() <= 32767 and pcm.std() > 0
        assert os.path.getsize(clip["png"]) > 1000
        assert clip["wav"] in result.stdout  # the paths are printed
        assert clip["samples_per_second"] > 0 and clip["n_samples"] == n and clip["seed"] == 3
    assert json.load(open(os.path.join(out, "config.json")))["seconds"] == 0.25
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]

    # The same seed gives the same clips; another seed other clips.
    again = str(project["root"] / "again")
    other = str(project["root"] / "other")
    assert run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", f"--out_dir={again}",
                      "--seconds=0.25", "--seed=3").returncode == 0
    assert run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", f"--out_dir={other}",
                      "--seconds=0.25", "--seed=4").returncode == 0
    first = read_wav(os.path.join(out, "Chirp_01.wav"))[1]
    assert (read_wav(os.path.join(again, "Chirp_01.wav"))[1] == first).all()
    assert (read_wav(os.path.join(other, "Chirp_01.wav"))[1] != first).any()


def test_clips_equal_the_kernel_continuing_the_prime_track(project):
    out = str(project["root"] / "primed")
    result = run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", f"--out_dir={out}",
                        "--seconds=0.05", "--prime_track=chirp-1", "--prime_seconds=0.06", "--streams=2",
                        "--temperature=0.7", "--seed=9")
    assert result.returncode == 0, result.stderr
    clips = json.load(open(os.path.join(out, "generation.json")))["clips"]
    assert [c["genre"] for c in clips] == ["Chirp", "Chirp"]  # the prime track's genre
    track = next(r for r in project["rows"] if r["track_id"] == "chirp-1")
    prime = np.frombuffer(track["codes"], np.uint8)[:int(0.06 * SAMPLE_RATE)]
    # the same generation in this process, from the saved model's weights
    wavenet = read_run_model(project["run_dir"])[0]
    weights = generate_weights.fold_weights(project["model"], wavenet)
    state = fast.initial_state(weights, [1, 1], seed=9)
    fast.prime_state(project["model"], weights, state, prime)
    codes = fast.generate(weights, state, int(0.05 * SAMPLE_RATE), temperature=0.7)
    for k, clip in enumerate(clips):
        _, pcm = read_wav(clip["wav"])
        expected = to_pcm16(mu_law_decode(np.concatenate([prime, codes[k]])))
        assert (pcm == expected).all()


def test_evaluation_matches_a_direct_full_pass_and_the_baselines(project):
    result = run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", "--seconds=0",
                        "--evaluate=true", f"--data_dir={project['data_dir']}", "--eval_window=100",
                        "--eval_batch_positions=500")
    assert result.returncode == 0, result.stderr
    report = json.load(open(os.path.join(project["run_dir"], "evaluation.json")))
    model = project["model"]
    wavenet = read_run_model(project["run_dir"])[0]
    bits, n = 0.0, 0
    train_counts = np.zeros(256)
    for row in project["rows"]:
        codes = np.frombuffer(row["codes"], np.uint8)
        if row["split"] == "train":
            train_counts += np.bincount(codes, minlength=256)
            continue
        logits = model.predict_on_batch(wavenet.model_inputs(codes[None, :-1].astype(np.int32),
                                                             np.array([GENRES.index(row["genre"])], np.int32)))
        bits -= evaluation.log2_softmax(logits[0])[np.arange(len(codes) - 1), codes[1:]].sum()
        n += len(codes) - 1
    assert report["n_samples"] == n
    assert report["test_bits_per_sample"] == pytest.approx(bits / n, abs=1e-4)
    assert report["uniform_bits_per_sample"] == 8.0
    p = train_counts[train_counts > 0] / train_counts.sum()
    assert report["unigram_bits_per_sample"] == pytest.approx(float(-(p * np.log2(p)).sum()), abs=1e-9)
    assert "unigram (train codes histogram entropy)" in result.stdout


@pytest.mark.parametrize("n_codes,field,window", [(1000, 16, 100), (2, 16, 100), (117, 30, 7), (50, 1, 5)])
def test_windows_score_every_position_once_with_a_full_context(n_codes, field, window):
    windows = evaluation.track_windows(n_codes, field, window)
    scored = np.concatenate([np.arange(a, b) for _, a, b in windows])
    assert (scored == np.arange(n_codes - 1)).all()
    for start, first, stop in windows:
        assert stop - start <= field - 1 + window  # fits the fixed input length
        assert start == 0 or first - start == field - 1  # every scored output sees its whole receptive field


def test_constant_output_is_warned_about_by_clip_name(project):
    run_dir = str(project["root"] / "broken-run")
    save_run(run_dir, project["data_dir"], constant_code=128)
    out = str(project["root"] / "broken")
    result = run_script("run_model_predictions.py", f"--run_dir={run_dir}", f"--out_dir={out}",
                        "--seconds=0.05", "--genre=Drone")
    assert result.returncode == 0, result.stderr
    assert f"warning: generated clip {os.path.join(out, 'Drone_00.wav')} is constant" in result.stdout


def test_user_mistakes_get_one_line(project, tmp_path):
    unknown = run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", "--genre=Polka",
                         f"--out_dir={tmp_path}")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "Polka" in unknown.stderr and "Drone, Chirp" in unknown.stderr
    missing = run_script("run_model_predictions.py", f"--run_dir={tmp_path}", f"--out_dir={tmp_path}")
    assert missing.returncode == 2 and os.path.join(str(tmp_path), "model.json") in missing.stderr
    os.makedirs(tmp_path / "half")
    with open(tmp_path / "half" / "model.json", "w") as f:
        f.write("{}")
    half = run_script("run_model_predictions.py", f"--run_dir={tmp_path / 'half'}")
    assert half.returncode == 2 and "model.keras is missing" in half.stderr
    track = run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", "--prime_track=nope",
                       f"--out_dir={tmp_path}")
    assert track.returncode == 2 and "nope" in track.stderr and "drone-0" in track.stderr
    other = tmp_path / "other-codes"
    shutil.copytree(project["data_dir"], other)
    info = json.load(open(other / "dataset.json"))
    write_json_atomic(str(other / "dataset.json"), {**info, "quantization_channels": 128})
    mismatch = run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", f"--data_dir={other}",
                          "--evaluate=true", "--seconds=0")
    assert mismatch.returncode == 2 and "128-level codes" in mismatch.stderr and "Traceback" not in mismatch.stderr


def test_evaluation_with_a_context_stack_equals_one_pass_over_the_silence_padded_track():
    """Issue 18: windows start on frame boundaries of the padded track, so short windows (many, their starts
    off the frames) score exactly what one pass over the whole track scores, each with a full context."""
    config = WaveNetConfig(dilations=[1, 2, 4], residual_channels=8, dilation_channels=6, skip_channels=12,
                           quantization_channels=32, genre_conditioning=True, n_genres=2, context_rate=5,
                           context_dilations=[1, 2, 4], context_channels=4)
    model = build_wavenet(config)
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.4, weight.shape).astype("float32"))
    tracks = [(rng.integers(0, 32, n).astype(np.uint8), g) for n, g in ((203, 1), (37, 0), (2, 1))]
    scores = evaluation.score_tracks(model, config, tracks, window=13, batch_positions=300)
    for (codes, genre), (bits, n) in zip(tracks, scores):
        logits = model.predict_on_batch(config.model_inputs(config.pad_context(codes[None, :-1].astype(np.int32)),
                                                            np.array([genre], np.int32)))
        assert n == len(codes) - 1
        assert bits == pytest.approx(-evaluation.log2_softmax(logits[0])[np.arange(n), codes[1:]].sum(), abs=1e-3)
