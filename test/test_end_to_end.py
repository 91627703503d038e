"""The four stages in order, as a user runs them, on a tiny demo corpus: every output the next stage needs."""
import csv
import json
import wave

from helpers import run_script


def test_four_stages_from_demo_corpus_to_wav_and_evaluation(tmp_path):
    raw, processed, run, generated = (tmp_path / d for d in ("raw", "processed", "run", "generated"))

    result = run_script("run_webscraper.py", f"--out_dir={raw}", "--demo_tracks_per_genre=3", "--demo_seconds=3")
    assert result.returncode == 0, result.stderr
    assert "9 new" in result.stdout

    result = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={processed}",
                        "--valid_fraction=0.2", "--test_fraction=0.2", "--split_seed=3")
    assert result.returncode == 0, result.stderr
    dataset = json.loads((processed / "dataset.json").read_text())
    assert dataset["genres"] == ["Ambient", "Electronic", "Folk"] and dataset["n_tracks"] == 9
    assert all(dataset["tracks"][s] > 0 for s in ("train", "valid", "test")), dataset["tracks"]

    result = run_script("run_model_training.py", f"--data_dir={processed}", f"--run_dir={run}",
                        "--layers_per_stack=5", "--stacks=1", "--residual_channels=8", "--dilation_channels=8",
                        "--skip_channels=16", "--genre_conditioning=true", "--genre_channels=4",
                        "--batch_size=4", "--window=256", "--steps=30", "--eval_every=10",
                        "--checkpoint_every=15", "--valid_windows=8", "--learning_rate=3e-3", "--sample_every=20",
                        "--sample_seconds=0.5")
    assert result.returncode == 0, result.stderr
    for name in ("model.keras", "model.json", "config.json", "metrics.csv", "loss.png"):
        assert (run / name).is_file(), name
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    assert float(rows[-1]["valid_bits_per_sample"]) < 8.0  # below the uniform 8 bits after 30 steps

    result = run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={generated}",
                        "--seconds=0.5", "--evaluate=true")
    assert result.returncode == 0, result.stderr
    wavs = sorted(generated.glob("*.wav"))
    assert len(wavs) == 3  # one clip per genre of the conditioned model
    for path in wavs:
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
            assert w.getnframes() >= 0.5 * 16000
        assert path.with_suffix(".png").is_file()
        assert str(path) in result.stdout or path.name in result.stdout
    assert json.loads((generated / "generation.json").read_text())
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["uniform_bits_per_sample"] == 8.0
    assert 0 < evaluation["unigram_bits_per_sample"] < 8.0
    assert 0 < evaluation["test_bits_per_sample"] < 8.0 and evaluation["n_samples"] > 0
    # the run's page: clips of steps 20 and 30 (the last) for each genre, the evaluation, the generated clips
    page = (run / "report.html").read_text(encoding="utf-8")
    for step in (20, 30):
        for genre in ("Ambient_00", "Electronic_01", "Folk_02"):
            assert f'src="samples/step-{step}/{genre}.wav"' in page and (run / "samples" / f"step-{step}").is_dir()
    assert "<h2>Evaluation</h2>" in page and "<h2>Generated clips</h2>" in page
    assert all(f"/{path.name}" in page for path in wavs)
