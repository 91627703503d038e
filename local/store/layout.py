"""The names of the files in a run directory and in a dataset folder: the one place that spells them.

Every other module asks these objects for a path (``RunDir(run_dir).model_keras``) instead of joining a
name of its own, so a layout change is one edit here (docs/data-formats.md describes each file).

    >>> RunDir("data/runs/default").model_keras
    'data/runs/default/model.keras'
    >>> DatasetDir("data/processed").dataset_json
    'data/processed/dataset.json'
"""
import os


class _Folder:
    """A folder whose file names a subclass spells; ``os.fspath(folder)`` is its path."""

    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path

    def _join(self, name):
        return os.path.join(self.path, name)


class RunDir(_Folder):
    """A run directory (stage 3 writes it, stage 4 reads it): one property per file or folder in it."""

    CONFIG = "config.json"            # the resolved stage-3 config
    MODEL_JSON = "model.json"         # what a generator or tagger needs to rebuild the model
    MODEL_KERAS = "model.keras"       # the latest complete model
    METRICS = "metrics.csv"           # one row per evaluation
    LOSS_PLOT = "loss.png"            # train and valid curves
    CHECKPOINTS = "checkpoints"       # step-00000100/ folders
    CHECKPOINT_STATE = "state.json"   # in a checkpoint folder: step, examples done, best valid
    TENSORBOARD = "tensorboard"       # TensorBoard scalars
    EVALUATION = "evaluation.json"    # test-set figures (a WaveNet's bits/sample, a tagger's accuracy)
    BASELINES = "baselines.json"      # uniform and unigram bits/sample, for the charts
    SAMPLES = "samples"               # step-<n>/ clips sampled while training
    FEATURES = "features"             # a transfer-mode tagger's cached pretrained embeddings
    GENERATIONS = "generations.json"  # where this run's generation.json files are
    REPORT = "report.html"            # the run's page
    REPORT_FILES = "report_files"     # copies of clips the page plays that live outside the run directory
    SWEEP_RESULT = "sweep_result.json"  # in a sweep's run: its row of the sweep table
    PRIOR = "prior"                   # a renderer's own plan prior (a prior run: stage 4's --plan=prior default)

    config_json = property(lambda self: self._join(self.CONFIG))
    model_json = property(lambda self: self._join(self.MODEL_JSON))
    model_keras = property(lambda self: self._join(self.MODEL_KERAS))
    metrics_csv = property(lambda self: self._join(self.METRICS))
    loss_png = property(lambda self: self._join(self.LOSS_PLOT))
    checkpoints = property(lambda self: self._join(self.CHECKPOINTS))
    tensorboard = property(lambda self: self._join(self.TENSORBOARD))
    evaluation_json = property(lambda self: self._join(self.EVALUATION))
    baselines_json = property(lambda self: self._join(self.BASELINES))
    samples = property(lambda self: self._join(self.SAMPLES))
    features = property(lambda self: self._join(self.FEATURES))
    generations_json = property(lambda self: self._join(self.GENERATIONS))
    report_html = property(lambda self: self._join(self.REPORT))
    report_files = property(lambda self: self._join(self.REPORT_FILES))
    sweep_result_json = property(lambda self: self._join(self.SWEEP_RESULT))
    prior = property(lambda self: self._join(self.PRIOR))

    @staticmethod
    def checkpoint_state(checkpoint):
        """The state file of one checkpoint folder (a path inside :attr:`checkpoints`)."""
        return os.path.join(checkpoint, RunDir.CHECKPOINT_STATE)

    def model_files(self):
        """(model.json, model.keras): what a finished run must hold for stage 4 to load it."""
        return self.model_json, self.model_keras


class DatasetDir(_Folder):
    """A dataset folder (stage 2 writes it; stages 3 and 4 read it): one property per file or folder."""

    TRACKS = "tracks"                      # part-*.parquet, one row per track
    DATASET_JSON = "dataset.json"          # genres, settings, split counts
    FAILURES = "failures.csv"              # every input that could not be used, and why
    CONFIG = "config.json"                 # the resolved stage-2 config
    SETTINGS_SIDECAR = "_settings.json"    # in tracks/: the settings of parts Spark wrote
    SOURCE_STATS = "source_stats.json"     # path -> [bytes, mtime_ns, sha256] of the inputs last seen

    tracks = property(lambda self: self._join(self.TRACKS))
    dataset_json = property(lambda self: self._join(self.DATASET_JSON))
    failures_csv = property(lambda self: self._join(self.FAILURES))
    config_json = property(lambda self: self._join(self.CONFIG))
    settings_sidecar = property(lambda self: os.path.join(self.tracks, self.SETTINGS_SIDECAR))
    source_stats = property(lambda self: self._join(self.SOURCE_STATS))
