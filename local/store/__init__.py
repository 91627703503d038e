"""What lies on disk and its names: the raw folder's manifest (manifest), the Parquet dataset folder
(dataset_files, parquet_cells), the run directory (rundir), a folder of generated clips (clip_folder), and
which file names are audio (audio_names). Functions here read and write files; they know no model.

May import: core. Never a package after it in local/__init__.py's order, nor aws/ or a run_ script.

Names are imported on first use (``from local.store import name`` or ``local.store.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('audio_names', 'clip_folder', 'dataset_files', 'manifest', 'parquet_cells', 'rundir')
_OWNERS = {'AUDIO_EXTENSIONS': 'manifest',
           'BIG_CELL_BYTES': 'dataset_files',
           'CHECKPOINT_FILES': 'rundir',
           'CREATED_BY': 'parquet_cells',
           'CellParquetWriter': 'parquet_cells',
           'DATA_PAGE': 'parquet_cells',
           'DamagedFile': 'dataset_files',
           'GENERATION_JSON': 'clip_folder',
           'INDEX_COLUMNS': 'dataset_files',
           'MAGIC': 'parquet_cells',
           'MANIFEST_COLUMNS': 'manifest',
           'MANIFEST_NAME': 'manifest',
           'METRICS_COLUMNS': 'rundir',
           'MODEL_KINDS': 'rundir',
           'ONE_DEFINED_VALUE_LEVELS': 'parquet_cells',
           'PENDING_NAME': 'clip_folder',
           'PHYSICAL': 'parquet_cells',
           'PartWriter': 'dataset_files',
           'SPLITS': 'dataset_files',
           'TRACK_SCHEMA': 'dataset_files',
           'UNCOMPRESSED': 'parquet_cells',
           'UTF8_CONVERTED': 'parquet_cells',
           'append_manifest_row': 'manifest',
           'append_manifest_rows': 'manifest',
           'append_metrics': 'rundir',
           'arrow_footer_metadata': 'parquet_cells',
           'binary_cells': 'dataset_files',
           'checkpoint_name': 'rundir',
           'checkpoints_dir': 'rundir',
           'claim_folder': 'clip_folder',
           'done_line': 'rundir',
           'drop_tracks': 'dataset_files',
           'ends_with_newline': 'manifest',
           'genre_key': 'manifest',
           'genre_path_problem': 'manifest',
           'genre_selector': 'manifest',
           'have_track': 'manifest',
           'inside': 'manifest',
           'is_audio_path': 'audio_names',
           'latest_checkpoint': 'rundir',
           'list_checkpoints': 'rundir',
           'list_parts': 'dataset_files',
           'load_checkpoint': 'rundir',
           'load_newest_good_checkpoint': 'rundir',
           'locked': 'rundir',
           'metrics_path': 'rundir',
           'metrics_row': 'rundir',
           'model_differences': 'rundir',
           'model_files_problem': 'rundir',
           'name_problem': 'manifest',
           'new_state': 'rundir',
           'one_row_table': 'dataset_files',
           'open_part': 'dataset_files',
           'optimizer_arrays': 'rundir',
           'owned_files': 'clip_folder',
           'place_file': 'manifest',
           'plot_metrics': 'rundir',
           'printable_path': 'manifest',
           'read_codes': 'dataset_files',
           'read_dataset_json': 'dataset_files',
           'read_index': 'dataset_files',
           'read_manifest': 'manifest',
           'read_metrics': 'rundir',
           'read_model_json': 'rundir',
           'read_rows': 'manifest',
           'read_track_codes': 'dataset_files',
           'record_evaluation': 'rundir',
           'record_track': 'manifest',
           'release_folder': 'clip_folder',
           'resume_conflict': 'rundir',
           'rewrite_parts': 'dataset_files',
           'run_kind': 'rundir',
           'safe_component': 'manifest',
           'save_checkpoint': 'rundir',
           'save_model': 'rundir',
           'save_progress': 'rundir',
           'saved_run_info': 'rundir',
           'set_splits': 'dataset_files',
           'sha256_file': 'manifest',
           'summarize': 'dataset_files',
           'tensorboard': 'rundir',
           'tensorboard_writer': 'rundir',
           'tidy_genre': 'manifest',
           'track_path': 'manifest',
           'track_row': 'manifest',
           'tracks_dir': 'dataset_files',
           'truncate_metrics': 'rundir',
           'write_dataset_files': 'dataset_files',
           'write_failures': 'dataset_files',
           'write_metrics': 'rundir',
           'write_model_json': 'rundir',
           'write_run_files': 'rundir',
           'wrote': 'parquet_cells'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
