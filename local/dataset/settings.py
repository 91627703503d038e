"""Stage 2's steps: check the config, find the inputs (and keep their paths inside raw_dir), decode them in a
pool of processes, assign splits, write the dataset, say what happened. ``run_transformation_scripts.py`` and
``aws/spark_preprocessing.py`` both call these functions; only where the files live and who decodes them (a
process pool or Spark executors) differs. Decoding one file is local/audio/decoding.py's (one decode path for
every caller).

Internal names carry units: ``_seconds``, ``_db``, ``_bytes``; where a size is shown to a person it is in
MB = 10**6 bytes. The config key ``silence_threshold`` is ``silence_threshold_db`` inside.
"""
import dataclasses
import json
import math
import os
import re

from local.audio import decoding
from local.core import checks
from local.core.config import ConfigError
from local.core.fileio import read_json
from local.dataset.inputs import list_inputs
from local.store import dataset_files as store
from local.store.layout import DatasetDir

# stage 2's config keys that decide the dataset's content (the rest say where and how fast)
DATASET_KEYS = ("sample_rate", "quantization_channels", "trim_silence", "silence_threshold", "min_seconds",
                "valid_fraction", "test_fraction", "split_seed")


@dataclasses.dataclass(frozen=True)
class SplitSettings:
    """How stage 2 assigns train/valid/test to a track the source gives no split."""
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0


def stage_settings(**keys):
    """Stage 2's dataset keys (:data:`DATASET_KEYS`, named as in the config) -> (decoding.DecodeSettings, SplitSettings).

    A key not given keeps its default; an unknown one raises TypeError.
    """
    unknown = sorted(set(keys) - set(DATASET_KEYS))
    if unknown:
        raise TypeError(f"not a stage-2 dataset key: {', '.join(unknown)}")
    if "silence_threshold" in keys:
        keys["silence_threshold_db"] = keys.pop("silence_threshold")

    def fields_of(cls):
        return {k: v for k, v in keys.items() if k in {f.name for f in dataclasses.fields(cls)}}
    return decoding.DecodeSettings(**fields_of(decoding.DecodeSettings)), SplitSettings(**fields_of(SplitSettings))


def dataset_keys(config):
    """The :data:`DATASET_KEYS` part of a stage-2 config, for :func:`preprocess` and its Spark twin."""
    return {key: config[key] for key in DATASET_KEYS}


def check_config(config):
    """Raise ConfigError (one line: the key, its value and what it accepts) for the first stage-2 key that
    cannot work. ``config``: the resolved config dict of either stage-2 runner."""
    valid_fraction = config["valid_fraction"]

    def finite(key):
        return isinstance(config[key], (int, float)) and math.isfinite(config[key])
    problems = (
        ("sample_rate", not decoding.MIN_SAMPLE_RATE_HZ <= config["sample_rate"] <= decoding.MAX_SAMPLE_RATE_HZ,
         f"between {decoding.MIN_SAMPLE_RATE_HZ} and {decoding.MAX_SAMPLE_RATE_HZ} Hz, like 16000"),
        ("quantization_channels", not 2 <= config["quantization_channels"] <= 256,
         "between 2 and 256 (codes are one byte)"),
        ("valid_fraction", not 0 <= valid_fraction < 1, "at least 0 and below 1"),
        ("test_fraction", not 0 <= config["test_fraction"] < 1 - valid_fraction,
         f"at least 0 and below {1 - valid_fraction:g}, so that tracks remain for training"),
        ("silence_threshold", not (finite("silence_threshold") and 0 < config["silence_threshold"] <= 120),
         "more than 0 and at most 120 dB below the peak, like 60"),
        ("min_seconds", not (finite("min_seconds") and config["min_seconds"] > 0), "more than 0 seconds, like 1"),
        ("workers", config["workers"] < 1, "1 or more"),
    )
    for key, bad, accepted in problems:
        if bad:
            raise ConfigError(f"{key}={config[key]!r} must be {accepted}")
    if checks.shared_folder_problem(config, "out_dir", "raw_dir"):
        raise ConfigError(checks.shared_folder_problem(config, "out_dir", "raw_dir"))
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", config["out_dir"]):  # a local folder (Spark may write to a URI)
        if checks.output_folder_problem(config["out_dir"], "out_dir"):
            raise ConfigError(checks.output_folder_problem(config["out_dir"], "out_dir"))


def check_raw_dir(raw_dir, hint="FOLDER"):
    """Raise ConfigError when the local folder ``raw_dir`` is a file, is missing or holds no audio file."""
    if checks.input_folder_problem(raw_dir, "raw_dir"):
        raise ConfigError(checks.input_folder_problem(raw_dir, "raw_dir"))
    if not os.path.isdir(raw_dir):
        raise ConfigError(f"raw_dir={raw_dir!r} does not exist: run run_webscraper.py first or pass --raw_dir={hint}")
    if not list_inputs(raw_dir):
        raise ConfigError(f"raw_dir={raw_dir!r} holds no audio files: run run_webscraper.py first or pass "
                          f"--raw_dir={hint}")


INDEX_WITH_RATE = ["track_id", "genre", "genre_id", "split", "n_samples", "source_sha256", "source_path",
                   "sample_rate"]  # the index columns stage 2 reads: the rows' own rate is checked too
SETTINGS_METADATA_KEY = b"waveforms.settings"  # the Parquet key-value metadata each part carries


def part_settings(settings):
    """The settings every row of a dataset must share (decoding.DecodeSettings -> dict under config key names), as
    written into each part's metadata (:data:`SETTINGS_METADATA_KEY`) by both stage-2 runners."""
    return {"sample_rate": int(settings.sample_rate), "quantization_channels": int(settings.quantization_channels),
            "trim_silence": bool(settings.trim_silence), "silence_threshold": float(settings.silence_threshold_db),
            "min_seconds": float(settings.min_seconds)}


def part_metadata(settings):
    """The Parquet key-value metadata of a part made with ``settings`` (decoding.DecodeSettings)."""
    return {SETTINGS_METADATA_KEY: json.dumps(part_settings(settings)).encode()}


SETTINGS_SIDECAR = DatasetDir.SETTINGS_SIDECAR  # in tracks/: the settings of the parts Spark wrote (its writer sets no metadata)


def settings_sidecar_path(dataset_dir):
    """Where the settings of Spark-written parts are kept (``tracks/_settings.json``; readers skip ``_`` names)."""
    return os.path.join(dataset_dir, "tracks", SETTINGS_SIDECAR)


def read_settings_sidecar(path):
    """The settings dict in a :data:`SETTINGS_SIDECAR` file, or None when it is missing or unreadable."""
    recorded = read_json(path)
    return recorded if isinstance(recorded, dict) else None


def settings_of_part(metadata, info=None, recorded=None):
    """The settings dict a part was made with, from its key-value ``metadata`` (bytes keys; {} or None when
    it has none). A part without it (written by Spark, or older) falls back to ``recorded`` (the
    :data:`SETTINGS_SIDECAR` dict), then to ``info`` (dataset.json). None when none says."""
    metadata = metadata or {}
    if SETTINGS_METADATA_KEY in metadata:
        return json.loads(metadata[SETTINGS_METADATA_KEY])
    if recorded:
        return recorded
    if info:
        return {"sample_rate": info.get("sample_rate"), "quantization_channels": info.get("quantization_channels"),
                "trim_silence": info.get("trim_silence"), "silence_threshold": info.get("silence_threshold_db"),
                "min_seconds": info.get("min_seconds")}
    return None


def check_same_settings(out_dir, info, index, settings, part_metadatas=None, recorded=None):
    """Raise ValueError when ``out_dir`` already holds tracks made with other settings than ``settings``.

    The rows are the truth (a killed run leaves no dataset.json, or a stale one): each part's metadata
    (:data:`SETTINGS_METADATA_KEY`), and the rows' own ``sample_rate``; ``info`` (its dataset.json dict, {}
    if none) only for parts without metadata. ``index``: its index rows (their ``sample_rate`` checked when read
    with :data:`INDEX_WITH_RATE`); ``settings``: decoding.DecodeSettings;
    ``part_metadatas``: the key-value metadata of each part and ``recorded``: the :data:`SETTINGS_SIDECAR`
    dict (defaults: read from the local folder ``out_dir``). Both runners write what this reads: parts with
    metadata (local), the sidecar (Spark).
    """
    if part_metadatas is None:
        part_metadatas = [store.open_part(part).schema_arrow.metadata for part in store.list_parts(out_dir)]
        recorded = read_settings_sidecar(settings_sidecar_path(out_dir))
    made = [settings_of_part(metadata, info, recorded) for metadata in part_metadatas]
    made += [{"sample_rate": rate} for rate in sorted({int(row["sample_rate"]) for row in index if "sample_rate" in row})]
    for old in filter(None, made):
        for key, value in part_settings(settings).items():
            if old.get(key) is not None and old[key] != value:
                raise ValueError(f"{out_dir} holds tracks made with {key}={old[key]}; use another out_dir or "
                                 f"--{key}={old[key]}")


