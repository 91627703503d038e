"""Rendering a plan: the fast generator (local/generate/fast.py) driven by a renderer's plan frames.

A renderer adds, in every gated layer, ``layer{i}_plan`` of its conditioning network's vector of the frame the
sample plays (local/model/wavenet.py). That term is a bias per (stream, layer) that changes once per frame, so
it is computed for every frame once, by the Keras model's own layers (one batched pass over the plan, exact),
and the kernel moves the stream biases to the next frame's as it reaches it: a plan costs one bias update per
``plan_hop`` samples (bench_generation.py: ``plan_speed_ratio``).
"""
import time

import numpy as np

from local.generate import fast
from local.model.wavenet import LAYERS


def plan_bias_model(model, config):
    """A Keras model from the renderer's ``plan`` input (B, F + 2 * plan_width, bands) to every layer's plan term,
    stacked: (B, F, L, 2D) float32."""
    import keras
    from keras import ops
    plan_input = next(x for x in model.inputs if x.name.startswith("plan"))
    terms = [model.get_layer(LAYERS.plan(i)).output for i in range(config.n_layers)]
    return keras.Model(plan_input, ops.stack(terms, axis=2))


def plan_biases(model, config, plans):
    """Each frame's plan term of every layer: ``plans`` (B, F + 2 * plan_width, bands) float32 log-mel dB ->
    (B, F, L, 2D) float32 (F frames play samples 0 .. F * plan_hop - 1)."""
    plans = np.asarray(plans, np.float32)
    return np.ascontiguousarray(np.asarray(plan_bias_model(model, config).predict_on_batch(plans), np.float32))


def render(weights, state, biases, n_samples, *, hop, temperature=1.0, threads=None, forced_codes=None, record=False,
           min_p=0.0):
    """:func:`local.generate.fast.generate` of ``n_samples`` codes for every stream, each sample playing its plan
    frame: sample t (counted from the stream's start, ``state["t"]``) takes ``biases[:, t // hop]``.

    biases (streams, F, L, 2D) from :func:`plan_biases`, F >= ceil((state["t"] + n_samples) / hop). The kernel
    moves each stream's bias to the next frame's as it reaches it. Returns what ``fast.generate`` returns
    (codes (streams, n) int32, or with ``record`` also the probabilities and logits).
    """
    return fast.generate(weights, state, n_samples, temperature, forced_codes=forced_codes, record=record,
                         threads=threads, min_p=min_p, plan_bias=biases, plan_hop=hop)


def render_in_chunks(weights, state, biases, n_samples, *, hop, temperature, chunk, threads=0, progress=None,
                     min_p=0.0):
    """:func:`render` in chunks of about ``chunk`` samples (the same codes as one call), updating ``progress``
    after each; returns (codes (streams, n_samples) int32, seconds spent)."""
    pieces = []
    started = time.perf_counter()
    for done in range(0, n_samples, chunk):
        pieces.append(render(weights, state, biases, min(chunk, n_samples - done), hop=hop, temperature=temperature,
                             threads=threads, min_p=min_p))
        if progress is not None:
            progress.update(pieces[-1].size)
    return np.concatenate(pieces, axis=1), time.perf_counter() - started
