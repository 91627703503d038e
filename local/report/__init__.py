"""Pages a person reads: the run's report page (page), its HTML and SVG pieces (html) and a sweep's table
(sweep_table).

May import: core, store, audio, collect, dataset, model, generate, judge. Never a package after it in
local/__init__.py's order, nor aws/ or a run_ script.

Names are imported on first use (``from local.report import name`` or ``local.report.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('html', 'page', 'sweep_table')
_OWNERS = {'COLORS': 'html',
           'COPIES_DIR': 'page',
           'GENERATIONS_NAME': 'page',
           'JUDGE_COLUMNS': 'page',
           'MIN_PLAYABLE_HZ': 'page',
           'PER_GENRE_COLUMNS': 'page',
           'REPORT_NAME': 'page',
           'SCRIPT': 'page',
           'STYLE': 'page',
           'generation_files': 'page',
           'note_generation': 'page',
           'page_callback': 'page',
           'render_report': 'page',
           'report_callbacks': 'page',
           'svg_chart': 'html',
           'sweep_html': 'sweep_table',
           'write_baselines': 'page',
           'write_report': 'page',
           'write_sweep_csv': 'sweep_table'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
