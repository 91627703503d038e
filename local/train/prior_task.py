"""Training the plan prior (local/model/prior.py): its plan keys (the renderer's or the config's), the tracks'
plans, resumable genre-balanced batches of plan windows, the context-free baseline, validation and evaluation.json.

Every plan is computed with local.audio.plan.plan_frames, the renderer's own. The model exported as model.keras
is the best-valid one (the demo's 16 train tracks are overfitted after about a minute): the checkpoints hold
the latest weights, so a resumed run continues its steps where it stopped.
"""
import math
import os

import numpy as np

from local.audio.plan import PlanSettings, plan_frames
from local.core import checks
from local.core.config import ConfigError, StageError, check_minimums
from local.core.fileio import write_json_atomic
from local.model import prior as model_prior
from local.store import dataset_files, rundir
from local.store.layout import RunDir
from local.train import loop

# stage 3's defaults of the plan keys (run_model_training.py): a key left at its default takes the renderer's
PLAN_KEY_DEFAULTS = {"plan_bands": 0, "plan_hop": 256, "plan_n_fft": 1024, "plan_fmin": 30.0, "plan_fmax": 0.0}
PRIOR_MINIMUMS = {"prior_steps": 1, "prior_batch_size": 1, "prior_window": 1, "prior_eval_frames": 1}
BASELINE_STEPS = 300  # Adam steps of the baseline's fit: demo valid NLL 190.68 at 150, 190.63 at 300, 190.60 at 1000 (7 s)


# --- keys and the plan ------------------------------------------------------------------------------------

def check_config(config):
    """The prior's stage-3 keys (``prior_*``), before any data is read; ConfigError naming one key."""
    check_minimums(config, PRIOR_MINIMUMS)
    if config["prior_steps"] > 10 ** 9:
        raise ConfigError(f"--prior_steps={config['prior_steps']}: must be at most {10 ** 9:,}")
    if not config.get("renderer_dir") and not int(config.get("plan_bands", 0)):
        raise ConfigError("--model=prior needs a plan: pass --plan_bands=80 (the demo's) or "
                          "--renderer_dir=RUN (a renderer's run, whose plan keys it then takes)")
    model_prior.PriorConfig.from_config(config, PlanSettings(bands=max(1, int(config.get("plan_bands") or 80))))


def renderer_plan_keys(config):
    """The ``plan_*`` keys of ``config["renderer_dir"]``'s model.json (a WaveNet run with plan_bands > 0), or
    StageError (one line). ConfigError naming the first plan key given with another value than the renderer's."""
    renderer = config["renderer_dir"]
    try:
        info = rundir.read_model_json(renderer)
    except (FileNotFoundError, ValueError) as e:
        raise StageError(f"--renderer_dir={renderer}: {e}") from None
    keys = {k: info.get("model", {}).get(k, v) for k, v in PLAN_KEY_DEFAULTS.items()}
    if rundir.run_kind(info) != "wavenet" or not int(keys["plan_bands"]):
        raise StageError(f"--renderer_dir={renderer} is a {rundir.run_kind(info)} run without a plan (plan_bands 0): "
                         f"pass a WaveNet run trained with --plan_bands > 0, or --plan_bands=80 without a renderer")
    for key, default in PLAN_KEY_DEFAULTS.items():
        given = config.get(key, default)
        if given != default and float(given) != float(keys[key]):
            raise ConfigError(f"--{key}={given} but the renderer {renderer} has {key}={keys[key]}: leave --{key} "
                              f"out (the prior takes the renderer's plan keys) or pass another --renderer_dir")
    return keys, info


def resolve_plan(config, sample_rate, quantization_channels):
    """The :class:`PlanSettings` the prior writes: the renderer's (``renderer_dir``, its sample rate checked)
    or the config's ``plan_*`` keys."""
    if not config.get("renderer_dir"):
        return PlanSettings.from_model_keys(config, sample_rate, quantization_channels)
    keys, info = renderer_plan_keys(config)
    if int(info.get("sample_rate", sample_rate)) != int(sample_rate):
        raise StageError(f"--renderer_dir={config['renderer_dir']} plays {info['sample_rate']} Hz but "
                         f"{config['data_dir']} holds {sample_rate} Hz: pass a renderer trained on this dataset")
    return PlanSettings.from_model_keys(keys, sample_rate, quantization_channels)


def usable_plan_tracks(index, settings, window, data_dir):
    """(train rows, valid rows, test rows) holding at least ``window`` plan frames; StageError when the train
    or valid split has none, or the plans of all of them could not fit in memory (checked before any is made)."""
    def usable(split):
        return [r for r in index if r["split"] == split and settings.n_frames(r["n_samples"]) >= window]
    train, valid, test = usable("train"), usable("valid"), usable("test")
    if not train or not valid:
        raise StageError(f"{data_dir}: the prior needs train and valid tracks of at least --prior_window={window} "
                         f"plan frames ({window / settings.frames_per_second:.2f} s); it has {len(train)} train and "
                         f"{len(valid)} valid: add tracks or lower --prior_window")
    frames = sum(settings.n_frames(r["n_samples"]) for r in train + valid + test)
    problem = checks.plan_memory_problem(frames, settings.bands)
    if problem:
        raise StageError(f"{data_dir}: {problem}")
    return train, valid, test


def track_plans(rows, settings, read_codes=dataset_files.read_track_codes):
    """[(genre_id, plan (F, bands) float32 dB)] of the dataset ``rows``, through plan_frames."""
    return [(int(r["genre_id"]), plan_frames(read_codes(r), settings)) for r in rows]


# --- batches and whole-track passes -------------------------------------------------------------------------

def training_batches(plans, receptive_field, window, batch_size, seed, examples_done=0):
    """Yield batches forever: ((frames (B, receptive_field + window - 1, bands), genre_id (B,) int32), targets
    (B, window, bands)) float32 dB. Example ``i`` is of the ``i mod n_genres``-th genre, a random track of it
    and a random window; frames before a track's start are floor. Batch ``b`` is drawn from its own seed, so
    the stream is a pure function of (seed, examples_done): a resumed run continues it."""
    by_genre = {}
    for genre_id, plan in plans:
        by_genre.setdefault(genre_id, []).append(model_prior.padded_plan(plan, receptive_field))
    genre_ids = sorted(by_genre)
    number = int(examples_done) // batch_size
    span = receptive_field + window
    while True:
        rng = np.random.default_rng([seed, 11, number])
        slots = (number * batch_size + np.arange(batch_size)) % len(genre_ids)
        inputs, targets = [], []
        for slot in slots:
            tracks = by_genre[genre_ids[slot]]
            padded = tracks[int(rng.integers(len(tracks)))]
            first = int(rng.integers(len(padded) - span + 1))  # window = track frames first .. first + window - 1
            inputs.append(padded[first:first + span - 1])
            targets.append(padded[first + receptive_field:first + span])
        yield ((np.stack(inputs), np.asarray([genre_ids[s] for s in slots], np.int32)), np.stack(targets))
        number += 1


def segments(plans, receptive_field, length, max_segments=None):
    """Every frame of ``plans`` ([(genre_id, (F, bands))]) as fixed-shape passes: (inputs (n, receptive_field +
    length - 1, bands), genre_id (n,), targets (n, length, bands), mask (n, length) bool: frames past a track's
    end are padding). Each frame is scored once, with its whole receptive field (floor before the start)."""
    inputs, genres, targets, masks = [], [], [], []
    for genre_id, plan in plans:
        padded = model_prior.padded_plan(np.concatenate([plan, np.full((length, plan.shape[1]), model_prior.FLOOR_DB,
                                                                       np.float32)]), receptive_field)
        for first in range(0, len(plan), length):
            inputs.append(padded[first:first + receptive_field + length - 1])
            targets.append(padded[first + receptive_field:first + receptive_field + length])
            masks.append(np.arange(first, first + length) < len(plan))
            genres.append(genre_id)
    n = len(inputs) if max_segments is None else min(len(inputs), int(max_segments))
    return np.stack(inputs[:n]), np.asarray(genres[:n], np.int32), np.stack(targets[:n]), np.stack(masks[:n])


def model_nll(model, prior_config, passes, batch=16):
    """Mean NLL of the frames of ``passes`` (:func:`segments`) under ``model``, nats per frame."""
    inputs, genres, targets, mask = passes
    total = 0.0
    for first in range(0, len(inputs), batch):
        params = model.predict_on_batch([inputs[first:first + batch], genres[first:first + batch]])
        params = np.asarray(params)[:, prior_config.receptive_field - 1:]
        nll = np.asarray(model_prior.frame_nll(params, targets[first:first + batch], prior_config.plan_bands,
                                               prior_config.mixtures, prior_config.frame_mixture))
        total += float(nll[mask[first:first + batch]].sum())
    return total / max(1, int(mask.sum()))


# --- the baseline: each genre's frame distribution without context ------------------------------------------

def bin_counts(plans, n_genres, bands):
    """How many train frames of each genre fall in each bin of each band: (n_genres, n_bins, bands) float32
    (the bins of local.model.prior.bin_centres). A context-free likelihood depends on a frame only through these."""
    n_bins = len(model_prior.bin_centres())
    counts = np.zeros((n_genres, n_bins, bands), np.float32)
    for genre_id, plan in plans:
        index = np.round((np.clip(plan, model_prior.FLOOR_DB, model_prior.CEILING_DB) - model_prior.FLOOR_DB)
                         / model_prior.BIN_DB).astype(np.int64)
        np.add.at(counts[genre_id], (index, np.broadcast_to(np.arange(bands), index.shape)), 1.0)
    return counts


def fit_baseline(plans, n_genres, prior_config, seed=0, steps=BASELINE_STEPS):
    """Each genre's context-free frame distribution under the prior's likelihood (a mixture of
    ``prior_config.mixtures`` discretized logistics per band), fitted by Adam to all its train frames (their
    NLL is a sum over the bins' counts, :func:`bin_counts`): (n_genres, bands * 3 * mixtures) float32
    parameters, laid out as the network's output. A genre without train frames keeps its start values."""
    import tensorflow as tf
    bands, k = prior_config.plan_bands, prior_config.mixtures
    counts = bin_counts(plans, n_genres, bands)
    totals = counts.sum(axis=1)[:, :1]  # (G, 1): frames of each genre
    # start: means at the quantiles of each band's values, scales of 3 dB
    cumulative = np.cumsum(counts, axis=1) / np.maximum(totals[:, None], 1.0)  # (G, n_bins, bands)
    levels = (np.arange(k) + 0.5) / k
    means = model_prior.bin_centres()[np.minimum((cumulative[:, :, :, None] < levels).sum(axis=1),
                                                 counts.shape[1] - 1)]  # (G, bands, k)
    params = np.stack([np.zeros_like(means), means / model_prior.DB_SCALE + 1.0,
                       np.full_like(means, math.log(3.0 / model_prior.DB_SCALE))], axis=2).astype(np.float32)
    variable = tf.Variable(params.reshape(n_genres, -1))
    optimizer = tf.keras.optimizers.Adam(0.05)
    centres = tf.constant(np.broadcast_to(model_prior.bin_centres()[None, :, None], counts.shape).copy())
    weights = tf.constant(counts / np.maximum(totals[:, None], 1.0))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            log_p = model_prior.band_log_probs(centres, *model_prior.split_params(variable[:, None], bands, k))
            loss = -tf.reduce_sum(weights * log_p)  # the sum over genres of each one's mean NLL per frame
        optimizer.apply_gradients([(tape.gradient(loss, variable), variable)])

    for _ in range(int(steps)):
        step()
    return variable.numpy()


def baseline_nll(baseline, plans, prior_config):
    """Mean NLL of every frame of ``plans`` under its genre's baseline (:func:`fit_baseline`), nats per frame."""
    total, count = 0.0, 0
    for genre_id, plan in plans:
        params = np.broadcast_to(baseline[genre_id], (len(plan), baseline.shape[1]))
        total += float(np.sum(model_prior.frame_nll(params, plan, prior_config.plan_bands, prior_config.mixtures)))
        count += len(plan)
    return total / max(1, count)


# --- the task -------------------------------------------------------------------------------------------------

def prior_task(prior_config, *, plans, config, run_dir, baseline_bits=None):
    """The prior's :class:`local.train.loop.Task`: the model (seeded by ``config["seed"]``), Adam, the resumable
    genre-balanced windows (:func:`training_batches`), input noise of ``input_noise`` dB on the frames the
    model reads, and validation on up to ``prior_eval_frames`` valid frames. The exported model (model.keras)
    keeps the best-valid weights. ``plans``: {"train": [...], "valid": [...]} of :func:`track_plans`.

    Metrics columns: ``train_bits_per_frame``, ``valid_bits_per_frame`` (NLL of a frame, bits) and
    ``valid_best_bits_per_frame`` (the exported model's)."""
    import keras
    import tensorflow as tf

    rf, bands, k = prior_config.receptive_field, prior_config.plan_bands, prior_config.mixtures
    batch_size, noise = config["prior_batch_size"], prior_config.input_noise
    keras.utils.set_random_seed(config["seed"])
    model, best_model = model_prior.build_prior(prior_config), model_prior.build_prior(prior_config)
    best_model.set_weights(model.get_weights())
    optimizer = loop.make_optimizer(config["learning_rate"], config["grad_clip"])
    length = min(256, prior_config.window * 4)
    valid = segments(plans["valid"], rf, length, max_segments=max(1, config["prior_eval_frames"] // length))
    best = {"bits": math.inf}
    if rundir.latest_checkpoint(run_dir) and os.path.isfile(RunDir(run_dir).model_keras):
        best_model.set_weights(keras.models.load_model(RunDir(run_dir).model_keras).get_weights())
        best["bits"] = model_nll(best_model, prior_config, valid) / math.log(2)

    def loss_of(features, targets):
        frames, genre_id = features
        if noise > 0:  # the model reads noisy frames and predicts clean ones: it learns to correct its own drift
            frames = frames + tf.random.normal(tf.shape(frames), stddev=noise)
        params = model([frames, genre_id], training=True)[:, rf - 1:]
        return tf.reduce_mean(model_prior.frame_nll(params, targets, bands, k, prior_config.frame_mixture))

    def validate():
        bits = model_nll(model, prior_config, valid) / math.log(2)
        if bits < best["bits"]:
            best["bits"] = bits
            best_model.set_weights(model.get_weights())
        return {"valid_bits_per_frame": bits, "valid_best_bits_per_frame": best["bits"]}

    def batches(examples_done):
        return training_batches(plans["train"], rf, prior_config.window, batch_size, config["seed"], examples_done)

    return loop.Task(model=model, optimizer=optimizer, batches=batches,
                     train_step=loop.gradient_step(model, optimizer, loss_of), validate=validate,
                     batch_size=batch_size, samples_per_example=prior_config.window,
                     loss_column="train_bits_per_frame", valid_column="valid_bits_per_frame",
                     baseline_bits=baseline_bits, export_model=best_model, loss_title="Plan prior loss",
                     loss_unit="bits per frame")


def write_evaluation(run_dir, model, prior_config, plans, baseline, extra=None):
    """Valid and test NLL per frame (nats, sum over bands) of ``model`` (the best-valid one) and of the
    per-genre baseline into ``run_dir/evaluation.json``; returns the dict. A split without tracks gets None."""
    result = {"unit": "nats per frame (sum over bands of a discretized logistic mixture's log mass, "
                      f"bins of {model_prior.BIN_DB} dB)", "bands": prior_config.plan_bands}
    for split in ("valid", "test"):
        rows = plans.get(split) or []
        result[f"{split}_nll"] = model_nll(model, prior_config, segments(rows, prior_config.receptive_field, 256)) \
            if rows else None
        result[f"{split}_baseline_nll"] = baseline_nll(baseline, rows, prior_config) if rows else None
        result[f"n_{split}_frames"] = int(sum(len(p) for _, p in rows))
    result.update(extra or {})
    write_json_atomic(RunDir(run_dir).evaluation_json, result)
    return result


def print_evaluation(result, run_dir):
    """The evaluation as two lines (model against baseline per split) and where it was written."""
    for split in ("valid", "test"):
        if result[f"{split}_nll"] is not None:
            print(f"{split}: {result[f'{split}_nll']:.1f} nats/frame (baseline {result[f'{split}_baseline_nll']:.1f}, "
                  f"{result[f'n_{split}_frames']} frames)")
    print(f"evaluation: {RunDir(run_dir).evaluation_json}")
