"""Pages a person reads: the run's report page (page), its HTML and SVG pieces (html) and a sweep's table
(sweep_table).

May import: core, store, audio, collect, dataset, model, generate, judge. Never a package after it in
local/__init__.py's order, nor aws/ or a run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.report import name``
or ``local.report.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
