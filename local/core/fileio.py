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
import errno
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
def _published(path, *, prepare, sync, durable=True):
    """Yield the temp beside ``path`` (``prepare(tmp)`` first); when the block ends, ``sync(tmp)`` and rename
    it to ``path`` (then sync the folder, unless not ``durable``). On an error the temp is removed and ``path``
    is untouched; a full disk (ENOSPC/EDQUOT) whose error names no file is raised again naming the temp, so the
    stage's one line names the full folder."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = temp_path_for(path)
    prepare(tmp)
    try:
        yield tmp
        sync(tmp)
        if os.path.isdir(path) and not os.path.islink(path) and os.path.isdir(tmp):
            shutil.rmtree(path)  # a directory is replaced only once the new one is complete
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        if e.errno in (errno.ENOSPC, errno.EDQUOT) and not e.filename:
            # a library's write (PIL, h5py, json) names no file: the full disk is this temp's, say so
            raise OSError(e.errno, e.strerror, tmp) from e
        raise
    except BaseException:
        _discard(tmp)
        raise
    if durable:
        fsync_dir(parent)


def _sync_tree(directory):
    for name in os.listdir(directory):
        if os.path.isfile(os.path.join(directory, name)):
            _fsync_file(os.path.join(directory, name))
    fsync_dir(directory)


def _fresh_dir(tmp):
    _discard(tmp)
    os.makedirs(tmp)


def atomic_path(path, durable=True):
    """Yield a temp path beside ``path``; once the block ends without error, sync it and rename it to ``path``.

    On an error the temp is removed and ``path`` keeps its old content (or stays absent). ``durable=False``:
    renamed without the fsyncs (a caller placing many files syncs each folder once, :func:`fsync_dir`).
    """
    return _published(path, prepare=lambda tmp: None, sync=_fsync_file if durable else (lambda tmp: None),
                      durable=durable)


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


def atomic_dir(path):
    """Yield an empty temp directory beside ``path``; when the block ends, sync its files and rename it to ``path``.

    An existing ``path`` is replaced only after the new directory is complete.
    """
    return _published(path, prepare=_fresh_dir, sync=_sync_tree)


def publish_file(src, dst):
    """Rename the complete file ``src`` to ``dst`` durably (synced, then renamed, then the folder synced): for a
    file that had to be built under a name of its own, like a resumable download's partial. Returns ``dst``."""
    _fsync_file(src)
    os.replace(src, dst)
    fsync_dir(os.path.dirname(os.path.abspath(dst)))
    return dst


def read_json(path, default=None):
    """The JSON value in ``path``, or ``default`` when the file is missing, unreadable or not JSON (a file that a
    later write will replace whole, so a damaged one only means "not known yet")."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


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
