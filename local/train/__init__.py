"""Stage 3: the training loop (loop), one train_one(kind) for every model kind (runner, kinds), each kind's task
(wavenet_task, tagger_task) and sweeps (sweep).

May import: core, store, audio, collect, dataset, model, generate, judge, report. Never a package after it in
local/__init__.py's order, nor aws/ or a run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.train import name``
or ``local.train.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
