"""Making audio from a trained WaveNet: the compiled incremental generator (fast, over kernel and simd, with
weights folded out of Keras by weights), the slow reference generator (reference), clips written to a folder
(clip_files) and samples written while training (samples).

May import: core, store, audio, collect, dataset, model. Never a package after it in local/__init__.py's
order, nor aws/ or a run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.generate import name``
or ``local.generate.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
