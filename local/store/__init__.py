"""What lies on disk and its names: the raw folder's manifest (manifest), the Parquet dataset folder
(dataset_files, parquet_cells), the run directory (rundir), a folder of generated clips (clip_folder), and
which file names are audio (audio_names). Functions here read and write files; they know no model.

May import: core. Never a package after it in local/__init__.py's order, nor aws/ or a run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.store import name``
or ``local.store.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
