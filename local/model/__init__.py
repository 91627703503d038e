"""The models, each described once (a config dataclass that reads and writes model.json): the WaveNet (wavenet)
and the genre tagger (tagger).

May import: core, store, audio, collect, dataset. Never a package after it in local/__init__.py's order, nor
aws/ or a run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.model import name``
or ``local.model.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
