"""What every stage needs and that knows no music: the config block and its checks (config, checks), one way to
write a file atomically (fileio), run locks (locks), quiet TensorFlow start-up (quiet) and the PNG plots
(plots).

May import: nothing else in local. Never a package after it in local/__init__.py's order, nor aws/ or a run_
script.

``__all__`` lists its modules and public names, each imported on first use (``from local.core import name``
or ``local.core.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
