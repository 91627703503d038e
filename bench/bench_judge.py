"""Benchmark the judge: its summary for real test excerpts (the ceiling), white noise (the floor) and, when
given, the clips of a judged generation, side by side, with the same tagger, clip length and genres; the
project's tagger and the external ear (MTT_musicnn, pretrained: local/judge/external.py) together, and how fast
the pretrained tagger tags and judges (x real time).

Run (after make demo, which trains data/demo/tagger and judges data/demo/generated):
  .venv/bin/python bench/bench_judge.py
  .venv/bin/python bench/bench_judge.py --tagger_run=data/demo/tagger --data_dir=data/demo/processed \
      --generation=data/demo/generated/generation.json --seconds=3
  .venv/bin/python bench/bench_judge.py --tagger_run=mtt --generation=     # the external ear alone (no tagger run)

Prints one JSON line: for each of real, noise (and generated: generation.json's judge_summary as written)
the judge_summary figures genre_accuracy, flatness_ratio, frechet_distance, frechet_distance_floor, n_clips;
plus seconds (clip length), genres, judge_seconds (time to judge the real excerpts, embeddings cache warm) and
judge_again_seconds (the same call again on the same Judge: what judging costs at every sampling step); the
external_* figures beside them; external_judge_x_real_time (clip seconds judged per wall-clock second by the
external ear, real and noise clips together, real excerpts cached) and tagging_x_real_time (seconds of the demo's
music tagged per second by MTT_musicnn, front end included, over tag_seconds of audio in 3 s patches), each also
per second of this process's CPU time (_x_cpu_time: what a machine shared with other work still gives per busy
core), with the 1-minute load_average; top_tags: per genre the 3 top MTT tags of the
mean tag vector of the dataset's tracks (real) and of the generation's clips (generated).
"""
import json
import os
import time

from local.core.config import configure, fail

tagger_run = "data/demo/tagger"  # a tagger run (run_model_training.py --model=tagger), or mtt: the external ear alone
data_dir = "data/demo/processed"  # the dataset whose test tracks give the real excerpts
generation = "data/demo/generated/generation.json"  # a judged generation.json to report beside (empty = none)
seconds = 3.0  # clip length, seconds (the demo generates 3 s clips)
clips_per_genre = 1  # clips per genre (the demo generates one per genre)
seed = 0  # white noise seed
tag_seconds = 60.0  # seconds of music tagged for tagging_x_real_time

config = configure(globals())

import numpy as np

from local.audio.waveform import mu_law_encode
from local.collect import demo_corpus
from local.core.config import StageError
from local.judge import excerpts as judge_excerpts
from local.judge import external as external_judge
from local.judge import pretrained, verdict
from local.store import dataset_files

KEYS = ("genre_accuracy", "flatness_ratio", "frechet_distance", "frechet_distance_floor", "n_clips",
        "external_frechet_distance", "external_frechet_floor", "external_tag_similarity",
        "external_tag_similarity_floor", "external_tag_similarity_per_genre")
try:
    external = external_judge.ExternalJudge(data_dir, tagger_run if pretrained.is_pretrained(tagger_run) else "mtt")
    project = None if pretrained.is_pretrained(tagger_run) else verdict.Judge(tagger_run, data_dir)
except StageError as e:
    fail(str(e))
judging = external_judge.Judges(project, external)
sample_rate = external.sample_rate
n = int(round(seconds * sample_rate))
dataset_genres = (dataset_files.read_dataset_json(data_dir) or {}).get("genres") or []
genres = [g for g in (project.tagger.genres if project else dataset_genres) for _ in range(clips_per_genre)]
index = dataset_files.read_index(data_dir)
# real clips: excerpts half a clip into the held-out tracks, so not the judge's own reference excerpts
held_out = judge_excerpts.real_excerpts([r for r in index if r["split"] in ("test", "valid")], n, offset=n // 2)
available = [g for g in genres if held_out.get(g)]
real = [held_out[g].pop(0) for g in available]
if project:
    project.table  # warm the embeddings cache: time the judging alone
started = time.perf_counter()
_, real_summary = judging.judge(real, available)
first_seconds = time.perf_counter() - started
started = time.perf_counter()
judging.judge(real, available)  # again: the real excerpts' statistics are kept, as at every sampling step
again_seconds = time.perf_counter() - started
rng = np.random.default_rng(seed)
noise = [mu_law_encode(rng.uniform(-0.5, 0.5, n)) for _ in genres]
_, noise_summary = judging.judge(noise, genres)
external.judge(real + noise, available + genres)  # the external ear alone: a first call tags its real excerpts
started, cpu = time.perf_counter(), time.process_time()
external.judge(real + noise, available + genres)  # what it costs at every sampling step
external_seconds, external_cpu = time.perf_counter() - started, time.process_time() - cpu
tagger = pretrained.load("mtt")
music = [demo_corpus.synthesize_track(g, 0, seed=1, seconds=tag_seconds / 3, sample_rate=pretrained.SAMPLE_RATE)
         for g in demo_corpus.DEMO_GENRES]
tagger.analyze(music[:1])  # warm: the front end's first call
started, cpu = time.perf_counter(), time.process_time()
tagger.analyze(music)
tagging_seconds, tagging_cpu = time.perf_counter() - started, time.process_time() - cpu


def genre_top_tags(waveforms, clip_genres, rate):
    """genre -> "tag 0.69, tag 0.59, tag 0.42": the top tags of the mean tag vector of each genre's waveforms."""
    analyzed = tagger.analyze(waveforms, sample_rate=rate, max_patches=16)
    out = {}
    for genre in dict.fromkeys(clip_genres):
        mean = np.mean([p.mean(axis=0) for (_, p), g in zip(analyzed, clip_genres) if g == genre], axis=0)
        out[genre] = external_judge.top_tags_text(tagger.top_tags(mean, 3))
    return out


from local.audio.ffmpeg import decode_audio
from local.audio.waveform import mu_law_decode, to_mono

rows = sorted(index, key=lambda r: str(r["track_id"]))
top_tags = {"real": genre_top_tags([mu_law_decode(dataset_files.read_track_codes(r), external.quantization_channels)
                                    for r in rows], [r["genre"] for r in rows], sample_rate)}
result = {"real": {k: real_summary.get(k) for k in KEYS}, "real_genres": available,
          "noise": {k: noise_summary.get(k) for k in KEYS}}
if generation and os.path.isfile(generation):
    with open(generation, encoding="utf-8") as f:
        judged = json.load(f).get("judge_summary")
        f.seek(0)
        clips = json.load(f)["clips"]
    result["generated"] = {k: judged.get(k) for k in KEYS} if judged else None
    decoded = [decode_audio(os.path.join(os.path.dirname(generation), os.path.basename(c["wav"]))) for c in clips]
    top_tags["generated"] = genre_top_tags([to_mono(y) for y, _, _ in decoded], [c["genre"] for c in clips],
                                           decoded[0][1])
result.update({"seconds": seconds, "genres": genres, "judge_seconds": round(first_seconds, 2),
               "judge_again_seconds": round(again_seconds, 2),
               "external_judge_x_real_time": round(len(real + noise) * seconds / external_seconds, 1),
               "external_judge_x_cpu_time": round(len(real + noise) * seconds / external_cpu, 1),
               "tagging_x_real_time": round(sum(len(y) for y in music) / pretrained.SAMPLE_RATE / tagging_seconds, 1),
               "tagging_x_cpu_time": round(sum(len(y) for y in music) / pretrained.SAMPLE_RATE / tagging_cpu, 1),
               "load_average": round(os.getloadavg()[0], 1),
               "tag_seconds": tag_seconds, "top_tags": top_tags, "cpu_count": os.cpu_count(), "tagger_run": tagger_run,
               "data_dir": data_dir})
print(json.dumps(result))
