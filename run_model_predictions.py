"""Stage 4: generate audio with a trained WaveNet (faster than real time), and score it on the test tracks.

Generation runs the whole sampling loop in one compiled numba kernel with per-layer caches (local/generate/fast.py):
each new sample costs one pass through the layers, not a forward pass over the receptive field. Several
clips (streams) are generated at once, by default one per genre of a genre-conditioned model.

Writes into out_dir: <genre>_<nn>.wav (16-bit PCM mono at the model's sample rate), <genre>_<nn>.png
(spectrogram), generation.json (settings and measured samples/s per clip) and config.json; the WAV paths are
printed last. A renderer's clips also get <genre>_<nn>.plan.npy (the plan frames each played, drawn above its
spectrogram) and generation.json their plan_source and the plan fidelity (local/judge/plan_fidelity.py). With --evaluate=true, first <run_dir>/evaluation.json: test bits/sample beside the uniform and
unigram baselines, printed as a table. Then the run's page <run_dir>/report.html is rewritten with the
evaluation and these clips (<run_dir>/generations.json remembers where they are; local/report/page.py).
With --judge=<tagger run>, generation.json also holds the genre tagger's
verdict on each clip and a judge_summary (local/judge/verdict.py), and the external ear's (a tagger pretrained on
MagnaTagATune: local/judge/external.py); --judge=mtt gives the external ear alone. With a tagger --run_dir, or
--tagger=mtt (msd, ...: pretrained, docs/pretrained-taggers.md), --audio writes <out_dir>/tags.csv (and with a
pretrained tagger tag_scores.csv) and --similar_to <out_dir>/similar.csv instead.

Run:
  python run_model_predictions.py --run_dir=data/runs/default                    # one clip per genre
  python run_model_predictions.py --run_dir=data/demo/run --out_dir=data/demo/generated --seconds=3
  python run_model_predictions.py --run_dir=data/runs/default --genre=Rock --streams=4 --temperature=0.9
  python run_model_predictions.py --run_dir=data/runs/default --prime_track=000123 --prime_seconds=2
  python run_model_predictions.py --run_dir=data/demo/run --out_dir=data/demo/resynthesized --plan=heldout \
      --streams=30 --judge=data/demo/tagger   # a renderer plays the plans of held-out excerpts (resynthesis)
  python run_model_predictions.py --run_dir=data/demo/run --plan=file:song.mp3 --offset=30   # its plan, our voice
  python run_model_predictions.py --run_dir=data/runs/default --evaluate=true --seconds=0   # scores only
  python run_model_predictions.py --run_dir=data/demo/run --out_dir=data/demo/generated --seconds=3 \
      --judge=data/demo/tagger                  # + the tagger's verdict per clip and judge_summary
  python run_model_predictions.py --run_dir=data/demo/tagger --audio=data/demo/raw --out_dir=data/demo/tags
  python run_model_predictions.py --run_dir=data/demo/tagger --similar_to=demo-folk-003 --top_k=5
  python run_model_predictions.py --tagger=mtt --audio=song.mp3 --out_dir=data/tags    # 50 MagnaTagATune tags
  python run_model_predictions.py --tagger=msd --similar_to=song.mp3 --data_dir=data/demo/processed
  python run_model_predictions.py --help

Every file is written under a temp name and renamed, so a killed run leaves only complete files.
"""
import os

from local.core.config import StageError, check_minimums, configure, stage_main
from local.store.layout import RunDir

# --- I/O ---
run_dir = "data/runs/default"  # stage 3's output: model.keras + model.json (+ config.json)
out_dir = "data/generated"  # where the WAVs, spectrograms and generation.json go
data_dir = ""  # processed dataset for priming and evaluation (empty = the one the run was trained on)
# --- generation ---
seconds = 4.0  # length of each generated clip (after any prime), seconds; 0 = generate nothing
streams = 0  # clips generated at once (0 = one per genre for a genre-conditioned model, else 1)
genre = ""  # genre of every clip, a name from the run's genres (empty = cycle through the genres)
temperature = 1.0  # logits are divided by it before sampling: < 1 tamer, > 1 wilder, 0 = most likely code
min_p = 0.0  # > 0: codes less likely than min_p x the most likely one are never drawn (min-p sampling: cuts the
#              tail of improbable codes a renderer plays as hiss; 0 = sample the whole distribution)
seed = 0  # the same seed gives the same clips; clip k depends only on the seed and k
plan = ""  # what a renderer (a run trained with --plan_bands) plays (docs/plan.md): heldout (excerpts of the
#            test and valid tracks of each clip's genre: resynthesis) | track:<track_id> | file:<audio file or a
#            clip's .plan.npy> ("play this in the model's voice") | none (a model without a plan) |
#            prior (plans the prior writes: free generation); empty = prior when the run has a prior (--prior_dir or
#            <run_dir>/prior), heldout for a renderer without one, none for a model without a plan
offset = 0.0  # seconds into the --plan=track:/file: (or --prime) source where the plan starts (rounded to a frame)
prior_dir = ""  # a prior run (run_model_training.py --model=prior) for --plan=prior (empty = <run_dir>/prior if any)
plan_temperature = 1.0  # the prior's sampling temperature (its logistics' scales, its mixture's weights; 0 = modes)
prime = ""  # the prior's opening: track:<track_id> or file:<audio>: its first prime_seconds of plan (from --offset);
#             train: each clip a train track of its genre's (in turns), from --offset
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
# --- the genre tagger (local/judge/verdict.py; run_dir = a tagger run for --audio / --similar_to) ---
audio = ""  # with a tagger run_dir: tag this audio file or every audio file below this folder -> out_dir/tags.csv
similar_to = ""  # with a tagger run_dir: an audio file or a track_id; its nearest dataset tracks -> similar.csv
top_k = 10  # how many similar tracks
tagger = ""  # for --audio / --similar_to: mtt | msd | mtt_vgg | msd_vgg (pretrained: docs/pretrained-taggers.md)
#              or a tagger run directory (empty = run_dir)
judge = ""  # a tagger run_dir, or mtt alone: judge the generated clips (generation.json "judge", "judge_summary")

# -----------------------------------------------------------------------------


def check_config(config):
    """Stage 4's keys, before any file is read: one key per message."""
    check_minimums(config, {"seconds": 0, "prime_seconds": 0, "temperature": 0, "min_p": 0, "plan_temperature": 0,
                            "streams": 0, "threads": 0, "eval_window": 1, "eval_batch_positions": 1,
                            "eval_max_tracks": 0, "top_k": 1})
    if config["min_p"] >= 1:
        raise StageError(f"--min_p={config['min_p']}: must be below 1 (0 = off; 0.01-0.1 cuts the improbable tail)")
    if config["progress_seconds"] <= 0:
        raise StageError(f"--progress_seconds={config['progress_seconds']}: must be > 0")
    if config["judge"] and config["seconds"] == 0:
        raise StageError("--judge needs clips to judge: pass --seconds > 0")
    if config["seconds"] == 0 and not config["evaluate"] and not (config["audio"] or config["similar_to"]):
        raise StageError("--seconds=0 and --evaluate=false: nothing to do (pass --seconds > 0 or --evaluate=true)")
    if config["tagger"] and not (config["audio"] or config["similar_to"]):
        raise StageError(f"--tagger={config['tagger']}: tags files or finds similar tracks: pass --audio=FILE_OR_FOLDER "
                         f"or --similar_to=FILE_OR_TRACK_ID (a judge is --judge)")
    from local.judge import pretrained
    if config["tagger"] and pretrained.is_pretrained(config["tagger"]):
        from local.core import checks
        problem = checks.output_folder_problem(config["out_dir"], "out_dir")
        if problem:
            raise StageError(problem)
        return
    if config["tagger"] and not os.path.isdir(config["tagger"]):
        raise StageError(f"--tagger={config['tagger']}: neither a pretrained tagger ({', '.join(pretrained.MODELS)}) "
                         f"nor a tagger run directory")
    if config["tagger"]:  # a tagger run directory: checked as run_dir is
        config = dict(config, run_dir=config["tagger"])
    for path in RunDir(config["run_dir"]).model_files():
        if not os.path.isfile(path):
            raise StageError(f"{path} is missing: run_dir={config['run_dir']!r} is "
                             f"not a trained run (train one with run_model_training.py --run_dir={config['run_dir']})")
    from local.core import checks
    from local.store import rundir
    problem = checks.shared_folder_problem(config, "out_dir", "run_dir", "data_dir", "judge") \
        or checks.output_folder_problem(config["out_dir"], "out_dir") or rundir.model_files_problem(config["run_dir"]) \
        or checks.output_folder_problem(config["run_dir"], "run_dir")  # its report and evaluation.json are written
    if problem:  # before any scoring or generating, not after
        raise StageError(problem)


def read_index(config, data_dir, n_codes, sample_rate):
    """The dataset index rows (for priming and evaluation; [] when neither is asked for). ``n_codes`` and
    ``sample_rate`` (Hz) are the model's: a dataset of other codes, or another rate to evaluate on, is refused."""
    from local.core import checks
    from local.store import dataset_files
    if not (config["prime_track"] or config["evaluate"] or config["plan"] in ("heldout", "prior")
            or config["plan"].startswith("track:") or config["prime"].startswith("track:")
            or config["prime"] == "train"):
        return []
    if not data_dir or not dataset_files.list_parts(data_dir):
        raise StageError(f"data_dir={data_dir!r} holds no processed dataset (tracks/part-*.parquet), needed for "
                         f"{'--prime_track' if config['prime_track'] else '--evaluate' if config['evaluate'] else '--plan=' + config['plan']}: pass --data_dir=FOLDER")
    data_info = dataset_files.read_dataset_json(data_dir) or {}
    if data_info.get("quantization_channels", n_codes) != n_codes:
        raise StageError(f"{data_dir} holds {data_info['quantization_channels']}-level codes but the model in "
                         f"{config['run_dir']} predicts {n_codes}: pass the --data_dir it was trained on")
    problem = checks.evaluation_dataset_problem(sample_rate, data_info, data_dir, config["run_dir"]) \
        if config["evaluate"] else ""
    if problem:
        raise StageError(problem)
    return dataset_files.read_index(data_dir)


def check_generation(config, wavenet, *, genres, prime_row, sample_rate):
    """Refuse a generation that is meaningless (nan, inf) or cannot fit in memory, and say what a feasible one
    will cost, before the model is loaded or anything scored."""
    from local.core import checks
    from local.generate import fast
    n_streams = 0
    if config["seconds"] > 0:
        n_streams = len(fast.stream_genres(genres, conditioned=wavenet.conditioned, genre=config["genre"],
                                                 streams=config["streams"],
                                                 prime_genre=prime_row["genre"] if prime_row is not None else None))
    sizes = (sample_rate, wavenet.receptive_field, wavenet.residual_channels)
    problem = checks.generation_problem(config["seconds"], config["temperature"], config["prime_seconds"], n_streams,
                                        *sizes)
    if problem:
        raise StageError(problem)
    if n_streams:
        print(checks.generation_cost_line(n_streams, config["seconds"], *sizes))


def find_prime(index, prime_track, data_dir):
    """The index row of ``--prime_track`` (None when it is empty)."""
    if not prime_track:
        return None
    matches = [row for row in index if str(row["track_id"]) == prime_track]
    if not matches:
        examples = ", ".join(str(row["track_id"]) for row in index[:5])
        raise StageError(f"--prime_track={prime_track!r} is not in {data_dir} (track ids look like: {examples})")
    return matches[0]


def evaluate_test_set(model, wavenet, config, *, index, genres, data_dir, sample_rate=None):
    """Score the test tracks into <run_dir>/evaluation.json and print the table."""
    from tqdm import tqdm

    from local.judge import evaluation
    test_rows, skipped = evaluation.test_rows_of(index, genres, conditioned=wavenet.conditioned,
                                                 max_tracks=config["eval_max_tracks"])
    if skipped:
        print(f"note: test tracks of genres the model was not trained on are skipped: {', '.join(skipped)}")
    with tqdm(total=sum(max(0, int(row["n_samples"]) - 1) for row in test_rows), unit="sample", unit_scale=True,
              dynamic_ncols=True, desc=f"scoring {len(test_rows)} test tracks") as bar:
        result, path = evaluation.evaluate_run(model, wavenet, run_dir=config["run_dir"], index=index, genres=genres,
                                               data_dir=data_dir, window=config["eval_window"],
                                               batch_positions=config["eval_batch_positions"],
                                               max_tracks=config["eval_max_tracks"], progress=bar,
                                               sample_rate=sample_rate)
    print("\n" + "\n".join(evaluation.evaluation_table(result)) + "\n" + path)


def plan_clips(config, wavenet, *, genres, prime_row, sample_rate, index, data_dir):
    """(each clip's genre, its plans (local.generate.plan_sources.ClipPlans) or None without a plan): resolved
    before any model is loaded, so a bad --plan source is told at once."""
    from local.generate import fast
    clip_genres = fast.stream_genres(genres, conditioned=wavenet.conditioned, genre=config["genre"],
                                     streams=config["streams"],
                                     prime_genre=prime_row["genre"] if prime_row is not None else None)
    settings = wavenet.plan_settings(sample_rate)
    if settings is None:
        return clip_genres, None
    plans = clip_plans(config, wavenet, settings, n_samples=int(round(config["seconds"] * sample_rate)),
                       clip_genres=clip_genres, index=index, data_dir=data_dir, sample_rate=sample_rate)
    if wavenet.conditioned and not config["genre"]:  # a track's plan plays in its own genre
        clip_genres = [source or g for source, g in zip(plans.genres, clip_genres)]
    return clip_genres, plans


def generate_clips(model, wavenet, config, *, genres, prime_row, sample_rate, judge=None, index=(), clip_genres,
                   plans=None):
    """Generate the clips into out_dir (WAV, PNG [, plan], generation.json) and print their paths; a renderer
    plays ``plans`` (:func:`plan_clips`); with a ``judge`` (local.judge.verdict.Judge), its verdicts go into
    generation.json and beside the paths."""
    import numpy as np
    from tqdm import tqdm

    from local.core.fileio import write_json_atomic
    from local.generate import clip_files, fast, plan_sources, rendering
    from local.generate import weights as generate_weights
    from local.report import page as report
    from local.store import clip_folder, dataset_files
    weights = generate_weights.fold_weights(model, wavenet)
    n_samples = int(round(config["seconds"] * sample_rate))
    settings = wavenet.plan_settings(sample_rate)
    genre_ids = [genres.index(g) if g in genres else 0 for g in clip_genres]
    state = fast.initial_state(weights, genre_ids=genre_ids if wavenet.conditioned else None,
                                     n_streams=len(genre_ids), seed=config["seed"])
    prime = np.zeros(0, np.int64)
    if prime_row is not None:
        prime = dataset_files.read_track_codes(prime_row, 0, max(1, int(round(config["prime_seconds"] * sample_rate))))
        fast.prime_state(model, weights, state, prime.astype(np.int64))
    compile_seconds = fast.warm_up(weights, genre_ids, config["threads"])  # numba: ~10 s once, then cached
    if compile_seconds > 2:
        print(f"compiled the generator in {compile_seconds:.1f} s (cached for next time)")
    chunk = max(1, int(config["progress_seconds"] * sample_rate))
    with tqdm(total=n_samples * len(genre_ids), unit="sample", unit_scale=True, dynamic_ncols=True,
              desc=f"{'rendering' if plans else 'generating'} {len(genre_ids)} x {config['seconds']:g} s") as bar:
        biases = None if plans is None else rendering.plan_biases(model, wavenet, plans.padded)
        codes, elapsed = fast.generate_in_chunks(weights, state, n_samples, temperature=config["temperature"],
                                                 threads=config["threads"], chunk=chunk, progress=bar,
                                                 min_p=config["min_p"], plan_bias=biases,
                                                 plan_hop=settings.hop if plans is not None else 0)
    codes = wavenet.audio_codes(codes)  # what a renderer played, in the dataset's codes (de-emphasized)
    shown_prime = prime if config["include_prime"] else prime[:0]
    primed = f", prime {config['prime_track']} until {len(prime) / sample_rate:g} s" if len(shown_prime) else ""
    extensions = (".wav", ".png") + ((".plan.npy",) if plans is not None else ())
    names = [clip_files.clip_name(g, k) + ext for k, g in enumerate(clip_genres) for ext in extensions]
    real = plan_sources.real_excerpts(index, clip_genres, settings, n_samples) \
        if plans is not None and config["plan"] == "prior" else []  # drawn beside the prior's plans
    names += [f"real_{clip_files.clip_name(r['genre'], k)}{ext}" for k, r in enumerate(real) for ext in extensions]
    clip_folder.claim_folder(config["out_dir"], names)  # the folder holds this call's clips only, from now on
    clips = clip_files.write_clips(config["out_dir"], codes, shown_prime, genres=clip_genres, genre_ids=genre_ids,
                                   sample_rate=sample_rate, quantization_channels=wavenet.quantization_channels,
                                   title=f"temperature {config['temperature']:g}"
                                         + (f", min-p {config['min_p']:g}" if config["min_p"] else "") + primed,
                                   plans=None if plans is None else plans.frames,
                                   plan_rate=settings.frames_per_second if settings else None)
    real_plans = [{**clip_files.write_clip(
        config["out_dir"], f"real_{clip_files.clip_name(r['genre'], k)}", r["codes"], sample_rate=sample_rate,
        quantization_channels=wavenet.quantization_channels, title=f"real {r['genre']}: {r['source']}",
        plan=r["frames"], plan_rate=settings.frames_per_second), "genre": r["genre"], "source": r["source"]}
        for k, r in enumerate(real)]
    per_clip_rate = n_samples / max(elapsed, 1e-9)
    for clip in clips:
        if clip["problem"]:
            print(f"warning: generated clip {clip['wav']} is {clip['problem']}: the model may be undertrained "
                  f"(train longer) or the temperature too low (try --temperature=1)")
        clip.update(genre_id=clip["genre_id"] if wavenet.conditioned else None, seed=config["seed"],
                    temperature=config["temperature"], min_p=config["min_p"], seconds=n_samples / sample_rate,
                    n_samples=n_samples,
                    prime_track=config["prime_track"], prime_samples=int(len(prime)),
                    included_prime=bool(len(shown_prime)), samples_per_second=per_clip_rate)
    judged = {}
    if plans is not None:
        from local.judge.plan_fidelity import plan_fidelity
        judged["plan_fidelity"] = plan_fidelity(plans.frames, codes, settings, plans.genres, plans.track_ids)
        if config["plan"] == "prior" and index:
            judged["plan_memorization"] = memorization(plans, index, settings, clip_genres)
        for clip, source, distance in zip(clips, plans.sources, judged["plan_fidelity"].pop("per_clip")):
            clip.update(plan_source=source, plan_distance_db=distance)
    if judge is not None:
        from local.judge.verdict import judge_generation
        judged["judge_summary"] = judge_generation(judge, clips, list(codes), wavenet.quantization_channels)
        judged["judge_per_genre"] = judged["judge_summary"].pop("per_genre", {})
    generation_json = write_json_atomic(os.path.join(config["out_dir"], "generation.json"), {
        "run_dir": config["run_dir"], "sample_rate": sample_rate, "quantization_channels": wavenet.quantization_channels,
        "receptive_field": wavenet.receptive_field, **wavenet.receptive_field_json(sample_rate),
        "generation": "resynthesis" if plans is not None and config["plan"] != "prior" else "free",
        "plan": config["plan"],
        "streams": len(clips), "threads": config["threads"],
        "total_samples_per_second": per_clip_rate * len(clips), "real_time_factor": per_clip_rate / sample_rate,
        "seconds_generating": elapsed, "config": config, "clips": clips, "real_plans": real_plans, **judged})
    clip_folder.release_folder(config["out_dir"])
    report.note_generation(config["run_dir"], generation_json)  # the run's page shows these clips
    print(f"generated {len(clips)} x {n_samples / sample_rate:g} s in {elapsed:.2f} s: "
          f"{per_clip_rate:,.0f} samples/s per clip, {per_clip_rate * len(clips):,.0f} in total "
          f"({per_clip_rate / sample_rate:.1f}x real time per clip)")
    print(f"report: {report.write_report(config['run_dir'])}")
    print_verdicts(clips, judged)


def clip_plans(config, wavenet, settings, *, n_samples, clip_genres, index, data_dir, sample_rate):
    """What each clip of a renderer plays (local.generate.plan_sources.ClipPlans): the prior's new plans
    (optionally primed) or a real source's."""
    from local.generate import plan_sources
    decode = decode_settings_of(data_dir, wavenet, sample_rate)
    if config["plan"] != "prior":
        return plan_sources.clip_plans(config["plan"], settings=settings, width=wavenet.plan_width, n_samples=n_samples,
                                       clip_genres=clip_genres, index=index, data_dir=data_dir, offset=config["offset"],
                                       decode_settings=decode)
    from local.generate.plan_sampling import load_prior
    prior_dir = plan_sources.prior_dir_of(config)
    prime = None
    if config["prime"] == "train":  # each clip opens with a stretch of a train track of its genre
        prime = plan_sources.train_primes(index, clip_genres, settings, offset=config["offset"],
                                          seconds=config["prime_seconds"])
    elif config["prime"]:
        prime = plan_sources.prime_frames(config["prime"], settings=settings, index=index, data_dir=data_dir,
                                          offset=config["offset"], seconds=config["prime_seconds"],
                                          decode_settings=decode)
    return plan_sources.prior_plans(load_prior(prior_dir), prior_dir=prior_dir, settings=settings,
                                    width=wavenet.plan_width, n_samples=n_samples, clip_genres=clip_genres,
                                    temperature=config["plan_temperature"], seed=config["seed"], prime=prime,
                                    prime_source=config["prime"])


def memorization(plans, index, settings, clip_genres):
    """The prior's plan memorization figure (local.judge.plan_fidelity.plan_memorization) against the dataset's
    train tracks, with held-out excerpts of the clips' genres as the reference."""
    import numpy as np

    from local.core.config import StageError
    from local.generate import plan_sources
    from local.judge.plan_fidelity import plan_memorization
    n_frames = plans.frames.shape[1]
    try:
        heldout = [p[0] for p in plan_sources.heldout_plans(index, clip_genres, settings, n_frames, 0)]
    except StageError:  # a genre without held-out tracks: no reference to compare with
        return None
    train = [plan_sources.track_plan(row, settings) for row in index if row["split"] == "train"]
    return plan_memorization(plans.frames, np.stack(heldout), train)


def decode_settings_of(data_dir, wavenet, sample_rate):
    """How --plan=file: decodes a file: as stage 2 made the run's dataset (its dataset.json), else stage 2's
    defaults at the model's rate and codes; any length (--offset and --seconds are checked against it)."""
    import dataclasses

    from local.audio.decoding import DecodeSettings
    from local.store import dataset_files
    info = (dataset_files.read_dataset_json(data_dir) if data_dir and os.path.isdir(data_dir) else None) or {}
    settings = DecodeSettings.from_dict({"sample_rate": sample_rate,
                                         "quantization_channels": wavenet.quantization_channels, **info})
    return dataclasses.replace(settings, min_seconds=0.0)


def print_verdicts(clips, judged):
    """The plan fidelity, the judge's summary lines, then each clip (with its verdict when judged)."""
    if "plan_fidelity" in judged:
        from local.judge.plan_fidelity import fidelity_line, memorization_line
        print(fidelity_line(judged["plan_fidelity"]))
        if judged.get("plan_memorization"):
            print(memorization_line(judged["plan_memorization"]))
    if "judge_summary" in judged:
        from local.judge.verdict import clip_line, per_genre_line, summary_line
        print(summary_line(judged["judge_summary"]))
        if judged["judge_per_genre"]:
            print(per_genre_line(judged["judge_per_genre"]))
    for clip in clips:
        print(clip_line(clip) if "judge_summary" in judged else clip["wav"])


@stage_main
def main(argv=None):
    config = configure(dict(globals()), argv)
    check_config(config)
    from local.core import locks
    try:
        lock = locks.acquire_lock(config["out_dir"], "stage 4")  # a second call on this out_dir is refused
    except locks.LockHeld as e:
        raise StageError(str(e)) from None
    with lock:
        run(config)


def run(config):
    """Stage 4's steps for a checked ``config``, holding its out_dir's lock."""
    from local.core.config import save_config
    from local.core.fileio import remove_stale_temps
    from local.model.wavenet import read_run_model
    if config["audio"] or config["similar_to"]:  # a tagger run: tag files, find similar tracks (local/judge/verdict.py)
        from local.judge.commands import tagger_commands
        tagger_commands(config)
        save_config(config, config["out_dir"])
        return
    wavenet, info = read_run_model(config["run_dir"])
    from local.generate.plan_sources import check_plan_choice
    config["plan"] = check_plan_choice(config, wavenet, config["run_dir"])
    genres, sample_rate = list(info["genres"]) or [""], int(info["sample_rate"])
    data_dir = config["data_dir"] or info.get("data_dir", "")
    if config["genre"] and config["genre"] not in genres:
        raise StageError(f"--genre={config['genre']!r} is not one of this run's genres: {', '.join(genres)}")
    if config["genre"] and not wavenet.conditioned:
        print(f"warning: --genre={config['genre']} has no effect: this model was trained without genre_conditioning")
    index = read_index(config, data_dir, wavenet.quantization_channels, sample_rate)
    prime_row = find_prime(index, config["prime_track"], data_dir)
    check_generation(config, wavenet, genres=genres, prime_row=prime_row, sample_rate=sample_rate)
    judge = None
    if config["judge"]:  # the tagger must fit the WaveNet: checked before anything is generated
        from local.judge.external import wavenet_judges
        judge = wavenet_judges(config["judge"], genres=genres, sample_rate=sample_rate, wavenet_run=config["run_dir"],
                               data_dir=data_dir)

    if config["seconds"] > 0:  # a renderer's plans first: a source that cannot be read is told before the model loads
        clip_genres, plans = plan_clips(config, wavenet, genres=genres, prime_row=prime_row, sample_rate=sample_rate,
                                        index=index, data_dir=data_dir)
    import keras  # quietly: parsing the config set TensorFlow's C++ log level (local.core.quiet)
    model = keras.models.load_model(RunDir(config["run_dir"]).model_keras)
    from local.model.structure import check_model_matches
    check_model_matches(model, wavenet, config["run_dir"])
    field = wavenet.receptive_field
    print(f"{config['run_dir']}: {wavenet.n_layers} layers, filter width {wavenet.filter_width}, receptive field "
          f"{field} samples ({field / sample_rate * 1000:.0f} ms)"
          + (f", with the context stack {wavenet.total_receptive_field} samples "
             f"({wavenet.total_receptive_field / sample_rate:.2f} s)" if wavenet.has_context else "")
          + f", {wavenet.quantization_channels} codes, "
          f"{sample_rate} Hz" + (f", genres: {', '.join(genres)}" if wavenet.conditioned else ""))
    if config["evaluate"]:
        evaluate_test_set(model, wavenet, config, index=index, genres=genres, data_dir=data_dir,
                          sample_rate=sample_rate)
    os.makedirs(config["out_dir"], exist_ok=True)
    remove_stale_temps(config["out_dir"])  # a killed call's half-written WAV/PNG temps (never trusted, never shown)
    if config["seconds"] > 0:
        generate_clips(model, wavenet, config, genres=genres, prime_row=prime_row, sample_rate=sample_rate,
                       judge=judge, index=index, clip_genres=clip_genres, plans=plans)
    else:
        from local.report import page as report
        print(f"report: {report.write_report(config['run_dir'])}")
    # last: config.json describes a call whose outputs are complete, never a killed one (also evaluation-only)
    save_config(config, config["out_dir"])


if __name__ == "__main__":
    main()
