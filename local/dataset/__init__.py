"""Stage 2 and the window reader: its settings and checks (settings), the inputs and their fingerprints (inputs),
the track-level split (splits), the decode-and-write pipeline (build), the windows training reads (windows)
and code statistics (code_statistics).

May import: core, store, audio, collect. Never a package after it in local/__init__.py's order, nor aws/ or a
run_ script.

Names are imported on first use (``from local.dataset import name`` or ``local.dataset.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('build', 'code_statistics', 'inputs', 'settings', 'splits', 'windows')
_OWNERS = {'DATASET_KEYS': 'settings',
           'EVERY_SPLIT_MIN_TRACKS': 'splits',
           'GenreBalancedStream': 'windows',
           'INDEX_WITH_RATE': 'settings',
           'SETTINGS_METADATA_KEY': 'settings',
           'SETTINGS_SIDECAR': 'settings',
           'SOURCE_STATS_NAME': 'inputs',
           'SPLITS_PENDING_NAME': 'build',
           'SourceFingerprints': 'inputs',
           'SplitSettings': 'settings',
           'TrainStream': 'windows',
           'assign_genre_ids': 'build',
           'batches': 'build',
           'check_config': 'settings',
           'check_raw_dir': 'settings',
           'check_same_settings': 'settings',
           'code_histogram': 'code_statistics',
           'concatenate_windows': 'windows',
           'cross_entropy_bits': 'code_statistics',
           'dataset_info': 'build',
           'dataset_keys': 'settings',
           'decode_settings_of': 'settings',
           'ensure_every_split_per_genre': 'splits',
           'ensure_train_per_genre': 'splits',
           'entropy_bits': 'code_statistics',
           'examples_per_track': 'windows',
           'genres_with_data': 'build',
           'hash_split': 'splits',
           'hash_unit': 'splits',
           'input_path_problem': 'inputs',
           'inputs_from_files': 'inputs',
           'inputs_from_manifest': 'inputs',
           'known_genres': 'build',
           'lead_in': 'windows',
           'list_inputs': 'inputs',
           'normalize_split': 'splits',
           'outside_raw_dir_reason': 'inputs',
           'part_metadata': 'settings',
           'part_settings': 'settings',
           'plan_tracks': 'build',
           'preprocess': 'build',
           'preprocess_locked': 'build',
           'process_batch_star': 'build',
           'read_settings_sidecar': 'settings',
           'resplit_usable': 'splits',
           'run_inputs': 'build',
           'settings_of_part': 'settings',
           'settings_sidecar_path': 'settings',
           'silence_first': 'windows',
           'split_refused': 'build',
           'split_tracks': 'windows',
           'split_written_rows': 'build',
           'stage_settings': 'settings',
           'summary_lines': 'build',
           'to_tf_dataset': 'windows',
           'track_row': 'build',
           'track_starts': 'windows',
           'unify_genres': 'build',
           'unigram_bits': 'windows',
           'usable_tracks': 'windows',
           'valid_starts': 'windows',
           'valid_window_counts': 'windows',
           'validation_set': 'windows',
           'validation_windows': 'windows',
           'windows_from_codes': 'windows'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
