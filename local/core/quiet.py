"""TensorFlow without its start-up lines: the C++ runtime (absl, XLA, CUDA plugin registration) writes them
straight to file descriptor 2 while ``tensorflow`` is first imported, before TF_CPP_MIN_LOG_LEVEL is read, so
only an import with that descriptor pointed elsewhere keeps them out of a stage's output. Python's own
errors still surface: an import that fails raises as usual, and what was written meanwhile is replayed.
"""
import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile

QUIET_MODULES = ("tensorflow",)  # keras imports tensorflow too, so the hook sees the first import either way


@contextlib.contextmanager
def stderr_descriptor_captured():
    """Point file descriptor 2 at a temporary file for the block; yield a function returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lambda: (captured.seek(0), captured.read())[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def quiet_stderr():
    """Run the block with file descriptor 2 set aside; if the block raises, what was written there is shown
    first (those lines may say why), then the error propagates."""
    with stderr_descriptor_captured() as written:
        try:
            yield
        except BaseException:
            output = written()
            failed = True
        else:
            failed = False
    if failed:
        os.write(2, output)
        raise


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with quiet_stderr():
            self.loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in QUIET_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import():
    """From now on, the first ``import tensorflow`` (or keras) of this process prints none of TensorFlow's
    C++ start-up lines; a no-op when it is imported already or the hook is in place."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # and its later C++ lines (no GPU: "failed call to cuInit")
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
