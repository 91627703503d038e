"""Waveforms: what the four stages do (collect, prepare, train, generate), in packages by layer.

Lowest first; a package imports only packages before it in this list (test_repository checks it):

- ``core``: config, checks, atomic files, locks, quiet start-up, plots; knows no music.
- ``store``: the files on disk and their names: manifest, dataset folder, run directory, clip folders.
- ``audio``: decoding, waveforms and mu-law codes, writing audio.
- ``collect``: stage 1's sources (demo corpus, FMA website and archive, a music folder).
- ``dataset``: stage 2 (settings, inputs, splits, the build) and the window reader training reads.
- ``model``: the models, each described once (WaveNet, genre tagger).
- ``generate``: fast and reference generation, clips and training-time samples.
- ``judge``: bits/sample, audio figures, the taggers that listen, the verdict on clips.
- ``report``: the run's page and a sweep's table.
- ``train``: stage 3's loop, ``train_one(kind)``, each kind's task, sweeps.

``aws/`` imports these; nothing here imports ``aws/`` or a ``run_`` script.
"""
PACKAGES = ("core", "store", "audio", "collect", "dataset", "model", "generate", "judge", "report", "train")


def lazy_package(name):
    """(``__getattr__``, ``__dir__``) for package ``name`` (called from its ``__init__.py``): its modules and
    their public names, each imported on first use (PEP 562, as librosa's lazy loading does). ``__all__`` is
    answered the same way: the modules, then every public name one module alone defines."""
    import ast
    import importlib
    import importlib.util
    import pkgutil
    import sys
    # through the import system, not the file system: the EMR job imports local/ from a zip
    modules = tuple(sorted(m.name for m in pkgutil.iter_modules(sys.modules[name].__path__)))
    owners = {}

    def owner_of():
        if not owners:
            seen = {}
            for module in modules:
                spec = importlib.util.find_spec(f"{name}.{module}")
                tree = ast.parse(spec.loader.get_source(spec.name))
                for node in tree.body:
                    targets = [node] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
                        getattr(node, "targets", [])
                    for target in targets:
                        public = getattr(target, "name", getattr(target, "id", "_"))
                        if not public.startswith("_") and public not in modules:
                            seen.setdefault(public, set()).add(module)
            owners.update({n: next(iter(m)) for n, m in seen.items() if len(m) == 1})
        return owners

    def __getattr__(attr):
        if attr in modules:
            return importlib.import_module(f"{name}.{attr}")
        if attr == "__all__":
            return sorted(modules + tuple(owner_of()))
        if attr in owner_of():
            return getattr(importlib.import_module(f"{name}.{owners[attr]}"), attr)
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    def __dir__():
        return __getattr__("__all__")

    return __getattr__, __dir__
