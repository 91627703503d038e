"""A key a stage script shares with its Spark twin, or with the config dataclass that reads it, has one default."""
import dataclasses
import importlib

import pytest

from local.audio.decoding import DecodeSettings
from local.core.config import config_keys
from local.dataset.settings import SplitSettings
from local.model.tagger import TaggerConfig
from local.model.wavenet import WaveNetConfig

# a dataclass field read from a config key of another name
RENAMED = {"silence_threshold_db": "silence_threshold"}
# keys both scripts have on purpose with other defaults (the path each writes to)
OWN_DEFAULTS = {"run_dir"}


def defaults(module_name):
    return config_keys(vars(importlib.import_module(module_name)))


def field_defaults(cls, prefix=""):
    return {RENAMED.get(f.name, prefix + f.name): f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def differing(one, two, skip=()):
    """The keys both dicts have whose values differ (lists and tuples compared as lists)."""
    def plain(value):
        return list(value) if isinstance(value, (list, tuple)) else value
    return {k: (one[k], two[k]) for k in sorted(set(one) & set(two) - set(skip)) if plain(one[k]) != plain(two[k])}


@pytest.mark.parametrize("script, twin, classes", [
    ("run_transformation_scripts", "aws.spark_preprocessing", [(DecodeSettings, ""), (SplitSettings, "")]),
    ("run_model_training", "aws.spark_training", [(WaveNetConfig, ""), (TaggerConfig, "tagger_")]),
])
def test_a_script_its_spark_twin_and_its_config_classes_share_defaults(script, twin, classes):
    script_keys, twin_keys = defaults(script), defaults(twin)
    shared = set(script_keys) & set(twin_keys)
    assert len(shared) >= 8, shared  # the twins do share their model and data keys
    assert differing(script_keys, twin_keys, OWN_DEFAULTS) == {}
    for cls, prefix in classes:
        fields = field_defaults(cls, prefix)
        assert set(fields) & set(script_keys), cls  # the dataclass reads keys of this script
        assert differing(script_keys, fields) == {}, cls
        assert differing(twin_keys, fields) == {}, cls


def test_the_comparison_can_fail():
    assert differing({"a": [1, 2], "b": 1, "c": 0}, {"a": (1, 2), "b": 2}) == {"b": (1, 2)}
