"""Clips sampled while a WaveNet trains: one short clip per genre every ``sample_every`` steps, to listen to.

    samples/step-500/Ambient_00.wav, Ambient_00.png, ..., samples.json   (one folder per step, written whole)

Every step uses the same seed and temperature, so the clips of one genre differ between steps only by what the
model learned: the columns of the report's genre x step table are comparable. Clips come from the fast
generator (local/generate/fast.py), which runs in well under a second per clip for the models trained here
(measured on the demo: see README "Listen and look").

At training time :class:`SamplingCallback` (an ``on_evaluate`` callback of local.train.loop.train, built by
local.report.page.report_callbacks for both trainers) writes them; :func:`truncate_samples` drops the steps a resumed
run redoes (local.train.loop.resume calls it beside the metrics truncation).
"""
import glob
import json
import os
import shutil
import time

from local.core.config import ConfigError, check_minimums
from local.core.fileio import atomic_dir, read_json, remove_stale_temps, write_json_atomic
from local.generate import clip_files
from local.generate import fast as generate_fast
from local.generate import weights as generate_weights
from local.model.wavenet import read_run_model
from local.store.layout import RunDir

SAMPLES_DIR = RunDir.SAMPLES
JUDGE_COLUMNS = ("judge_genre_accuracy", "judge_flatness_ratio", "judge_onset_rate_ratio")  # metrics.csv columns of a judged run


def step_dir(run_dir, step):
    """``<run_dir>/samples/step-<step>`` (the step unpadded, as the contract writes it)."""
    return os.path.join(run_dir, SAMPLES_DIR, f"step-{int(step)}")


def sample_genres(wavenet_config, genres):
    """The genres sampled at each step: every genre of a conditioned model, else one unnamed clip ("")."""
    return list(genres) if wavenet_config.conditioned else [""]


def write_step_samples(model, wavenet_config, run_dir, step, *, genres, sample_rate, seconds, seed, temperature=1.0,
                       threads=None):
    """Generate one ``seconds``-long clip per genre with ``model`` as it is now; write them under
    :func:`step_dir` as ``<Genre>_<genre id>.wav`` (:func:`local.generate.clip_files.clip_name`; 16-bit PCM at ``sample_rate`` Hz) + ``.png``
    and ``samples.json``; the folder appears whole (atomic), replacing one of the same step.

    model           the Keras WaveNet being trained (its weights are read, not changed)
    wavenet_config  its :class:`local.model.wavenet.WaveNetConfig` (local.model.wavenet.read_run_model)
    genres          model.json's genres (index = genre_id); seed: the generator's seed, the same at every step
    Returns (list of WAV paths, seconds taken) - the seconds include the spectrograms and the writes.
    """

    started = time.perf_counter()
    sample_rate, n_codes = int(sample_rate), wavenet_config.quantization_channels
    clip_genres = sample_genres(wavenet_config, genres)
    n_samples = max(1, int(round(seconds * sample_rate)))
    weights = generate_weights.fold_weights(model, wavenet_config)
    state = generate_fast.initial_state(weights, genre_ids=list(range(len(clip_genres))) if wavenet_config.conditioned
                                     else None, n_streams=len(clip_genres), seed=seed)
    codes = generate_fast.generate(weights, state, n_samples, temperature, threads=threads)
    final = step_dir(run_dir, step)
    clips = []
    with atomic_dir(final) as tmp:
        for k, genre in enumerate(clip_genres):
            name = clip_files.clip_name(genre, k)
            written = clip_files.write_clip(tmp, name, codes[k], sample_rate=sample_rate,
                                               quantization_channels=n_codes, small=True,
                                               title=f"{genre or 'clip'}, step {int(step)}")
            clips.append({"genre": genre, "wav": f"{name}.wav", "png": f"{name}.png", "problem": written["problem"]})
        write_json_atomic(os.path.join(tmp, "samples.json"),
                          {"step": int(step), "seconds": n_samples / sample_rate, "n_samples": n_samples,
                           "sample_rate": sample_rate, "seed": int(seed), "temperature": float(temperature),
                           "clips": clips, "seconds_taken": time.perf_counter() - started})
    return [os.path.join(final, clip["wav"]) for clip in clips], time.perf_counter() - started


def record_judgement(run_dir, step, clip_judges, summary=None):
    """Add a genre tagger's verdict to a sampled step's ``samples.json``: ``clip_judges`` maps a genre ("" for
    an unconditioned clip) to a dict of scalar figures, shown under the clip on the report page; ``summary``
    (e.g. genre_accuracy, flatness_ratio) is kept as ``judge_summary``. Rewritten atomically; returns its path.

    The figures over steps that the page charts come from metrics.csv's ``judge_genre_accuracy`` and
    ``judge_flatness_ratio`` columns, which the trainer writes with its metrics row.
    """
    path = os.path.join(step_dir(run_dir, step), "samples.json")
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    for clip in meta["clips"]:
        if clip["genre"] in clip_judges:
            clip["judge"] = dict(clip_judges[clip["genre"]])
    if summary is not None:
        meta["judge_summary"] = dict(summary)
    return write_json_atomic(path, meta)


def truncate_samples(run_dir, last_step):
    """Before a resume from ``last_step``: drop the sampled steps after it (they are redone, as metrics.csv's
    rows are) and the temps a killed run left under ``samples/``. Returns the folders removed."""
    directory = os.path.join(run_dir, SAMPLES_DIR)
    if not os.path.isdir(directory):
        return []
    removed = remove_stale_temps(directory)
    for meta in read_step_samples(run_dir):
        if meta["step"] > last_step:
            shutil.rmtree(meta["dir"])
            removed.append(meta["dir"])
    return removed


def read_step_samples(run_dir):
    """The sampled steps of a run, oldest first: a list of dicts as in ``samples.json`` plus ``dir`` (the folder).

    A folder without ``samples.json`` (written by hand, or by an older version) is read from its WAV files.
    """
    found = []
    for path in glob.glob(os.path.join(run_dir, SAMPLES_DIR, "step-*")):
        name = os.path.basename(path)
        if not name[5:].isdigit() or not os.path.isdir(path):
            continue
        meta_path = os.path.join(path, "samples.json")
        meta = read_json(meta_path)
        if meta is None:
            wavs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(path, "*.wav")))
            meta = {"clips": [{"genre": w[:-4], "wav": w, "png": w[:-4] + ".png", "problem": ""} for w in wavs]}
        meta["step"] = int(name[5:])
        meta["dir"] = path
        found.append(meta)
    return sorted(found, key=lambda m: m["step"])


def sampling_summary(total_seconds, n_times, training_seconds):
    """One line on what sampling cost: its seconds, how often, and the share of the training time."""
    share = total_seconds / max(training_seconds, 1e-9)
    return (f"sampling: {n_times} times, {total_seconds:.1f} s in all "
            f"({total_seconds / max(n_times, 1):.2f} s each), {100 * share:.1f}% of {training_seconds:.0f} s training")


def is_sample_step(step, sample_every):
    """Whether ``step`` is one of every ``sample_every`` steps (0 = never); the last step is sampled too, by
    :class:`SamplingCallback`."""
    return sample_every > 0 and step % sample_every == 0


def check_config(config):
    """The sampling keys ``config`` has: ``sample_every`` >= 0 (0 = off), ``sample_seconds`` >= 0 (0 = no clips).
    Raises ConfigError naming one key."""
    check_minimums(config, {"sample_every": 0, "sample_seconds": 0})
    if config.get("judge") and not (config.get("sample_every", 0) > 0 and config.get("sample_seconds", 0) > 0):
        raise ConfigError(f"--judge={config['judge']}: judges the clips sampled while training, but "
                          f"--sample_every or --sample_seconds is 0: set both above 0, or leave --judge empty")


def sampling_interval(sample_every, eval_every):
    """(steps between clips, a note or ""): clips are sampled at evaluations (an ``on_evaluate`` callback), so
    ``sample_every`` is rounded to the nearest multiple of ``eval_every`` (at least one); 0 stays 0.

    Rounded rather than refused: a run that changes only ``eval_every`` keeps working, and the columns of the
    page's genre x step table stay evenly spaced.
    """
    if sample_every <= 0 or sample_every % eval_every == 0:
        return sample_every, ""
    rounded = max(1, round(sample_every / eval_every)) * eval_every
    return rounded, (f"note: --sample_every={sample_every} is not a multiple of eval_every ({eval_every}): clips "
                     f"every {rounded} steps (they are sampled at evaluations)")


class SamplingCallback:
    """An ``on_evaluate`` callback of local.train.loop.train (or the Spark trainer's epochs): at an evaluation
    whose step :func:`is_sample_step` (or the last one, ``evaluation.final``), one clip per genre of ``model``
    as it is then (:func:`write_step_samples`), the cost printed; at the last one, :func:`sampling_summary`.

    model        the Keras WaveNet being trained; its structure, genres and sample rate come from
                 ``run_dir``/model.json (local.model.wavenet.read_run_model), so write that first
    sample_every steps (0 = never; 1 = at every evaluation), rounded to a multiple of ``eval_every``
                 (:func:`sampling_interval`, the note printed); seconds: each clip's length; seed: the generator's
    judge_clips  optional ``judge_clips(wav_paths, asked_genres) -> (per_clip, summary)``: a genre tagger's
                 verdict, ``per_clip`` one dict of scalar figures per path, ``summary`` a dict with
                 ``genre_accuracy`` and ``flatness_ratio``; asked_genres are the clips' genres ("" for an
                 unconditioned model). The verdict goes into the step's samples.json (:func:`record_judgement`)
                 and the callback returns the metrics columns :data:`JUDGE_COLUMNS`.
    """

    def __init__(self, model, run_dir, *, sample_every, seconds, seed, eval_every=1, judge_clips=None):
        self.sample_every, note = sampling_interval(sample_every, eval_every)
        if note:
            print(note)
        self.model, self.seconds, self.seed = model, seconds, seed
        self.judge_clips = judge_clips
        self.wavenet_config, info = read_run_model(run_dir)
        self.genres, self.sample_rate = list(info["genres"]), int(info["sample_rate"])
        self.seconds_taken, self.times, self.started = 0.0, 0, time.perf_counter()

    def __call__(self, evaluation):
        from tqdm import tqdm
        columns = None
        if is_sample_step(evaluation.step, self.sample_every) or (self.sample_every and evaluation.final):
            paths, took = write_step_samples(self.model, self.wavenet_config, evaluation.run_dir, evaluation.step,
                                             genres=self.genres, sample_rate=self.sample_rate, seconds=self.seconds,
                                             seed=self.seed)
            self.seconds_taken, self.times = self.seconds_taken + took, self.times + 1
            tqdm.write(f"step {evaluation.step}: {len(paths)} clips of {self.seconds:g} s in {took:.2f} s -> "
                       f"{os.path.dirname(paths[0])}")
            if self.judge_clips is not None:
                columns = self.judge(evaluation.run_dir, evaluation.step, paths)
        if evaluation.final and self.times:
            tqdm.write(sampling_summary(self.seconds_taken, self.times, time.perf_counter() - self.started))
        return columns

    def judge(self, run_dir, step, paths):
        """Judge one step's clips with ``judge_clips``; record the verdict; return the metrics columns."""
        asked = sample_genres(self.wavenet_config, self.genres)
        per_clip, summary = self.judge_clips(paths, asked)
        record_judgement(run_dir, step, dict(zip(asked, per_clip)), summary)
        return {column: summary[column[len("judge_"):]] for column in JUDGE_COLUMNS
                if column[len("judge_"):] in summary}
