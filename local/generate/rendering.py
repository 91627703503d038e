"""Rendering a plan: the per-frame plan terms the fast generator (local/generate/fast.py: ``generate`` and
``generate_in_chunks`` with ``plan_bias`` and ``plan_hop``) adds while it plays a renderer's plan frames.

A renderer adds, in every gated layer, ``layer{i}_plan`` of its conditioning network's vector of the frame the
sample plays (local/model/wavenet.py). That term is a bias per (stream, layer) that changes once per frame, so
it is computed for every frame once, by the Keras model's own layers (one batched pass over the plan, exact),
and the kernel moves the stream biases to the next frame's as it reaches it: a plan costs one bias update per
``plan_hop`` samples (bench_generation.py: ``plan_speed_ratio``).
"""
import numpy as np

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
