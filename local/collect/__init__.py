"""Stage 1's sources: the offline demo corpus, the FMA website (scraping over a polite http_client), an FMA
dataset archive, a music folder, and the dispatcher (sources).

May import: core, store, audio. Never a package after it in local/__init__.py's order, nor aws/ or a run_
script.

``__all__`` lists its modules and public names, each imported on first use (``from local.collect import name``
or ``local.collect.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
