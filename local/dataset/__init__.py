"""Stage 2 and the window reader: its settings and checks (settings), the inputs and their fingerprints (inputs),
the track-level split (splits), the decode-and-write pipeline (build), the windows training reads (windows)
and code statistics (code_statistics).

May import: core, store, audio, collect. Never a package after it in local/__init__.py's order, nor aws/ or a
run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.dataset import name``
or ``local.dataset.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
