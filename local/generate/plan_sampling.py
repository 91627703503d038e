"""Drawing plans frame by frame from a trained plan prior (local/model/prior.py), for stage 4's ``--plan=prior``.

The prior's causal stack is run incrementally in numpy (as the fast WaveNet generator runs its own): each layer
keeps a ring of its past inputs, one per dilation step, so a frame costs one pass of a few small matrix
products per layer instead of the whole receptive field again (30 streams x 250 frames: about a second on 2
cores). The stack starts on :data:`local.model.prior.FLOOR_DB` frames, as training's windows before a track's
start did, so frame 0 is drawn from what the prior learnt of beginnings.
"""
import dataclasses
import os

import numpy as np

from local.core.config import StageError
from local.model import prior as model_prior
from local.store import rundir
from local.store.layout import RunDir


@dataclasses.dataclass
class PriorRun:
    """A trained prior: its Keras ``model``, ``config`` (PriorConfig), ``plan`` (PlanSettings) and ``info``
    (model.json's dict: genres, sample_rate, ...)."""
    model: object
    config: object
    plan: object
    info: dict


def load_prior(run_dir):
    """The :class:`PriorRun` of a prior's run directory (model.keras: the best-valid model); StageError (one
    line) when ``run_dir`` is not a trained prior run."""
    import keras
    for path in RunDir(run_dir).model_files():
        if not os.path.isfile(path):
            raise StageError(f"{path} is missing: {run_dir!r} is not a trained prior run (train one with "
                             f"run_model_training.py --model=prior --run_dir={run_dir})")
    info = rundir.read_model_json(run_dir)
    if rundir.run_kind(info) != model_prior.KIND:
        raise StageError(f"--prior_dir={run_dir} is a {rundir.run_kind(info)} run, not a prior: train one with "
                         f"run_model_training.py --model=prior and pass its run_dir")
    config = model_prior.PriorConfig.from_json(info["model"])
    return PriorRun(keras.models.load_model(RunDir(run_dir).model_keras), config,
                    config.plan_settings(info["sample_rate"], info["quantization_channels"]), info)


def plan_mismatch(prior_run, renderer_plan, prior_dir):
    """One line when the prior writes plans of other settings than the renderer plays (``renderer_plan``: its
    PlanSettings, None = a WaveNet without a plan), naming the keys; "" when they agree."""
    differences = prior_run.plan.differences(renderer_plan)
    if not differences:
        return ""
    return (f"--prior_dir={prior_dir} writes plans the renderer does not play ({', '.join('plan_' + d for d in differences)}; "
            f"prior/renderer): train the prior with --renderer_dir=<the renderer's run>")


class Stepper:
    """The prior's stack, one input frame at a time, for ``genre_ids`` (B,) streams: :meth:`step` takes each
    stream's frame t (B, bands) dB and returns the parameters of frame t + 1 (B, bands * 3 * mixtures), as the
    Keras model's output at position t of the same sequence."""

    def __init__(self, model, config, genre_ids):
        def weights(name):
            return [np.asarray(w, np.float32) for w in model.get_layer(name).get_weights()]
        genre = weights("prior_genre")[0][np.asarray(genre_ids, np.int64)]  # (B, genre_channels)
        self.config, self.t = config, 0
        self.input = weights("prior_input")
        self.layers = []
        for i, d in enumerate(config.dilations):
            kernel, bias = weights(f"prior{i}_conv")
            out_kernel, out_bias = weights(f"prior{i}_out")
            self.layers.append({"d": d, "past": kernel[0], "now": kernel[1],
                                "bias": bias + genre @ weights(f"prior{i}_cond")[0], "out": out_kernel[0],
                                "out_bias": out_bias,
                                "ring": np.zeros((d, len(genre), config.channels), np.float32)})  # causal zeros
        self.head, self.params = weights("prior_head"), weights("prior_params")

    def step(self, frames_db):
        """Parameters of the next frame of every stream, given this one: (B, bands) dB -> (B, n_params)."""
        c = self.config.channels
        x = (np.asarray(frames_db, np.float32) / model_prior.DB_SCALE + 1.0) @ self.input[0][0] + self.input[1]
        for layer in self.layers:
            slot = self.t % layer["d"]
            pre = layer["ring"][slot] @ layer["past"] + x @ layer["now"] + layer["bias"]
            layer["ring"][slot] = x
            x = x + (np.tanh(pre[:, :c]) / (1.0 + np.exp(-pre[:, c:]))) @ layer["out"] + layer["out_bias"]
        self.t += 1
        h = np.maximum(np.maximum(x, 0.0) @ self.head[0][0] + self.head[1], 0.0)
        return h @ self.params[0][0] + self.params[1]


def draw_frame(params, config, temperature, rng):
    """One frame per stream from the mixture ``params`` (B, bands * 3 * mixtures): (B, bands) float32 dB.

    ``temperature`` scales each logistic's scale and divides the component logits (sharper weights below 1);
    0 gives the most likely component's mean (no randomness). Values are clipped to the likelihood's support
    [FLOOR_DB, CEILING_DB]."""
    p = np.asarray(params, np.float64).reshape(len(params), config.plan_bands, 3, config.mixtures)
    logits, means = p[:, :, 0], (p[:, :, 1] - 1.0) * model_prior.DB_SCALE
    scales = np.exp(np.maximum(p[:, :, 2], model_prior.MIN_LOG_SCALE)) * model_prior.DB_SCALE
    if config.frame_mixture:  # one component per frame, from band 0's logits, for every band
        logits = np.repeat(logits[:, :1], config.plan_bands, axis=1)
    if temperature <= 0:
        pick = logits.argmax(axis=-1)[..., None]
        value = np.take_along_axis(means, pick, -1)[..., 0]
    else:
        z = logits / temperature
        weights = np.exp(z - z.max(axis=-1, keepdims=True))
        cumulative = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
        u_pick = rng.random(cumulative.shape[:-1])
        if config.frame_mixture:
            u_pick[:] = u_pick[:, :1]  # the same draw for every band: the same component
        pick = np.minimum((u_pick[..., None] > cumulative).sum(-1), config.mixtures - 1)
        u = np.clip(rng.random(pick.shape), 1e-6, 1 - 1e-6)
        chosen = [np.take_along_axis(a, pick[..., None], -1)[..., 0] for a in (means, scales)]
        value = chosen[0] + temperature * chosen[1] * (np.log(u) - np.log1p(-u))
    return np.clip(value, model_prior.FLOOR_DB, model_prior.CEILING_DB).astype(np.float32)


def sample_plans(prior_run, genre_ids, n_frames, *, temperature=1.0, seed=0, prime=None):
    """Plans drawn frame by frame from ``prior_run`` (:func:`load_prior`): (streams, n_frames, bands) float32 dB.

    genre_ids    (streams,) ints, one stream per entry (batched: all streams step together)
    temperature  >= 0 (:func:`draw_frame`); 0 is deterministic
    seed         the draws' seed: the same arguments give the same plans
    prime        None, or real frames (P, bands) for every stream or (streams, P, bands): the first
                 min(P, n_frames) output frames are exactly these, and the prior continues from them
    """
    config = prior_run.config
    genre_ids = np.asarray(genre_ids, np.int64).reshape(-1)
    streams, bands = len(genre_ids), config.plan_bands
    if prime is not None:
        prime = np.asarray(prime, np.float32)
        prime = np.broadcast_to(prime, (streams, *prime.shape)) if prime.ndim == 2 else prime
        if prime.shape[0] != streams or prime.shape[2] != bands:
            raise ValueError(f"prime: expected (frames, {bands}) or ({streams}, frames, {bands}), got {prime.shape}")
    n_prime = 0 if prime is None else min(prime.shape[1], int(n_frames))
    rng = np.random.default_rng([int(seed), 17])
    stepper = Stepper(prior_run.model, config, genre_ids)
    floor = np.full((streams, bands), model_prior.FLOOR_DB, np.float32)
    for _ in range(config.receptive_field):  # the silence before a track, as in training
        params = stepper.step(floor)
    out = np.zeros((streams, int(n_frames), bands), np.float32)
    for f in range(int(n_frames)):
        out[:, f] = prime[:, f] if f < n_prime else draw_frame(params, config, temperature, rng)
        if f + 1 < n_frames:
            params = stepper.step(out[:, f])
    return out
