"""The run's report page: clips sampled while training, the page's content, and the page in a real headless
Chromium opened from file:// (every audio source and image loads, no script error, a screenshot that is not blank).
"""
import html
import io
import json
import os
import re
import shutil

import browser
import numpy as np
import pytest
from helpers import run_script
from test_training import TINY_ARGS, write_tone_dataset

from local.generate import samples
from local.report import html as report_html
from local.report import page as report_page
from local.store import rundir
from local.train import loop, runner, wavenet_task

SAMPLE_RATE = 8000  # browsers play WAV from 3,000 Hz up (the stage-3 tests' 1,000 Hz would not play)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny conditioned WaveNet trained 4 steps with clips at steps 2 and 4, then evaluated, with 2 clips
    generated into a folder outside the run directory. Returns (run_dir, generated_dir, training stdout)."""
    root = tmp_path_factory.mktemp("report")
    data_dir = write_tone_dataset(root / "data", sample_rate=SAMPLE_RATE)
    run_dir, generated = str(root / "run"), str(root / "generated")
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    trained = run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={run_dir}", *TINY_ARGS,
                         "--eval_every=2", "--checkpoint_every=4", "--stuck_check_step=0", "--steps=4",
                         "--sample_every=2", "--sample_seconds=0.5", "--genre_conditioning=true", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    predicted = run_script("run_model_predictions.py", f"--run_dir={run_dir}", f"--out_dir={generated}",
                           "--seconds=0.5", "--evaluate=true", "--threads=1", env=env)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert f"report: {os.path.join(run_dir, 'report.html')}" in predicted.stdout
    return run_dir, generated, trained.stdout


def links(page):
    """Every src= and href= of the page, unescaped."""
    return [html.unescape(m) for m in re.findall(r'(?:src|href)="([^"]*)"', page)]


def test_training_samples_clips_per_genre_at_every_n_steps_and_prints_the_cost(tiny_run):
    run_dir, _, stdout = tiny_run
    sampled = samples.read_step_samples(run_dir)
    assert [m["step"] for m in sampled] == [2, 4]
    for meta in sampled:
        assert sorted(os.listdir(meta["dir"])) == ["High_01.png", "High_01.wav", "Low_00.png", "Low_00.wav", "samples.json"]
        assert meta["n_samples"] == SAMPLE_RATE // 2 and meta["sample_rate"] == SAMPLE_RATE
        assert [c["genre"] for c in meta["clips"]] == ["Low", "High"]
    assert re.search(r"step 2: 2 clips of 0\.5 s in [\d.]+ s", stdout)
    assert re.search(r"sampling: 2 times, [\d.]+ s in all .*% of \d+ s training", stdout)
    with open(os.path.join(run_dir, "baselines.json")) as f:
        baselines = json.load(f)
    assert baselines["uniform_bits_per_sample"] == 8.0 and 0 < baselines["unigram_bits_per_sample"] < 8


def test_page_shows_settings_loss_evaluation_the_genre_by_step_table_and_generated_clips(tiny_run):
    run_dir, generated, _ = tiny_run
    with open(os.path.join(run_dir, "report.html"), encoding="utf-8") as f:
        page = f.read()
    rows = rundir.read_metrics(run_dir)
    with open(os.path.join(run_dir, "evaluation.json")) as f:
        evaluation = json.load(f)
    assert "<h2>Settings</h2>" in page and "<td>Low, High</td>" in page  # model.json's genres
    assert "<h2>Loss</h2>" in page and page.count("<polyline") == 2  # train and valid
    with open(os.path.join(run_dir, "baselines.json")) as f:
        baselines = json.load(f)
    for name in ("unigram", "uniform"):  # the dashed lines' legend
        assert f"{name} {report_html._fmt(baselines[name + '_bits_per_sample'])}</text>" in page
    assert f"<td>{report_html._fmt(rows[-1]['valid_bits_per_sample'])}</td>" in page
    assert "<h2>Evaluation</h2>" in page
    assert f"<td>{report_html._fmt(evaluation['test_bits_per_sample'])}</td>" in page
    # the genre x step table: one row per genre, one column per sampled step, a player and a picture per cell
    table = page[page.index('<table class="grid">'):]
    table = table[:table.index("</table>")]
    assert re.findall(r"<th>step (\d+)</th>", table) == ["2", "4"]
    assert re.findall(r'<th class="genre">(\w+)</th>', table) == ["Low", "High"]
    for step in (2, 4):
        for genre in ("Low_00", "High_01"):
            assert f'<audio controls preload="metadata" src="samples/step-{step}/{genre}.wav">' in table
            assert f'<img src="samples/step-{step}/{genre}.png"' in table
    # the generated clips: copied beside the page, since they were written outside the run directory
    with open(os.path.join(generated, "generation.json")) as f:
        clips = json.load(f)["clips"]
    assert "<h2>Generated clips</h2>" in page and len(clips) == 2
    for clip in clips:
        name = os.path.basename(clip["wav"])
        copied = [p for p in links(page) if p.endswith("/" + name) and p.startswith(report_page.COPIES_DIR + "/")]
        assert len(copied) == 1
        with open(os.path.join(run_dir, copied[0]), "rb") as a, open(clip["wav"], "rb") as b:
            assert a.read() == b.read()
    # static and relative: every link resolves inside the run directory; nothing from the network
    for link in links(page):
        if link.startswith("#"):
            continue
        assert "://" not in link and not link.startswith("/") and ".." not in link.split("/"), link
        assert os.path.isfile(os.path.join(run_dir, *link.split("/"))), link
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_every_text_is_escaped(tiny_run, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(tiny_run[0], run_dir)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    config["data_dir"] = '<script>alert("x")</script>&'
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f)
    meta_path = os.path.join(run_dir, "samples", "step-2", "samples.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["clips"][0]["problem"] = "<b>silent</b>"
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    page = open(report_page.write_report(run_dir), encoding="utf-8").read()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "<b>silent</b>" not in page and "&lt;b&gt;silent&lt;/b&gt;" in page


def test_judge_columns_become_a_chart_and_a_table(tiny_run, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(tiny_run[0], run_dir)
    rows = rundir.read_metrics(run_dir)
    for k, row in enumerate(rows):
        row.update(judge_genre_accuracy=0.25 * (k + 1), judge_flatness_ratio=3.5 - k)
    rundir.write_metrics(run_dir, rows)
    page = open(report_page.write_report(run_dir), encoding="utf-8").read()
    judge = page[page.index('<section id="judge">'):]
    judge = judge[:judge.index("</section>")]
    assert judge.count("<polyline") == 2
    assert [r.split("</td><td>") for r in re.findall(r"<tr><td>(.*?)</td></tr>", judge)] == \
        [[str(r["step"]), report_html._fmt(0.25 * (k + 1)), report_html._fmt(3.5 - k)] for k, r in enumerate(rows)]


def test_the_onset_rate_ratio_is_charted_and_the_generated_clips_get_a_per_genre_table(tiny_run, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(tiny_run[0], run_dir)
    rows = rundir.read_metrics(run_dir)
    for k, row in enumerate(rows):
        row.update(judge_genre_accuracy=0.5, judge_flatness_ratio=1.5, judge_onset_rate_ratio=0.125 * (k + 1))
    rundir.write_metrics(run_dir, rows)
    generation_json = os.path.join(tiny_run[1], "generation.json")
    with open(generation_json) as f:
        generation = json.load(f)
    generation["judge_summary"] = {"genre_accuracy": 0.5, "genre_accuracy_interval": [0.25, 0.75],
                                   "onset_rate_ratio": 0.8125}
    generation["judge_per_genre"] = {"Low": {"n_clips": 1, "genre_accuracy": 1.0, "clip_onset_rate": 1.75,
                                             "genre_accuracy_interval": [0.2065, 1.0], "real_onset_rate": 3.5,
                                             "onset_rate_ratio": 0.5, "onset_rate_ratio_interval": [0.25, 0.75]},
                                     "High": {"n_clips": 1, "onset_rate_ratio": 1.125}}
    copied = str(tmp_path / "generated")
    shutil.copytree(tiny_run[1], copied)
    with open(os.path.join(copied, "generation.json"), "w") as f:
        json.dump(generation, f)
    report_page.note_generation(run_dir, os.path.join(copied, "generation.json"))
    page = open(report_page.write_report(run_dir), encoding="utf-8").read()
    judge = page[page.index('<section id="judge">'):]
    judge = judge[:judge.index("</section>")]
    assert judge.count("<polyline") == 3 and "<th>onset rate ratio</th>" in judge
    assert [r.split("</td><td>")[-1] for r in re.findall(r"<tr><td>(.*?)</td></tr>", judge)] == \
        [report_html._fmt(0.125 * (k + 1)) for k in range(len(rows))]
    table = page[page.index('<table class="per-genre">'):]
    table = table[:table.index("</table>")]
    assert "<th>onset rate ratio</th>" in table and "<th>real onset rate</th>" in table
    assert "<th>flatness ratio</th>" in table  # each figure with its 95% interval, when it has one
    assert ("<tr><td>Low</td><td>1</td><td>1 [0.2065, 1]</td><td></td><td></td><td>1.75</td><td>3.5</td>"
            "<td>0.5 [0.25, 0.75]</td></tr>") in table
    assert "<tr><td>High</td><td>1</td><td></td><td></td><td></td><td></td><td></td><td>1.125</td></tr>" in table
    assert "<td>onset_rate_ratio</td><td>0.8125</td>" in page  # the summary's key-value table
    assert "<td>genre_accuracy</td><td>0.5 [0.25, 0.75]</td>" in page


def test_the_page_loads_completely_in_headless_chromium_even_when_the_folder_is_copied(tiny_run, tmp_path):
    from PIL import Image
    run_dir, generated, _ = tiny_run
    copy = str(tmp_path / "copied run")  # a space in the path: links must be quoted
    shutil.copytree(run_dir, copy)
    os.rename(generated, generated + "-moved")  # the copy must not need the original clips
    try:
        result = browser.check_page(os.path.join(copy, "report.html"), str(tmp_path / "shot.png"))
    finally:
        os.rename(generated + "-moved", generated)
    assert result["broken"] == [] and result["errors"] == []
    tags = [m["tag"] for m in result["media"]]
    assert tags.count("audio") == 2 * 2 + 2 and tags.count("img") == 2 * 2 + 2  # 2 genres x 2 steps + 2 generated
    assert all(m["src"].startswith("file://") and "copied%20run" in m["src"] for m in result["media"])
    assert result["title"] == "run: Waveforms run report"  # the page as written, not re-rendered
    pixels = np.asarray(Image.open(io.BytesIO(result["screenshot"])).convert("RGB"))
    assert pixels.shape[1] == 1280 and pixels.shape[0] > 900
    assert (pixels.std(axis=(0, 1)) > 20).all() and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    assert os.path.isfile(tmp_path / "shot.png")


def test_the_browser_check_reports_broken_media_and_script_errors(tmp_path):
    y = (0.3 * np.sin(np.arange(SAMPLE_RATE) * 0.2)).astype(np.float32)
    from local.audio.encoding import write_wav
    write_wav(str(tmp_path / "fine.wav"), y, SAMPLE_RATE)
    write_wav(str(tmp_path / "slow.wav"), y, 1000)  # a rate browsers do not play
    (tmp_path / "page.html").write_text(
        '<html><head><title>t</title></head><body><audio controls src="fine.wav"></audio>'
        '<audio controls src="slow.wav"></audio><audio controls src="gone.wav"></audio><img src="gone.png">'
        "<script>undefinedFunction()</script></body></html>")
    result = browser.check_page(str(tmp_path / "page.html"))
    assert sorted((m["tag"], m["src"].rsplit("/", 1)[1]) for m in result["broken"]) == \
        [("audio", "gone.wav"), ("audio", "slow.wav"), ("img", "gone.png")]
    assert any("undefinedFunction" in e for e in result["errors"])
    assert any("gone.png" in e for e in result["errors"])


def test_step_samples_use_one_seed_per_step_and_replace_a_step_whole(tmp_path):
    import keras

    from local.model.wavenet import WaveNetConfig, build_wavenet
    keras.utils.set_random_seed(0)
    wavenet = WaveNetConfig([1, 2, 4], residual_channels=8, dilation_channels=8, skip_channels=16)
    model = build_wavenet(wavenet)
    run_dir = str(tmp_path)
    keys = dict(genres=["Rock", "Jazz"], sample_rate=SAMPLE_RATE, seed=3)  # unconditioned: one clip per step
    first, seconds_taken = samples.write_step_samples(model, wavenet, run_dir, 10, seconds=0.25, **keys)
    second, _ = samples.write_step_samples(model, wavenet, run_dir, 20, seconds=0.25, **keys)
    assert [os.path.relpath(p, run_dir) for p in first + second] == \
        [os.path.join("samples", "step-10", "clip_00.wav"), os.path.join("samples", "step-20", "clip_00.wav")]
    assert seconds_taken > 0
    with open(first[0], "rb") as a, open(second[0], "rb") as b:
        assert a.read() == b.read()  # same weights, same seed: the same clip
    other, _ = samples.write_step_samples(model, wavenet, run_dir, 10, seconds=0.5,  # step 10 again: replaced
                                          **dict(keys, seed=4))
    assert sorted(os.listdir(os.path.dirname(other[0]))) == ["clip_00.png", "clip_00.wav", "samples.json"]
    assert samples.read_step_samples(run_dir)[0]["n_samples"] == SAMPLE_RATE // 2
    assert not [n for n in os.listdir(os.path.join(run_dir, "samples")) if n.startswith(".tmp-")]
    samples.record_judgement(run_dir, 20, {"": {"top_genre": "Jazz", "top_probability": 0.75}},
                             {"genre_accuracy": 0.5})
    judged = samples.read_step_samples(run_dir)[1]
    assert judged["clips"][0]["judge"] == {"top_genre": "Jazz", "top_probability": 0.75}
    assert judged["judge_summary"] == {"genre_accuracy": 0.5}
    page = open(report_page.write_report(run_dir), encoding="utf-8").read()
    assert "top_genre: Jazz<br>top_probability: 0.75" in page
    os.makedirs(os.path.join(run_dir, "samples", ".tmp-999999999-step-30"))  # left by a killed run
    samples.truncate_samples(run_dir, 10)  # a resume from step 10 redoes step 20
    assert os.listdir(os.path.join(run_dir, "samples")) == ["step-10"]
    assert [samples.is_sample_step(s, 3) for s in (1, 3, 9, 10)] == [False, True, True, False]
    assert not samples.is_sample_step(10, 0)


def judge_by_loudness(paths, asked_genres):
    """A judge computed from the clips themselves: each clip's RMS; 'accuracy' = the share not silent."""
    import wave
    loudness = []
    for path in paths:
        with wave.open(path) as w:
            y = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
        loudness.append(float(np.sqrt(np.mean(np.square(y)))))
    per_clip = [{"rms": r, "asked": g} for r, g in zip(loudness, asked_genres)]
    return per_clip, {"genre_accuracy": float(np.mean([r > 1e-3 for r in loudness])),
                      "flatness_ratio": float(np.mean(loudness)), "n_clips": len(paths)}


@pytest.mark.slow
def test_training_callbacks_sample_at_multiples_and_the_end_judge_write_the_page_and_resume_drops_clips(tmp_path,
                                                                                                        capsys):
    from local.model.wavenet import WaveNetConfig
    from local.store import dataset_files
    data_dir, run_dir = write_tone_dataset(tmp_path / "data"), str(tmp_path / "run")
    config = {"batch_size": 4, "window": 64, "learning_rate": 1e-3, "grad_clip": 1.0, "cache_tracks": 2,
              "prefetch_batches": 2, "valid_windows": 4, "seed": 0}
    wavenet = WaveNetConfig([1, 2, 4], residual_channels=8, dilation_channels=8, skip_channels=16,
                            genre_conditioning=True, n_genres=2)
    train_tracks, valid_tracks = runner.usable_splits(dataset_files.read_index(data_dir), wavenet.receptive_field,
                                                        64, data_dir, 1000)
    task = wavenet_task.wavenet_task(wavenet, train_tracks=train_tracks, valid_tracks=valid_tracks, config=config)
    model_json = wavenet_task.wavenet_model_json(wavenet, genres=["Low", "High"], sample_rate=1000, data_dir=data_dir)
    with rundir.locked(run_dir, model_json):
        rundir.write_run_files(run_dir, config, model_json)
        assert report_page.report_callbacks(task.model, run_dir, model_kind="tagger", sample_every=4, sample_seconds=0.1,
                                       seed=0) == [report_page.page_callback]  # a tagger gets the page, no clips
        callbacks = report_page.report_callbacks(task.model, run_dir, sample_every=3, sample_seconds=0.1, seed=0,
                                            eval_every=2, judge_clips=judge_by_loudness)
        assert "clips every 4 steps" in capsys.readouterr().out  # 3 is rounded to a multiple of eval_every
        loop.train(task, run_dir, loop.resume(run_dir, task.model, task.optimizer), config=config, steps=6,
                       eval_every=2, checkpoint_every=4, keep_checkpoints=3, on_evaluate=callbacks)
        sampled = samples.read_step_samples(run_dir)
        assert [m["step"] for m in sampled] == [4, 6]  # every 4 steps and the last one, not steps 2 or 3
        rows = rundir.read_metrics(run_dir)
        assert [r["step"] for r in rows] == [2, 4, 6] and np.isnan(rows[0]["judge_genre_accuracy"])
        for row, meta in zip(rows[1:], sampled):
            per_clip, summary = judge_by_loudness([os.path.join(meta["dir"], c["wav"]) for c in meta["clips"]],
                                                  ["Low", "High"])
            assert row["judge_genre_accuracy"] == pytest.approx(summary["genre_accuracy"], abs=1e-5)
            assert row["judge_flatness_ratio"] == pytest.approx(summary["flatness_ratio"], rel=1e-4)
            assert [c["judge"] for c in meta["clips"]] == per_clip and meta["judge_summary"] == summary
        with open(os.path.join(run_dir, "report.html"), encoding="utf-8") as f:
            page = f.read()  # written by the last callback, before its metrics row was: the row is on the page
        assert "Waveforms run report, step 6;" in page and '<section id="judge">' in page
        assert 'src="samples/step-6/High_01.wav"' in page
        shutil.rmtree(rundir.latest_checkpoint(run_dir)[1])  # resuming from step 4 redoes steps 5 and 6
        loop.resume(run_dir, task.model, task.optimizer)
        assert [m["step"] for m in samples.read_step_samples(run_dir)] == [4]


@pytest.mark.parametrize("key,value", [("sample_every", -1), ("sample_seconds", -1.0)])
def test_sample_keys_are_refused_in_one_line_naming_the_key(key, value):
    from local.core.config import ConfigError
    config = {"eval_every": 3, "sample_every": 1000, "sample_seconds": 2.0, "steps": 20000}
    runner.check_config(config)  # not a multiple of eval_every: rounded, not refused
    runner.check_config(dict(config, sample_every=0, sample_seconds=0.0))  # 0 = no clips
    with pytest.raises(ConfigError) as refused:
        runner.check_config(dict(config, **{key: value}))
    message = str(refused.value)
    assert message.startswith(f"--{key}={value}: must be at least 0") and "\n" not in message


def test_sample_every_is_rounded_to_the_nearest_multiple_of_eval_every():
    assert samples.sampling_interval(1000, 250) == (1000, "")
    assert samples.sampling_interval(0, 250) == (0, "")
    every, note = samples.sampling_interval(1000, 300)
    assert every == 900 and note == ("note: --sample_every=1000 is not a multiple of eval_every (300): clips every "
                                     "900 steps (they are sampled at evaluations)")
    assert samples.sampling_interval(100, 250)[0] == 250 and samples.sampling_interval(15, 10)[0] == 20
