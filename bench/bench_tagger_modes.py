"""Benchmark the genre tagger's modes on a library as a new user meets it: two thirds of each genre's tracks go to
stage 2, the other third is kept aside and tagged with --audio's code (local/judge/verdict.py tag_files) by each tagger.

Modes: ``waveform_plain`` (the CNN on samples, windows drawn in proportion to track length: the old behaviour),
``waveform`` (the same, every genre drawn equally often: tagger_balanced=true) and ``mtt`` (a head on the
pretrained MagnaTagATune embeddings: tagger_features=mtt).

Run:
  .venv/bin/python bench/bench_tagger_modes.py                       # the demo corpus, 40/15/30 tracks of 10 s
  .venv/bin/python bench/bench_tagger_modes.py --raw_dir=~/Music/three_genres --work_dir=data/modes
  .venv/bin/python bench/bench_tagger_modes.py --modes=mtt --demo_counts=24,8,4
  .venv/bin/python bench/bench_tagger_modes.py --demo_blend=0.8 --work_dir=data/modes_blend   # a harder library

raw_dir: a folder of genre folders of audio files (empty = synthesize the demo corpus with ``demo_counts`` tracks
of ``demo_seconds`` per genre, Ambient, Electronic, Folk). Prints one JSON line: the library (tracks per genre,
stage-2 split counts), then per mode its evaluation.json figures (test_accuracy, test_balanced_accuracy, the
majority baseline), its held-out figures (held_out_accuracy, held_out_balanced_accuracy, per-genre hits, the
majority baseline on the held-out files) and train_seconds (training, the pretrained embeddings included).
"""
import json
import os
import shutil
import time

from local.core.config import configure

raw_dir = ""  # a folder of genre folders (empty = the demo corpus)
work_dir = "data/bench_tagger_modes"  # the library's split, the dataset and the runs (reused: delete to start over)
demo_counts = [40, 15, 30]  # demo tracks per genre (Ambient, Electronic, Folk), unbalanced as a real library is
demo_seconds = 10.0  # length of each demo track, seconds
demo_blend = 0.0  # > 0: a harder library: each demo track has a track of another genre mixed in at this gain, and
#                   noise (the plain demo genres are told apart perfectly by every mode)
modes = ["waveform_plain", "waveform", "mtt"]  # which taggers to train
tagger_steps = 500  # training steps of a waveform tagger (the run)
head_steps = 600  # training steps of the mtt head
threads = 2  # cores the training uses

config = configure(globals())

import numpy as np

from local.collect import demo_corpus
from local.dataset import build
from local.judge import tagging
from local.store.audio_names import is_audio_path


def library(folder):
    """{genre: [paths]} of a folder of genre folders, sorted."""
    out = {}
    for genre in sorted(os.listdir(folder)):
        sub = os.path.join(folder, genre)
        if os.path.isdir(sub) and not genre.startswith("."):
            files = sorted(os.path.join(sub, n) for n in os.listdir(sub) if is_audio_path(f"{genre}/{n}"))
            if files:
                out[genre] = files
    return out


def write_blended_library(folder, sample_rate=16000):
    """The demo genres made harder: track i of a genre + demo_blend x track 500 + i of the next genre + noise
    (16 kHz WAV files in genre folders)."""
    from local.audio.encoding import write_wav
    genres = demo_corpus.DEMO_GENRES
    for g, (genre, count) in enumerate(zip(genres, demo_counts)):
        os.makedirs(os.path.join(folder, genre), exist_ok=True)
        for i in range(int(count)):
            path = os.path.join(folder, genre, f"{genre.lower()}-{i:03d}.wav")
            if os.path.exists(path):
                continue
            own = demo_corpus.synthesize_track(genre, i, 0, demo_seconds, sample_rate)
            other = demo_corpus.synthesize_track(genres[(g + 1) % len(genres)], 500 + i, 0, demo_seconds, sample_rate)
            noise = np.random.default_rng([g, i]).normal(0, 0.05, len(own))
            y = own / max(np.abs(own).max(), 1e-6) + demo_blend * other / max(np.abs(other).max(), 1e-6) + noise
            write_wav(path, (0.9 * y / np.abs(y).max()).astype(np.float32), sample_rate)


def split_library(tracks, stage2_dir, held_out_dir):
    """Every third track of each genre (the 3rd, 6th, ...) is held out; the others are copied into stage2_dir."""
    held = {}
    for genre, paths in tracks.items():
        for k, path in enumerate(paths):
            target = held_out_dir if k % 3 == 2 else stage2_dir
            os.makedirs(os.path.join(target, genre), exist_ok=True)
            link = os.path.join(target, genre, os.path.basename(path))
            if not os.path.exists(link):  # a copy: stage 2 refuses a link leading outside its raw_dir
                shutil.copyfile(path, link)
            if target == held_out_dir:
                held[link] = genre
    return held


def held_out_figures(run_dir, held):
    """Tag the held-out files with the run (local/judge/verdict.py, as --audio does) and score the answers."""
    tagger = tagging.Tagger(run_dir)
    rows = tagging.tag_files(tagger, sorted(held), progress=False)
    truth = [held[r["path"]] for r in rows if r["genre"]]
    answers = [r["genre"] for r in rows if r["genre"]]
    per_genre = {g: [int(sum(a == g for t, a in zip(truth, answers) if t == g)), int(truth.count(g))]
                 for g in sorted(set(truth))}
    counts = [n for _, n in per_genre.values()]
    return {"held_out_accuracy": float(np.mean([a == t for a, t in zip(answers, truth)])),
            "held_out_balanced_accuracy": float(np.mean([h / n for h, n in per_genre.values()])),
            "held_out_hits": per_genre, "held_out_majority_baseline": max(counts) / sum(counts),
            "held_out_tagged": len(answers), "held_out_files": len(rows)}


def main():
    import run_model_training
    os.makedirs(work_dir, exist_ok=True)
    source = os.path.expanduser(raw_dir)
    if not source and demo_blend > 0:
        source = os.path.join(work_dir, "blended_library")
        write_blended_library(source)
    elif not source:
        source = os.path.join(work_dir, "demo_library")
        for genre, count in zip(demo_corpus.DEMO_GENRES, demo_counts):
            demo_corpus.write_demo_corpus(source, genres=[genre], tracks_per_genre=int(count), seconds=demo_seconds,
                                          progress=False)
    tracks = library(source)
    stage2_dir, held_out_dir = os.path.join(work_dir, "stage2"), os.path.join(work_dir, "held_out")
    held = split_library(tracks, stage2_dir, held_out_dir)
    data_dir = os.path.join(work_dir, "processed")
    summary = build.preprocess(stage2_dir, data_dir, progress=False)
    out = {"library": source, "tracks_per_genre": {g: len(p) for g, p in tracks.items()},
           "stage2_splits": summary["dataset"]["tracks"], "modes": {}}
    for mode in modes:
        run_dir = os.path.join(work_dir, f"run_{mode}")
        shutil.rmtree(run_dir, ignore_errors=True)
        args = [f"--data_dir={data_dir}", f"--run_dir={run_dir}", "--model=tagger", f"--threads={threads}"]
        if mode == "mtt":
            args += ["--tagger_features=mtt", f"--tagger_steps={head_steps}", "--eval_every=200",
                     "--checkpoint_every=1000", "--learning_rate=1e-3", "--tagger_batch_size=32"]
        else:
            args += [f"--tagger_steps={tagger_steps}", "--eval_every=100", "--checkpoint_every=1000",
                     f"--tagger_balanced={'false' if mode == 'waveform_plain' else 'true'}"]
        started = time.perf_counter()
        trained = run_model_training.main(args)
        seconds = time.perf_counter() - started
        evaluation = trained["evaluation"]
        out["modes"][mode] = {"train_seconds": round(seconds, 1), **{k: evaluation[k] for k in (
            "test_accuracy", "test_balanced_accuracy", "majority_baseline", "n_test_tracks", "valid_accuracy",
            "valid_balanced_accuracy", "test_refused")}, **held_out_figures(run_dir, held)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
