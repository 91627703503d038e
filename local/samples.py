"""Clips sampled while a WaveNet trains: one short clip per genre every ``sample_every`` steps, to listen to.

    samples/step-500/Ambient.wav, Ambient.png, ..., samples.json      (one folder per step, written whole)

Every step uses the same seed and temperature, so the clips of one genre differ between steps only by what the
model learned: the columns of the report's genre x step table are comparable. Clips come from the fast
generator (local/generation.py), which runs in well under a second per clip for the models trained here
(measured on the demo: see README "Listen and look").
"""
import glob
import json
import os
import re
import shutil
import time

from local.fileio import atomic_dir, remove_stale_temps, write_json_atomic

SAMPLES_DIR = "samples"


def step_dir(run_dir, step):
    """``<run_dir>/samples/step-<step>`` (the step unpadded, as the contract writes it)."""
    return os.path.join(run_dir, SAMPLES_DIR, f"step-{int(step)}")


def clip_name(genre):
    """A file name stem for a genre: letters, digits, ``_`` and ``-`` only ("clip" for an unconditioned model)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", genre or "").strip("-") or "clip"


def sample_genres(model_info):
    """The genres sampled at each step: every genre of a conditioned model, else one unnamed clip ("").

    model_info: the dict of ``model.json`` (local.training.read_model_json).
    """
    if model_info["model"].get("genre_conditioning"):
        return list(model_info["genres"])
    return [""]


def write_step_samples(model, model_info, run_dir, step, *, seconds, seed, temperature=1.0, threads=None):
    """Generate one ``seconds``-long clip per genre with ``model`` as it is now; write them under
    :func:`step_dir` as ``<Genre>.wav`` (16-bit PCM at the model's sample rate) + ``<Genre>.png`` (spectrogram)
    and ``samples.json``; the folder appears whole (atomic), replacing one of the same step.

    model       the Keras WaveNet being trained (its weights are read, not changed)
    model_info  the dict of ``model.json``; seed: the generator's seed, the same at every step
    Returns (list of WAV paths, seconds taken) - the seconds include the spectrograms and the writes.
    """
    from local import generation
    from local.audio import mu_law_decode
    from local.plots import plot_spectrogram

    started = time.perf_counter()
    sample_rate, n_codes = int(model_info["sample_rate"]), int(model_info["quantization_channels"])
    genres = sample_genres(model_info)
    conditioned = genres != [""]
    n_samples = max(1, int(round(seconds * sample_rate)))
    weights = generation.fold_weights(model)
    state = generation.initial_state(weights, genre_ids=list(range(len(genres))) if conditioned else None,
                                     n_streams=len(genres), seed=seed)
    codes = generation.generate(weights, state, n_samples, temperature, threads=threads)
    final = step_dir(run_dir, step)
    clips = []
    with atomic_dir(final) as tmp:
        for k, genre in enumerate(genres):
            name = clip_name(genre)
            y = mu_law_decode(codes[k], n_codes)
            generation.write_wav(os.path.join(tmp, f"{name}.wav"), y, sample_rate)
            plot_spectrogram(y, sample_rate, os.path.join(tmp, f"{name}.png"), figsize=(4, 2.2), colorbar=False,
                             title=f"{genre or 'clip'}, step {int(step)}")
            clips.append({"genre": genre, "wav": f"{name}.wav", "png": f"{name}.png",
                          "problem": generation.clip_problem(codes[k], n_codes)})
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
        meta = None
        if os.path.isfile(meta_path):
            try:
                with open(meta_path, encoding="utf-8") as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                meta = None
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


def is_sample_step(step, sample_every, last_step):
    """Whether clips are sampled after ``step``: every ``sample_every`` steps and at ``last_step`` (0 = never)."""
    return bool(sample_every) and (step % sample_every == 0 or step == last_step)

