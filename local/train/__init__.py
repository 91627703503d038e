"""Stage 3: the training loop (loop), one train_one(kind) for every model kind (runner, kinds), each kind's task
(wavenet_task, tagger_task) and sweeps (sweep).

May import: core, store, audio, collect, dataset, model, generate, judge, report. Never a package after it in
local/__init__.py's order, nor aws/ or a run_ script.

Names are imported on first use (``from local.train import name`` or ``local.train.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('kinds', 'loop', 'runner', 'sweep', 'tagger_task', 'wavenet_task')
_OWNERS = {'DatasetView': 'runner',
           'Evaluation': 'loop',
           'FIXED_KEYS': 'sweep',
           'KINDS': 'kinds',
           'LN2': 'loop',
           'ModelKind': 'runner',
           'Plan': 'runner',
           'RESULT_COLUMNS': 'sweep',
           'RESULT_FILE': 'sweep',
           'SWEEP_OPTIONS': 'sweep',
           'SweepPlan': 'sweep',
           'TAGGER': 'kinds',
           'TRAINING_MINIMUMS': 'runner',
           'Task': 'loop',
           'WAVENET': 'kinds',
           'accuracy_report': 'tagger_task',
           'balanced_patch_batches': 'tagger_task',
           'check_config': 'runner',
           'check_dataset': 'runner',
           'cost_line': 'sweep',
           'cpu_cores': 'loop',
           'describe': 'wavenet_task',
           'evaluate_bits': 'wavenet_task',
           'evaluate_run_dir': 'sweep',
           'evaluate_windows': 'tagger_task',
           'explicit_overrides': 'sweep',
           'figure_refused': 'tagger_task',
           'gradient_step': 'loop',
           'grid_points': 'sweep',
           'head_task': 'tagger_task',
           'learning_rate_at': 'loop',
           'local_dataset': 'runner',
           'majority_baseline': 'tagger_task',
           'make_eval_step': 'wavenet_task',
           'make_optimizer': 'loop',
           'print_evaluation': 'tagger_task',
           'random_points': 'sweep',
           'read_result': 'sweep',
           'read_sweep_file': 'sweep',
           'result_row': 'sweep',
           'resume': 'loop',
           'run_callbacks': 'loop',
           'run_configs': 'sweep',
           'run_names': 'sweep',
           'run_sweep': 'sweep',
           'run_sweep_file': 'sweep',
           'stuck_warning': 'loop',
           'table_rows': 'sweep',
           'tagger_after_train': 'kinds',
           'tagger_describe': 'kinds',
           'tagger_plan': 'kinds',
           'train': 'loop',
           'train_config': 'kinds',
           'train_locally': 'runner',
           'train_one': 'runner',
           'training_line': 'tagger_task',
           'transfer_task': 'tagger_task',
           'use_threads': 'loop',
           'wavenet_after_train': 'kinds',
           'wavenet_callbacks': 'kinds',
           'wavenet_describe': 'kinds',
           'wavenet_model_json': 'wavenet_task',
           'wavenet_plan': 'kinds',
           'window_loss': 'wavenet_task',
           'write_evaluation': 'tagger_task',
           'write_hparams': 'sweep',
           'write_sweep_table': 'sweep'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
