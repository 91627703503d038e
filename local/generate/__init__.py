"""Making audio from a trained WaveNet: the compiled incremental generator (fast, over kernel and simd, with
weights folded out of Keras by weights), the slow reference generator (reference), clips written to a folder
(clip_files) and samples written while training (samples).

May import: core, store, audio, collect, dataset, model. Never a package after it in local/__init__.py's
order, nor aws/ or a run_ script.

Names are imported on first use (``from local.generate import name`` or ``local.generate.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('clip_files', 'fast', 'kernel', 'reference', 'samples', 'simd', 'weights')
_OWNERS = {'JUDGE_COLUMNS': 'samples',
           'SAMPLES_DIR': 'samples',
           'SamplingCallback': 'samples',
           'advance_context': 'fast',
           'check_config': 'samples',
           'clip_name': 'clip_files',
           'fold_weights': 'weights',
           'generate': 'fast',
           'generate_in_chunks': 'fast',
           'initial_state': 'fast',
           'is_sample_step': 'samples',
           'layer_input_model': 'fast',
           'naive_generate': 'reference',
           'prime_state': 'fast',
           'read_step_samples': 'samples',
           'record_judgement': 'samples',
           'sample_genres': 'samples',
           'sampling_interval': 'samples',
           'sampling_summary': 'samples',
           'step_dir': 'samples',
           'stream_genres': 'fast',
           'truncate_samples': 'samples',
           'warm_up': 'fast',
           'write_clip': 'clip_files',
           'write_clips': 'clip_files',
           'write_step_samples': 'samples'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
