"""The models, each described once (a config dataclass that reads and writes model.json): the WaveNet (wavenet)
and the genre tagger (tagger).

May import: core, store, audio, collect, dataset. Never a package after it in local/__init__.py's order, nor
aws/ or a run_ script.

Names are imported on first use (``from local.model import name`` or ``local.model.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('tagger', 'wavenet')
_OWNERS = {'BN_MOMENTUM': 'tagger',
           'DEFAULT_CHANNELS': 'tagger',
           'EMBEDDING_LAYER': 'tagger',
           'FEATURES': 'tagger',
           'FORMULATIONS': 'wavenet',
           'KIND': 'tagger',
           'TaggerConfig': 'tagger',
           'WINDOWS_PER_VISIT': 'tagger',
           'WaveNetConfig': 'wavenet',
           'analyze': 'tagger',
           'build_head': 'tagger',
           'build_tagger': 'tagger',
           'build_wavenet': 'wavenet',
           'check_config': 'tagger',
           'codes_to_waveform': 'tagger',
           'decode_settings': 'tagger',
           'default_dilations': 'wavenet',
           'dilated_conv_class': 'wavenet',
           'model_structure': 'wavenet',
           'mu_law_table': 'tagger',
           'read_run_model': 'wavenet',
           'read_tagger_run': 'tagger',
           'readout_features': 'tagger',
           'readout_model': 'tagger',
           'receptive_field': 'wavenet',
           'softmax': 'tagger',
           'structure_mismatch': 'wavenet',
           'tagger_model_json': 'tagger',
           'track_predictions': 'tagger',
           'track_windows': 'tagger',
           'window_starts': 'tagger'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
