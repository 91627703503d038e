"""One-line checks of folders and of what a run is asked to do, shared by the stage scripts (issue 12).

Each function returns one line naming the key and what to do, or "" when all is well; the scripts pass a
non-empty line to :func:`local.core.config.fail`. Only the standard library is imported here.
"""
import math
import os
import tempfile


def input_folder_problem(path, key):
    """``path`` given as ``key`` must be a folder: a file (``--raw_dir=/etc/passwd``) is said to be one."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{key}={path!r} is a file, not a folder: pass the folder (--{key}=FOLDER)"
    return ""


def output_folder_problem(path, key):
    """Why ``path`` cannot be used as the output folder ``key`` (a file, or a folder this user cannot write),
    or "". The folder is created when missing; a probe file shows it is writable, and is removed."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{key}={path!r} is a file, not a folder: pass another --{key}"
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return f"{key}={path!r} cannot be written ({e.strerror or e}): pass a writable --{key}"
    return ""


def shared_folder_problem(config, out_key, *other_keys):
    """Why the output folder ``config[out_key]`` cannot be written: it is the folder of another key (a stage's
    input, whose own config.json and failures.csv it would overwrite), or "". URIs and empty values are not
    compared."""
    def real(path):
        return os.path.realpath(os.path.expanduser(path)) if path and "://" not in path else None
    out = real(config.get(out_key, ""))
    for key in other_keys:
        if out and real(config.get(key, "")) == out:
            return (f"{out_key}={config[out_key]!r} is {key} too: its config.json and failures.csv would be "
                    f"overwritten; pass another --{out_key}")
    return ""


def resume_dataset_problem(saved, genres, sample_rate, quantization_channels, data_dir, run_dir):
    """Why a run whose ``model.json`` says ``saved`` cannot resume on ``data_dir`` (its ``genres`` list, index =
    genre id, ``sample_rate`` Hz and ``quantization_channels``): the ids must keep meaning the same genres
    (new genres may only come after the saved ones) and the rates must match. "" when it can."""
    fix = f"pass the --data_dir it was trained on ({saved.get('data_dir') or 'see model.json'}) or another --run_dir"
    if int(saved.get("sample_rate", sample_rate)) != int(sample_rate):
        return (f"{run_dir} was trained at sample_rate={saved['sample_rate']} Hz but {data_dir} holds "
                f"{sample_rate} Hz tracks: {fix}")
    if int(saved.get("quantization_channels", quantization_channels)) != int(quantization_channels):
        return (f"{run_dir} predicts {saved['quantization_channels']} codes but {data_dir} holds "
                f"{quantization_channels}-level codes: {fix}")
    old = list(saved.get("genres") or [])
    if old and list(genres[:len(old)]) != old:
        return (f"{run_dir} was trained on genres {', '.join(old)} (ids 0..{len(old) - 1}) but {data_dir} "
                f"numbers them {', '.join(genres)}: {fix}")
    return ""


def evaluation_dataset_problem(model_sample_rate, data_info, data_dir, run_dir):
    """Why the model of ``run_dir`` (``model_sample_rate`` Hz) cannot be scored on ``data_dir``, or ""."""
    rate = (data_info or {}).get("sample_rate")
    if rate is not None and int(rate) != int(model_sample_rate):
        return (f"{data_dir} holds {rate} Hz tracks but the model in {run_dir} was trained at "
                f"{model_sample_rate} Hz: its bits/sample would mean nothing; pass a --data_dir made with "
                f"--sample_rate={model_sample_rate}")
    return ""


def available_memory_bytes():
    """MemAvailable from /proc/meminfo, in bytes (None where there is no /proc)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def generation_memory_bytes(streams, seconds, sample_rate, receptive_field, residual_channels):
    """Bytes stage 4 holds for ``streams`` clips of ``seconds``: per sample an int32 code, a float32 sample and
    an int16 WAV sample (10 bytes), plus each stream's ring of past activations (receptive field x residual
    channels, float32)."""
    n_samples = int(round(seconds * sample_rate))
    return int(streams) * (n_samples * 10 + int(receptive_field) * int(residual_channels) * 4)


def generation_problem(seconds, temperature, prime_seconds, streams, sample_rate, receptive_field,
                       residual_channels, available=None):
    """One line when stage 4 is asked for something meaningless (nan, inf) or that cannot fit in memory, or "".

    ``available``: bytes of memory there are (default: /proc/meminfo's MemAvailable).
    """
    for name, value in (("seconds", seconds), ("temperature", temperature), ("prime_seconds", prime_seconds)):
        if not math.isfinite(value):
            return f"{name}={value} must be a finite number (e.g. --{name}=4)" if name != "temperature" else \
                "temperature=nan must be a finite number >= 0 (e.g. --temperature=1)"
    need = generation_memory_bytes(streams, seconds, sample_rate, receptive_field, residual_channels)
    available = available_memory_bytes() if available is None else available
    if available is not None and need > 0.8 * available:
        return (f"streams={streams} x seconds={seconds:g} at {sample_rate} Hz needs about {need / 1e9:.1f} GB but "
                f"{available / 1e9:.1f} GB are free: lower --streams or --seconds")
    return ""


# the defaults of the keys that size a WaveNet's training (run_model_training.py), to find the one to lower
TRAINING_SIZE_DEFAULTS = {"residual_channels": 32, "dilation_channels": 32, "skip_channels": 128,
                          "quantization_channels": 256, "batch_size": 8, "window": 4000}


def training_memory_bytes(layers, receptive_field, *, residual_channels, dilation_channels, skip_channels,
                          quantization_channels, batch_size, window, filter_width=2, **_):
    """Bytes a WaveNet's training step holds, estimated before anything is built: each parameter (float32)
    four times (weights, gradient, Adam's two moments), and per example of ``receptive_field + window - 1``
    positions each layer's kept activations (2 x dilation_channels pre-gate, dilation_channels gated, skip and
    residual channels, tanh and sigmoid; float32, and as much again for their gradients) plus the head's over
    ``window`` positions (twice skip_channels, twice the logits). ``layers``: the number of dilated layers.
    An order of magnitude to refuse the absurd, not a budget (the default model: 2.7 GB)."""
    r, d, s, q = (int(residual_channels), int(dilation_channels), int(skip_channels), int(quantization_channels))
    params = q * r + int(layers) * (int(filter_width) * r * 2 * d + 2 * d + d * s + s + d * r + r) + s * s + s + s * q + q
    positions = int(batch_size) * (int(receptive_field) + int(window) - 1)
    activations = positions * int(layers) * (5 * d + s + r) + int(batch_size) * int(window) * 2 * (s + q)
    return 16 * params + 8 * activations  # an activation: its value and, going back, its gradient


def training_memory_problem(config, layers, receptive_field, available=None):
    """One line naming the key to lower when a WaveNet's training cannot fit in memory (more than is free:
    ``--residual_channels=1000000``, ``--batch_size=100000000``), or "". The key named is the one whose
    default would save the most. ``available``: bytes (default: /proc/meminfo's MemAvailable)."""
    keys = {k: config[k] for k in TRAINING_SIZE_DEFAULTS if k in config}
    if len(keys) < len(TRAINING_SIZE_DEFAULTS):
        return ""  # a trainer without these keys (the tagger's) is sized otherwise

    def need(values):
        return training_memory_bytes(layers, receptive_field, filter_width=config.get("filter_width", 2), **values)

    total = need(keys)
    available = available_memory_bytes() if available is None else available
    if available is None or total <= available:  # an estimate: only what cannot fit at all is refused
        return ""
    key = min(keys, key=lambda k: need(dict(keys, **{k: min(keys[k], TRAINING_SIZE_DEFAULTS[k])})))
    return (f"--{key}={keys[key]}: training would need about {total / 1e9:,.1f} GB of memory but "
            f"{available / 1e9:.1f} GB are free: lower --{key} (default {TRAINING_SIZE_DEFAULTS[key]})")


def sampling_memory_problem(sample_seconds, n_genres, sample_rate, receptive_field, residual_channels,
                            available=None):
    """One line when the clips training samples (one per genre, ``sample_seconds`` each) cannot fit in memory
    (``--sample_seconds=1e12``), or "": said before training starts, not when the first clips are due."""
    need = generation_memory_bytes(max(1, n_genres), sample_seconds, sample_rate, receptive_field, residual_channels)
    available = available_memory_bytes() if available is None else available
    if available is not None and need > 0.8 * available:
        return (f"--sample_seconds={sample_seconds:g}: {max(1, n_genres)} clip(s) at {sample_rate} Hz need about "
                f"{need / 1e9:,.1f} GB of memory but {available / 1e9:.1f} GB are free: lower --sample_seconds")
    return ""


def generation_cost_line(streams, seconds, sample_rate, receptive_field, residual_channels):
    """What a generation will cost, said before it starts: samples to generate and the memory they need."""
    n = int(streams) * int(round(seconds * sample_rate))
    need = generation_memory_bytes(streams, seconds, sample_rate, receptive_field, residual_channels)
    return f"generating {streams} x {seconds:g} s = {n:,} samples, about {need / 1e6:,.0f} MB of memory"


def plan_memory_problem(n_frames, bands, available=None):
    """One line when the plans of a prior's tracks (``n_frames`` frames of ``bands`` float32 in all, held
    twice: each track's plan and its floor-padded copy) cannot fit in half the free memory, or "".
    ``available``: bytes (default: /proc/meminfo's MemAvailable)."""
    need = 2 * 4 * int(n_frames) * int(bands)
    available = available_memory_bytes() if available is None else available
    if available is not None and need > 0.5 * available:
        return (f"the plans of its tracks ({int(n_frames):,} frames x {bands} bands) need about {need / 1e9:,.1f} GB "
                f"but {available / 1e9:.1f} GB are free: train the prior on fewer tracks or fewer --plan_bands")
    return ""


def split_problem(n_tracks, n_train, n_valid, data_dir):
    """When a dataset cannot give both a train and a valid track at all (fewer than two tracks), say that -
    not "lower --window" - or ""."""
    if n_tracks < 2:
        return (f"{data_dir} holds {n_tracks} track(s): training needs at least one train and one valid track, "
                f"so no valid split exists; add tracks and rerun stage 2")
    return ""  # train or valid empty with more tracks: the stage's own message (it names --valid_fraction/--window)
