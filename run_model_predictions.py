"""Stage 4: generate audio with a trained WaveNet (faster than real time), and score it on the test tracks.

Generation runs the whole sampling loop in one compiled numba kernel with per-layer caches (local/generation.py):
each new sample costs one pass through the layers, not a forward pass over the receptive field. Several
clips (streams) are generated at once, by default one per genre of a genre-conditioned model.

Writes into out_dir: <genre>_<nn>.wav (16-bit PCM mono at the model's sample rate), <genre>_<nn>.png
(spectrogram), generation.json (settings and measured samples/s per clip) and config.json; the WAV paths are
printed last. With --evaluate=true, first <run_dir>/evaluation.json: test bits/sample beside the uniform and
unigram baselines, printed as a table.

Run:
  python run_model_predictions.py --run_dir=data/runs/default                    # one clip per genre
  python run_model_predictions.py --run_dir=data/demo/run --out_dir=data/demo/generated --seconds=3
  python run_model_predictions.py --run_dir=data/runs/default --genre=Rock --streams=4 --temperature=0.9
  python run_model_predictions.py --run_dir=data/runs/default --prime_track=000123 --prime_seconds=2
  python run_model_predictions.py --run_dir=data/runs/default --evaluate=true --seconds=0   # scores only
  python run_model_predictions.py --run_dir=data/demo/run --out_dir=data/demo/generated --seconds=3 \
      --judge=data/demo/tagger                  # + the tagger's verdict per clip and judge_summary
  python run_model_predictions.py --run_dir=data/demo/tagger --audio=data/demo/raw --out_dir=data/demo/tags
  python run_model_predictions.py --run_dir=data/demo/tagger --similar_to=demo-folk-003 --top_k=5
  python run_model_predictions.py --help

Every file is written under a temp name and renamed, so a killed run leaves only complete files.
"""
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local.config import configure, fail, save_config, write_json_atomic  # noqa: E402

# --- I/O ---
run_dir = "data/runs/default"  # stage 3's output: model.keras + model.json (+ config.json)
out_dir = "data/generated"  # where the WAVs, spectrograms and generation.json go
data_dir = ""  # processed dataset for priming and evaluation (empty = the one the run was trained on)
# --- generation ---
seconds = 4.0  # length of each generated clip (after any prime), seconds; 0 = generate nothing
streams = 0  # clips generated at once (0 = one per genre for a genre-conditioned model, else 1)
genre = ""  # genre of every clip, a name from the run's genres (empty = cycle through the genres)
temperature = 1.0  # logits are divided by it before sampling: < 1 tamer, > 1 wilder, 0 = most likely code
seed = 0  # the same seed gives the same clips; clip k depends only on the seed and k
prime_track = ""  # track_id of a dataset track whose opening the clips continue (empty = start from silence)
prime_seconds = 1.0  # how much of the prime track to play to the model, seconds
include_prime = True  # the WAV starts with the prime audio, so you hear where the model takes over
threads = 0  # threads sharing the streams (0 = one per core)
progress_seconds = 0.25  # generated audio per progress-bar update, seconds
# --- evaluation ---
evaluate = False  # score the test tracks: teacher-forced bits/sample, with uniform and unigram baselines
eval_window = 8192  # scored positions per forward pass window (each also reads receptive_field - 1 context)
eval_batch_positions = 32768  # input positions per forward pass (bounds memory: ~ this x 12 KB)
eval_max_tracks = 0  # score at most this many test tracks (0 = all)
# --- the genre tagger (local/judge.py; run_dir = a tagger run for --audio / --similar_to) ---
audio = ""  # with a tagger run_dir: tag this audio file or every audio file below this folder -> out_dir/tags.csv
similar_to = ""  # with a tagger run_dir: an audio file or a track_id; its nearest dataset tracks -> similar.csv
top_k = 10  # how many similar tracks
judge = ""  # a tagger run_dir: judge the generated clips (generation.json "judge" and "judge_summary")

config = configure(globals())
# -----------------------------------------------------------------------------

if audio or similar_to:  # a tagger run: tag files or find similar tracks, then stop (local/judge.py)
    from local import judge as judging
    os.makedirs(out_dir, exist_ok=True)
    if audio:
        judging.tag_command(run_dir, audio, out_dir)
    if similar_to:
        judging.similar_command(run_dir, similar_to, top_k, out_dir, data_dir)
    save_config(config, out_dir)
    sys.exit(0)
if judge and seconds == 0:
    fail("--judge needs clips to judge: pass --seconds > 0")

if seconds < 0 or prime_seconds < 0 or temperature < 0 or streams < 0 or threads < 0:
    fail("seconds, prime_seconds, temperature, streams and threads must be >= 0")
if progress_seconds <= 0 or eval_window < 1 or eval_batch_positions < 1 or eval_max_tracks < 0:
    fail("progress_seconds, eval_window and eval_batch_positions must be positive, eval_max_tracks >= 0")
if seconds == 0 and not evaluate:
    fail("--seconds=0 and --evaluate=false: nothing to do")
for name in ("model.json", "model.keras"):
    if not os.path.isfile(os.path.join(run_dir, name)):
        fail(f"{os.path.join(run_dir, name)} is missing: run_dir={run_dir!r} is not a trained run "
             f"(train one with run_model_training.py --run_dir={run_dir})")

from local import training  # noqa: E402  (numpy only)

info = training.read_model_json(run_dir)
genres = list(info["genres"]) or [""]
conditioned = bool(info["model"].get("genre_conditioning"))
sample_rate, n_codes = int(info["sample_rate"]), int(info["quantization_channels"])
data_dir = data_dir or info.get("data_dir", "")
if info.get("kind", "wavenet") != "wavenet":
    fail(f"run_dir={run_dir!r} is a {info['kind']} run: pass --audio=FILE_OR_FOLDER or --similar_to=FILE_OR_TRACK_ID, "
         f"or --judge={run_dir} with a WaveNet --run_dir")
if genre and genre not in genres:
    fail(f"--genre={genre!r} is not one of this run's genres: {', '.join(genres)}")
if judge:  # the tagger must know the WaveNet's genres and sample rate: checked before any generation
    from local import judge as judging
    judge_tagger = judging.check_judge(judge, info["genres"], sample_rate, run_dir)

index = []
if prime_track or evaluate:
    from local import dataset_store  # noqa: E402
    if not data_dir or not dataset_store.list_parts(data_dir):
        fail(f"data_dir={data_dir!r} holds no processed dataset (tracks/part-*.parquet), needed for "
             f"{'--prime_track' if prime_track else '--evaluate'}: pass --data_dir=FOLDER")
    data_info = dataset_store.read_dataset_json(data_dir) or {}
    if data_info.get("quantization_channels", n_codes) != n_codes:
        fail(f"{data_dir} holds {data_info['quantization_channels']}-level codes but the model in {run_dir} "
             f"predicts {n_codes}: pass the --data_dir it was trained on")
    index = dataset_store.read_index(data_dir)
prime_row = None
if prime_track:
    matches = [row for row in index if str(row["track_id"]) == prime_track]
    if not matches:
        examples = ", ".join(str(row["track_id"]) for row in index[:5])
        fail(f"--prime_track={prime_track!r} is not in {data_dir} (track ids look like: {examples})")
    prime_row = matches[0]

# One genre per stream: --genre for all, else the prime track's genre, else cycling through the genres.
if genre and not conditioned:
    print(f"warning: --genre={genre} has no effect: this model was trained without genre_conditioning")
if genre:
    stream_genres = [genre] * (streams or 1)
elif prime_row is not None and conditioned and prime_row["genre"] in genres:
    stream_genres = [prime_row["genre"]] * (streams or 1)
elif conditioned:
    stream_genres = [genres[k % len(genres)] for k in range(streams or len(genres))]
else:
    stream_genres = [genres[0] if len(genres) == 1 else ""] * (streams or 1)
genre_ids = [genres.index(g) if g in genres else 0 for g in stream_genres]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the results
import numpy as np  # noqa: E402
import keras  # noqa: E402
from tqdm import tqdm  # noqa: E402

from local import evaluation, generation  # noqa: E402
from local.audio import mu_law_decode  # noqa: E402
from local.plots import plot_spectrogram  # noqa: E402

model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
weights = generation.fold_weights(model)
field = weights["receptive_field"]
print(f"{run_dir}: {len(weights['dilations'])} layers, filter width {weights['filter_width']}, receptive field "
      f"{field} samples ({field / sample_rate * 1000:.0f} ms), {n_codes} codes, {sample_rate} Hz"
      + (f", genres: {', '.join(genres)}" if conditioned else ""))

if evaluate:
    def load(row):
        return dataset_store.read_codes(row["part"], row["row_group"], row.get("row_in_group", 0))

    test_rows = [row for row in index if row["split"] == "test"]
    train_rows = [row for row in index if row["split"] == "train"]
    if conditioned:
        unknown = sorted({row["genre"] for row in test_rows if row["genre"] not in genres})
        if unknown:
            print(f"note: test tracks of genres the model was not trained on are skipped: {', '.join(unknown)}")
        test_rows = [row for row in test_rows if row["genre"] in genres]
    if eval_max_tracks:
        test_rows = test_rows[:eval_max_tracks]
    if not test_rows:
        fail(f"{data_dir} has no test tracks to evaluate on (see its dataset.json): rerun stage 2 with "
             f"--test_fraction > 0 or pass another --data_dir", status=1)
    n_positions = sum(max(0, int(row["n_samples"]) - 1) for row in test_rows)
    bar = tqdm(total=n_positions, unit="sample", unit_scale=True, dynamic_ncols=True,
               desc=f"scoring {len(test_rows)} test tracks")
    scores, test_counts = [], np.zeros(n_codes, np.int64)
    for first in range(0, len(test_rows), 16):  # 16 tracks in memory at a time, however large the test set
        tracks = [(load(row), genres.index(row["genre"]) if conditioned else None)
                  for row in test_rows[first:first + 16]]
        scores += evaluation.score_tracks(model, tracks, field, eval_window, eval_batch_positions, progress=bar)
        test_counts += evaluation.code_histogram((codes for codes, _ in tracks), n_codes)
    bar.close()
    total_bits, total_n = sum(b for b, _ in scores), sum(n for _, n in scores)
    train_counts = evaluation.code_histogram((load(row) for row in train_rows), n_codes)
    per_genre = {}
    for row, (bits, n) in zip(test_rows, scores):
        entry = per_genre.setdefault(row["genre"], [0.0, 0])
        entry[0] += bits
        entry[1] += n
    result = {"test_bits_per_sample": total_bits / max(total_n, 1),
              "uniform_bits_per_sample": math.log2(n_codes),
              "unigram_bits_per_sample": evaluation.entropy_bits(train_counts) if train_counts.sum() else None,
              "unigram_test_bits_per_sample": evaluation.cross_entropy_bits(test_counts, train_counts),
              "n_samples": int(total_n), "n_tracks": len(test_rows),
              "per_genre_bits_per_sample": {g: b / max(n, 1) for g, (b, n) in per_genre.items()},
              "per_track_bits_per_sample": {str(row["track_id"]): b / max(n, 1)
                                            for row, (b, n) in zip(test_rows, scores)},
              "data_dir": data_dir, "receptive_field": field}
    write_json_atomic(os.path.join(run_dir, "evaluation.json"), result)
    unigram = result["unigram_bits_per_sample"]
    print(f"\n{'test set (' + str(len(test_rows)) + ' tracks, ' + format(total_n, ',') + ' samples)':<44}bits/sample")
    print(f"  {'model (teacher-forced)':<42}{result['test_bits_per_sample']:.3f}")
    print(f"  {'unigram (train codes histogram entropy)':<42}" + (f"{unigram:.3f}" if unigram is not None else "-"))
    print(f"  {'unigram on the test codes':<42}{result['unigram_test_bits_per_sample']:.3f}")
    print(f"  {'uniform (log2 ' + str(n_codes) + ')':<42}{result['uniform_bits_per_sample']:.3f}")
    print(os.path.join(run_dir, "evaluation.json"))
    if seconds > 0:
        print()

os.makedirs(out_dir, exist_ok=True)
save_config(config, out_dir)  # also for an evaluation-only run: every stage records what it ran with
if seconds > 0:
    n_samples = int(round(seconds * sample_rate))
    state = generation.initial_state(weights, genre_ids=genre_ids if conditioned else None,
                                     n_streams=len(genre_ids), seed=seed)
    prime = np.zeros(0, np.int64)
    if prime_row is not None:
        track_codes = dataset_store.read_codes(prime_row["part"], prime_row["row_group"],
                                               prime_row.get("row_in_group", 0))
        prime = track_codes[:max(1, int(round(prime_seconds * sample_rate)))].astype(np.int64)
        generation.prime_state(model, weights, state, prime)
    chunk = max(1, int(progress_seconds * sample_rate))
    compile_started = time.perf_counter()  # numba compiles on the first call (~10 s), then loads its cache
    for count in sorted({1, len(genre_ids)}):  # the one-stream and the many-stream kernels, untimed
        warmup = generation.initial_state(weights, genre_ids=genre_ids[:count] if conditioned else None,
                                          n_streams=count)
        generation.generate(weights, warmup, 1, threads=threads)
    if time.perf_counter() - compile_started > 2:
        print(f"compiled the generator in {time.perf_counter() - compile_started:.1f} s (cached for next time)")
    pieces = []
    bar = tqdm(total=n_samples * len(genre_ids), unit="sample", unit_scale=True, dynamic_ncols=True,
               desc=f"generating {len(genre_ids)} x {seconds:g} s")
    started = time.perf_counter()
    for done in range(0, n_samples, chunk):
        pieces.append(generation.generate(weights, state, min(chunk, n_samples - done), temperature,
                                          threads=threads))
        bar.update(pieces[-1].size)
    elapsed = time.perf_counter() - started
    bar.close()
    codes = np.concatenate(pieces, axis=1)
    per_clip_rate = n_samples / max(elapsed, 1e-9)
    clips = []
    for k, (clip_genre, genre_id) in enumerate(zip(stream_genres, genre_ids)):
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", clip_genre).strip("-") or "clip"
        name = f"{slug}_{k:02d}"
        clip_codes = np.concatenate([prime, codes[k]]) if include_prime and len(prime) else codes[k]
        y = mu_law_decode(clip_codes, n_codes)
        wav = generation.write_wav(os.path.join(out_dir, f"{name}.wav"), y, sample_rate)
        primed = f", prime {prime_track} until {len(prime) / sample_rate:g} s" if len(clip_codes) > n_samples else ""
        png = plot_spectrogram(y, sample_rate, os.path.join(out_dir, f"{name}.png"),
                               title=f"{name}: {clip_genre or 'generated'}, temperature {temperature:g}{primed}")
        problem = generation.clip_problem(codes[k], n_codes)
        if problem:
            print(f"warning: generated clip {wav} is {problem}: the model may be undertrained "
                  f"(train longer) or the temperature too low (try --temperature=1)")
        clips.append({"name": name, "wav": wav, "png": png, "genre": clip_genre,
                      "genre_id": genre_id if conditioned else None, "stream": k, "seed": seed,
                      "temperature": temperature, "seconds": n_samples / sample_rate, "n_samples": n_samples,
                      "prime_track": prime_track, "prime_samples": int(len(prime)),
                      "included_prime": bool(include_prime and len(prime)), "samples_per_second": per_clip_rate,
                      "problem": problem})
    report = {"run_dir": run_dir, "sample_rate": sample_rate, "quantization_channels": n_codes,
              "receptive_field": field, "streams": len(clips), "threads": threads,
              "total_samples_per_second": per_clip_rate * len(clips),
              "real_time_factor": per_clip_rate / sample_rate, "seconds_generating": elapsed,
              "config": config, "clips": clips}
    if judge:
        report["judge_summary"] = judging.judge_generation(judge_tagger, clips, list(codes), data_dir)
    write_json_atomic(os.path.join(out_dir, "generation.json"), report)
    print(f"generated {len(clips)} x {n_samples / sample_rate:g} s in {elapsed:.2f} s: "
          f"{per_clip_rate:,.0f} samples/s per clip, {per_clip_rate * len(clips):,.0f} in total "
          f"({per_clip_rate / sample_rate:.1f}x real time per clip)")
    if judge:
        print(judging.summary_line(report["judge_summary"]))
    for clip in clips:
        verdict = clip.get("judge")
        print(clip["wav"] + (f"  (judged {verdict['top_genre']} {verdict['top_genre_probability']:.2f}, "
                             f"flatness {verdict['spectral_flatness']:.3f})" if verdict else ""))
