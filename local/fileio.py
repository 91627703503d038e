"""One way to write a file: under a temp name beside it, synced, then renamed into place.

A killed process never leaves a file that a later run would trust: the final name appears only once the
whole content is on disk. Every temp name has one pattern, ``.tmp-<pid>-<name>``, so one sweep
(:func:`remove_stale_temps`) clears what a killed run left, without touching a live writer's temps.

    with atomic_write("out/metrics.csv", "w") as f:        # a file object, like open()
        f.write(...)
    with atomic_path("out/model.keras") as tmp:            # a path, for libraries that open it themselves
        model.save(tmp)
    with atomic_dir("run/checkpoints/step-00000100") as tmp:   # a directory filled, then renamed whole
        ...

Only the standard library is imported here.
"""
import contextlib
import glob
import json
import os
import shutil

TEMP_PREFIX = ".tmp-"


def temp_path_for(path):
    """The temp name used while ``path`` is written: ``<dir>/.tmp-<pid>-<name>``."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{name}")


def _fsync_file(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(directory):
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(tmp):
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temp path beside ``path``; once the block ends without error, sync it and rename it to ``path``.

    On an error the temp is removed and ``path`` keeps its old content (or stays absent).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(directory)


@contextlib.contextmanager
def atomic_write(path, mode="w", encoding="utf-8", newline=None):
    """``open()`` for writing, atomically: yields the temp file object; renamed to ``path`` when the block ends.

    mode  "w" (text, ``encoding``/``newline`` as for open) or "wb" (bytes)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        if mode == "wb":
            with open(tmp, "wb") as f:
                yield f
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as f:
                yield f


@contextlib.contextmanager
def atomic_dir(path):
    """Yield an empty temp directory beside ``path``; when the block ends, sync its files and rename it to ``path``.

    An existing ``path`` is replaced only after the new directory is complete.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = temp_path_for(path)
    _discard(tmp)
    os.makedirs(tmp)
    try:
        yield tmp
        for name in os.listdir(tmp):
            if os.path.isfile(os.path.join(tmp, name)):
                _fsync_file(os.path.join(tmp, name))
        fsync_dir(tmp)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(parent)


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` atomically; return ``path``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def write_text_atomic(path, text):
    """Write ``text`` (str) to ``path`` atomically as UTF-8; return ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, data):
    """Write ``data`` as indented JSON to ``path`` atomically; return ``path``."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory, recursive=False):
    """Remove the temps that dead processes left in ``directory`` (and below it when ``recursive``).

    A temp of a live process (another writer now) is left alone. Returns the paths removed.
    """
    pattern = os.path.join(directory, "**", f"{TEMP_PREFIX}*") if recursive else \
        os.path.join(directory, f"{TEMP_PREFIX}*")
    removed = []
    for tmp in glob.glob(pattern, recursive=recursive):
        pid_text = os.path.basename(tmp)[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text)):
            continue
        _discard(tmp)
        removed.append(tmp)
    return removed
