"""What every stage needs and that knows no music: the config block and its checks (config, checks), one way to
write a file atomically (fileio), run locks (locks), quiet TensorFlow start-up (quiet) and the PNG plots
(plots).

May import: nothing else in local. Never a package after it in local/__init__.py's order, nor aws/ or a run_
script.

Names are imported on first use (``from local.core import name`` or ``local.core.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('checks', 'config', 'fileio', 'locks', 'plots', 'quiet')
_OWNERS = {'CONFIG_TYPES': 'config',
           'COUNT_KEYS': 'config',
           'ConfigError': 'config',
           'DISK_FULL_ERRNOS': 'config',
           'DirectoryLock': 'locks',
           'HELD_FDS': 'locks',
           'LOCK_NAME': 'locks',
           'LockHeld': 'locks',
           'MAX_COUNT_PER_CORE': 'config',
           'ModelSettings': 'config',
           'QUIET_MODULES': 'quiet',
           'StageError': 'config',
           'TEMP_PREFIX': 'fileio',
           'acquire_lock': 'locks',
           'atomic_dir': 'fileio',
           'atomic_path': 'fileio',
           'atomic_write': 'fileio',
           'available_memory_bytes': 'checks',
           'check_choices': 'config',
           'check_minimums': 'config',
           'check_values': 'config',
           'close_held_in_child': 'locks',
           'coerce_value': 'config',
           'config_file_values': 'config',
           'config_keys': 'config',
           'configure': 'config',
           'disk_full_line': 'config',
           'evaluation_dataset_problem': 'checks',
           'fail': 'config',
           'fsync_dir': 'fileio',
           'generation_cost_line': 'checks',
           'generation_memory_bytes': 'checks',
           'generation_problem': 'checks',
           'help_text': 'config',
           'input_folder_problem': 'checks',
           'key_comments': 'config',
           'max_count': 'config',
           'output_folder_problem': 'checks',
           'parse_value': 'config',
           'plot_loss': 'plots',
           'plot_spectrogram': 'plots',
           'publish_file': 'fileio',
           'quiet_tensorflow_import': 'quiet',
           'read_config_file': 'config',
           'read_holder': 'locks',
           'read_json': 'fileio',
           'remove_stale_temps': 'fileio',
           'resolve_config': 'config',
           'resume_dataset_problem': 'checks',
           'save_config': 'config',
           'save_figure': 'plots',
           'shared_folder_problem': 'checks',
           'split_arguments': 'config',
           'split_problem': 'checks',
           'stage_main': 'config',
           'stderr_descriptor_captured': 'quiet',
           'temp_path_for': 'fileio',
           'write_bytes_atomic': 'fileio',
           'write_json_atomic': 'fileio',
           'write_text_atomic': 'fileio'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
