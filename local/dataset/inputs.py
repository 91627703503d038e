"""Stage 2's inputs: the audio files below raw_dir, from its manifest or a folder scan, kept inside raw_dir,
and the fingerprints (bytes, mtime, sha256) that tell a rerun which inputs are new.
"""
import json
import os
import stat

from local.audio import decoding
from local.core.fileio import write_json_atomic
from local.dataset.splits import normalize_split
from local.store import manifest
from local.store.audio_names import is_audio_path
from local.store.layout import DatasetDir


def list_inputs(raw_dir):
    """The tracks stage 2 should process: a list of dicts with track_id, genre, path, split, sha256.

    Uses ``raw_dir/manifest.csv`` when present (paths relative to ``raw_dir``); otherwise every audio file
    below ``raw_dir`` with genre = the name of its parent folder and track_id = its file name without the
    extension (or its relative path, where two files share a name). ``sha256`` is "" when unknown.
    """
    def join(relative):
        return os.path.join(raw_dir, *relative.split("/"))

    replaced = []
    rows = manifest.read_manifest(raw_dir, replaced)
    if manifest.listed_nothing_problem(raw_dir, rows):
        raise ValueError(manifest.listed_nothing_problem(raw_dir, rows))
    if rows:
        return inputs_from_manifest(rows.values(), join, replaced)
    relative_paths = []
    for root, dirs, names in os.walk(raw_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative_paths += [os.path.relpath(os.path.join(root, n), raw_dir).replace(os.sep, "/") for n in sorted(names)]
    return inputs_from_files(relative_paths, join)


def inputs_from_manifest(rows, join, replaced=()):
    """Input dicts from manifest rows; ``join(relative_path)`` gives the full path (or URI) of a file.

    ``replaced``: the (row, later path) pairs of :func:`local.store.manifest.read_manifest`: rows whose track_id a
    later row reuses for another file; each becomes an input with a ``refused`` reason, so it is listed in
    failures.csv (:func:`split_refused`), never dropped unseen; so does a row whose genre reads as a path.
    Shared by the local stage (``os.path.join``) and the Spark job (a URI below ``raw_dir``).
    """
    rows = list(rows)
    inputs = [{"track_id": r["track_id"], "genre": manifest.tidy_genre(r.get("genre")) or "Unknown",
               "path": join(r["path"]), "split": normalize_split(r.get("split", "")), "sha256": r.get("sha256", "")}
              for r in rows]
    for item, row in zip(inputs, rows):
        if manifest.genre_path_problem(item["genre"]):
            item["refused"] = manifest.genre_path_problem(item["genre"]) + " (fix its manifest.csv row)"
        if not row["path"].strip("/"):  # join("") is raw_dir itself: say what the row lacks, not "a folder"
            item.update(path=f"(track {row['track_id']!r}: no path)",
                        refused=f"its manifest.csv row has an empty path: not read (fix the row)")
    return inputs + [{"track_id": r["track_id"], "path": join(r["path"]) if r.get("path") else "(no path)",
                      "refused": f"duplicate track_id {r['track_id']!r} in manifest.csv: a later row's file "
                                 f"({later}) has it; not read"} for r, later in replaced]


def inputs_from_files(relative_paths, join):
    """Input dicts for the audio files among ``relative_paths`` ("/"-separated, relative to ``raw_dir``).

    genre = the parent folder's name ("Unknown" at the top), track_id = the file name without extension, or
    the relative path with "__" for "/" where two files share a name. ``join`` as in :func:`inputs_from_manifest`.
    """
    relative_paths = [r for r in relative_paths if is_audio_path(r)]
    stems = [os.path.splitext(r.split("/")[-1])[0] for r in relative_paths]
    inputs = []
    for relative, stem in zip(relative_paths, stems):
        track_id = stem if stems.count(stem) == 1 else os.path.splitext(relative)[0].replace("/", "__")
        parent = relative.rsplit("/", 1)[0] if "/" in relative else ""
        inputs.append({"track_id": track_id, "genre": manifest.tidy_genre(parent.split("/")[-1]) or "Unknown",
                       "path": join(relative), "split": "", "sha256": ""})
    return inputs


def input_path_problem(raw_dir, path):
    """Why stage 2 must not open ``path`` listed under the local folder ``raw_dir`` (it resolves outside it:
    ``../../etc/passwd``; a device, FIFO or socket: ``/dev/zero``), or ""."""
    if manifest.name_problem(path):
        return manifest.name_problem(path)
    root = os.path.realpath(raw_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        return outside_raw_dir_reason(real)
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return ""  # missing: reported as such when processed
    if stat.S_ISDIR(mode):
        return FOLDER_REASON
    return "" if stat.S_ISREG(mode) else decoding.SPECIAL_FILE_REASON


FOLDER_REASON = "a folder, not an audio file: not read (its manifest.csv row should name a file)"


def outside_raw_dir_reason(resolved):
    """The failures.csv reason of an input that resolves outside raw_dir (to ``resolved``)."""
    return f"outside raw_dir (resolves to {resolved}): not read"


SOURCE_STATS_NAME = DatasetDir.SOURCE_STATS  # path -> [bytes, mtime_ns, sha256] of the inputs last seen


class SourceFingerprints:
    """Decide "unchanged" from the file itself: size + mtime as the fast path, the sha256 when they differ.

    Kept in ``<out_dir>/source_stats.json``; a manifest's sha256 is never trusted over the file's bytes.
    """

    def __init__(self, out_dir):
        self.path = os.path.join(out_dir, SOURCE_STATS_NAME)
        try:
            with open(self.path, encoding="utf-8") as f:
                self.known = {k: tuple(v) for k, v in json.load(f).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self.known = {}

    def sha_of(self, path):
        """The sha256 of the file at ``path`` now ("" if missing or not a regular file)."""
        try:
            file_stat = os.stat(path)
        except OSError:
            return ""
        if not stat.S_ISREG(file_stat.st_mode):
            return ""
        cached = self.known.get(path)
        if cached and cached[0] == file_stat.st_size and cached[1] == file_stat.st_mtime_ns:
            return cached[2]
        sha = manifest.sha256_file(path)
        self.known[path] = (file_stat.st_size, file_stat.st_mtime_ns, sha)
        return sha

    def remember(self, path, file_stat, sha):
        """Record the (size, mtime_ns) a file had when the bytes hashed to ``sha`` were read."""
        if file_stat:
            self.known[path] = (int(file_stat[0]), int(file_stat[1]), sha)

    def save(self):
        write_json_atomic(self.path, {k: list(v) for k, v in sorted(self.known.items())})
