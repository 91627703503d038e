"""One writer per output folder: a lock file held by the running process, taken over when its holder died.

Two stage-2 runs on one ``out_dir`` (or two trainings on one ``run_dir``) would each write every track (or
interleave metrics and checkpoints of two seeds). The second is refused in one line instead:

    lock = acquire_lock(out_dir, "stage 2")     # raises LockHeld while another live process holds it
    ...                                         # held until lock.release() or this process ends

The lock is ``flock`` on ``<folder>/.waveforms.lock``: the kernel releases it when the holder exits in any
way (a kill -9 included), so a stale lock of a dead process is simply taken by the next run. The file holds
the holder's pid and what it does, for the message. It is never deleted (deleting it would let two
processes lock two different files of the same name). Local folders only; only the standard library.
"""
import fcntl
import json
import os
import time

LOCK_NAME = ".waveforms.lock"
HELD_FDS = set()  # lock fds of this process: a forked worker closes its copies, so it never keeps a lock


def close_held_in_child():
    for fd in list(HELD_FDS):
        try:
            os.close(fd)  # not LOCK_UN: that would unlock the parent's lock too
        except OSError:
            pass
    HELD_FDS.clear()


os.register_at_fork(after_in_child=close_held_in_child)


class LockHeld(ValueError):
    """Another live process holds the folder's lock; the message is one line naming it and what to do."""


class DirectoryLock:
    """A held lock on one folder (see :func:`acquire_lock`)."""

    def __init__(self, path, fd):
        self.path, self.fd = path, fd

    def release(self):
        if self.fd is not None:
            HELD_FDS.discard(self.fd)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def acquire_lock(directory, what):
    """Lock ``directory`` (created if missing) for this process; ``what`` says what it does ("stage 2").

    Returns a :class:`DirectoryLock`. Raises LockHeld when another live process holds it; a lock left by a
    dead process is free (the kernel dropped it with the process) and is taken over.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(fd)
        for _ in range(20):  # the holder writes its pid just after it locks: a racing start may read it empty
            if holder:
                break
            time.sleep(0.025)
            holder = read_holder(fd)
        os.close(fd)
        raise LockHeld(f"{directory} is in use by process {holder.get('pid', '?')} ({holder.get('what', 'a writer')}"
                       f"): wait for it to finish, stop it, or use another folder") from None
    HELD_FDS.add(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what}).encode() + b"\n", 0)
    return DirectoryLock(path, fd)


def read_holder(fd):
    """The {"pid", "what"} a lock file records ({} when unreadable)."""
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
