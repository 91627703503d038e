"""Benchmark the judge: its summary for real test excerpts (the ceiling), white noise (the floor) and, when
given, the clips of a judged generation, side by side, with the same tagger, clip length and genres.

Run (after make demo, which trains data/demo/tagger and judges data/demo/generated):
  .venv/bin/python bench/bench_judge.py
  .venv/bin/python bench/bench_judge.py --tagger_run=data/demo/tagger --data_dir=data/demo/processed \
      --generation=data/demo/generated/generation.json --seconds=3

Prints one JSON line: for each of real, noise (and generated: generation.json's judge_summary as written)
the judge_summary figures genre_accuracy, flatness_ratio, frechet_distance, frechet_distance_floor, n_clips;
plus seconds (clip length), genres, judge_seconds (time to judge the real excerpts, embeddings cache warm) and
judge_again_seconds (the same call again on the same Judge: what judging costs at every sampling step).
"""
import json
import os
import time

from local.config import configure, fail

tagger_run = "data/demo/tagger"  # a tagger run (run_model_training.py --model=tagger)
data_dir = "data/demo/processed"  # the dataset whose test tracks give the real excerpts
generation = "data/demo/generated/generation.json"  # a judged generation.json to report beside (empty = none)
seconds = 3.0  # clip length, seconds (the demo generates 3 s clips)
clips_per_genre = 1  # clips per genre (the demo generates one per genre)
seed = 0  # white noise seed

config = configure(globals())

import numpy as np

from local import dataset_store, judge
from local.audio import mu_law_encode
from local.config import StageError

KEYS = ("genre_accuracy", "flatness_ratio", "frechet_distance", "frechet_distance_floor", "n_clips")
try:
    judging = judge.Judge(tagger_run, data_dir)
except StageError as e:
    fail(str(e))
tagger = judging.tagger
n = int(round(seconds * tagger.sample_rate))
genres = [g for g in tagger.genres for _ in range(clips_per_genre)]
index = dataset_store.read_index(data_dir)
# real clips: excerpts half a clip into the held-out tracks, so not the judge's own reference excerpts
held_out = judge.real_excerpts([r for r in index if r["split"] in ("test", "valid")], n, offset=n // 2)
available = [g for g in genres if held_out.get(g)]
real = [held_out[g].pop(0) for g in available]
judging.table  # warm the embeddings cache: time the judging alone
started = time.perf_counter()
_, real_summary = judging.judge(real, available)
first_seconds = time.perf_counter() - started
started = time.perf_counter()
judging.judge(real, available)  # again: the real excerpts' statistics are kept, as at every sampling step
again_seconds = time.perf_counter() - started
rng = np.random.default_rng(seed)
noise = [mu_law_encode(rng.uniform(-0.5, 0.5, n)) for _ in genres]
_, noise_summary = judging.judge(noise, genres)
result = {"real": {k: real_summary[k] for k in KEYS}, "real_genres": available,
          "noise": {k: noise_summary[k] for k in KEYS}}
if generation and os.path.isfile(generation):
    with open(generation, encoding="utf-8") as f:
        judged = json.load(f).get("judge_summary")
    result["generated"] = {k: judged[k] for k in KEYS} if judged else None
result.update({"seconds": seconds, "genres": genres, "judge_seconds": round(first_seconds, 2),
               "judge_again_seconds": round(again_seconds, 2), "tagger_run": tagger_run, "data_dir": data_dir})
print(json.dumps(result))
