"""Sound as numbers: decoding any file through ffmpeg or libsndfile (ffmpeg, decoding), waveforms and mu-law
codes (waveform), and writing WAV or encoded files (encoding).

May import: core, store. Never a package after it in local/__init__.py's order, nor aws/ or a run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.audio import name``
or ``local.audio.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
