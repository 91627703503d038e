"""Training the WaveNet: its model.json, the windowed next-sample loss in bits, the train and eval steps and
its :class:`local.train.loop.Task`.
"""


from local.dataset import windows as dataset
from local.model.wavenet import build_wavenet
from local.store import dataset_files
from local.train.loop import LN2, Task, gradient_step, make_optimizer, use_threads

# --- model.json ----------------------------------------------------------------------------------------

def wavenet_model_json(wavenet_config, *, genres, sample_rate, data_dir):
    """The ``model.json`` dict of a WaveNet run: ``kind``, ``model`` (WaveNetConfig.to_json), genres (index = genre_id),
    sample_rate (Hz), quantization_channels, receptive_field (samples, the sample-level stack's),
    total_receptive_field (samples, both stacks) and total_receptive_field_seconds, context_past, data_dir."""
    return {"kind": "wavenet", "model": wavenet_config.to_json(), "genres": list(genres),
            "sample_rate": int(sample_rate),
            "quantization_channels": wavenet_config.quantization_channels,
            "receptive_field": wavenet_config.receptive_field, **wavenet_config.receptive_field_json(sample_rate),
            "data_dir": str(data_dir)}


def describe(model, wavenet_config, *, sample_rate, n_train, n_valid, n_valid_windows):
    """One line on what is trained: parameters, receptive field, tracks and validation windows."""
    field, total = wavenet_config.receptive_field, wavenet_config.total_receptive_field
    context = (f" (with the context stack {total} samples, {total / sample_rate:.2f} s)"
               if wavenet_config.has_context else "")
    if wavenet_config.has_plan:
        context += (f", rendering a plan of {wavenet_config.plan_bands} log-mel bands at "
                    f"{sample_rate / wavenet_config.plan_hop:g} frames/s (+-{wavenet_config.plan_width} frames)")
    return (f"{model.count_params():,} parameters, receptive field {field} samples "
            f"({field / sample_rate * 1000:.0f} ms){context}, {n_train} train / {n_valid} valid tracks, "
            f"{n_valid_windows} valid windows")


# --- the loss and the compiled steps -------------------------------------------------------------------

def window_loss(targets, logits, window):
    """Mean sparse categorical cross-entropy in nats over the last ``window`` positions.

    targets (B, window) int32; logits (B, T, Q) with T >= window. Returns a scalar tensor (nats/sample);
    divide by ln 2 (:data:`LN2`) for bits/sample.
    """
    import tensorflow as tf
    logits = logits[:, -window:, :]
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))


def make_train_step(model, wavenet_config, optimizer, window, jit_compile=False, parts=1):
    """A compiled ``step(features, targets) -> loss in nats``: one Adam update on the window loss
    (``parts``: see :func:`gradient_step`).

    features: {"codes": (B, R+W-1) int32, "genre_id": (B,) int32 [, "plan": (B, F, bands) float32]}; targets
    (B, W) int32.
    """
    def loss_of(features, targets):
        logits = model(wavenet_config.model_inputs(features["codes"], features["genre_id"], features.get("plan")),
                       training=True)
        return window_loss(targets, logits, window)

    return gradient_step(model, optimizer, loss_of, jit_compile=jit_compile, parts=parts)


def make_eval_step(model, wavenet_config, window):
    """A compiled ``step(features, targets) -> summed loss in nats over the batch's targets``."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def eval_step(features, targets):
        logits = model(wavenet_config.model_inputs(features["codes"], features["genre_id"], features.get("plan")),
                       training=False)[:, -window:, :]
        return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))

    return eval_step


def evaluate_bits(eval_step, valid_set, batch_size):
    """Mean loss in bits/sample of ``valid_set`` ((features dict, targets) numpy arrays), in batches."""
    features, targets = valid_set
    total = 0.0
    for first in range(0, len(targets), batch_size):
        part = {k: v[first:first + batch_size] for k, v in features.items()}
        total += float(eval_step(part, targets[first:first + batch_size]))
    return total / targets.size / LN2


def window_plan(wavenet_config, sample_rate):
    """The :class:`local.dataset.windows.WindowPlan` of a renderer's windows, or None for a WaveNet without a plan."""
    settings = wavenet_config.plan_settings(sample_rate)
    if settings is None:
        return None
    return dataset.WindowPlan(settings, wavenet_config.plan_width, wavenet_config.context_past)


def wavenet_task(wavenet_config, *, train_tracks, valid_tracks, config, sample_rate=16000):
    """The WaveNet's :class:`Task`: the model (seeded by ``config["seed"]``), Adam, the resumable stream of
    train windows (local.dataset.windows.TrainStream) and the fixed validation windows.

    config  the stage-3 config (batch_size, window, learning_rate, grad_clip, cache_tracks,
            prefetch_batches, valid_windows, seed, jit_compile, threads); ``sample_rate`` (Hz) sets a renderer's plan
    """
    import keras

    # a window reads the context's past too (context_past codes, only the context stack's), then R + W - 1
    field, window, batch_size = wavenet_config.window_field, config["window"], config["batch_size"]
    parts = min(use_threads(config.get("threads", 0)), batch_size)  # before TensorFlow starts its thread pools
    keras.utils.set_random_seed(config["seed"])
    model = build_wavenet(wavenet_config)
    optimizer = make_optimizer(config["learning_rate"], config["grad_clip"])
    # windows may also start at a track's first sample after the silence the generator starts from (its
    # context stack would otherwise hear that silence only when generating; docs/demo-recipe-context.md)
    lead = field if config.get("start_from_silence", False) else 0
    train_tracks, read_train = dataset.lead_in(train_tracks, dataset_files.read_track_codes, lead,
                                               wavenet_config.silence_code)
    valid_tracks, read_valid = dataset.lead_in(valid_tracks, dataset_files.read_track_codes, lead,
                                               wavenet_config.silence_code)
    plan = window_plan(wavenet_config, sample_rate)  # a renderer's windows carry their plan frames
    transform = wavenet_config.model_codes if wavenet_config.pre_emphasis else None
    stream = dataset.TrainStream(train_tracks, field, window, batch_size, seed=config["seed"],
                                 cache_tracks=config["cache_tracks"], read_codes=read_train, window_plan=plan,
                                 code_noise=config.get("code_noise", 0.0),
                                 quantization_channels=wavenet_config.quantization_channels, code_transform=transform)
    valid_set = dataset.validation_set(valid_tracks, field, window, config["valid_windows"], read_codes=read_valid,
                                       window_plan=plan, code_transform=transform)
    eval_step = make_eval_step(model, wavenet_config, window)
    return Task(model=model, optimizer=optimizer,
                batches=lambda examples_done: dataset.to_tf_dataset(stream, examples_done, config["prefetch_batches"]),
                train_step=make_train_step(model, wavenet_config, optimizer, window,
                                           jit_compile=config.get("jit_compile", False), parts=parts),
                validate=lambda: {"valid_bits_per_sample": evaluate_bits(eval_step, valid_set, batch_size)},
                batch_size=batch_size, samples_per_example=window,
                baseline_bits=wavenet_config.uniform_bits)
