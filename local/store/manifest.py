"""Stage 1's output layout: ``<out_dir>/<Genre>/<track_id>.<ext>`` plus ``<out_dir>/manifest.csv``.

Every source (demo, folder, FMA website, FMA archive) writes through these functions, so the layout, the
manifest columns and the safety rules (no name escapes ``out_dir``; nothing partial is ever at ``path``)
hold for all of them.
"""
import csv
import hashlib
import os
import re
import shutil
import unicodedata

from local.core import fileio

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ["track_id", "genre", "title", "artist", "source", "path", "bytes", "sha256", "split"]
REQUIRED_COLUMNS = ("track_id", "path")  # a manifest without them describes no file: refused, never read as empty
AUDIO_EXTENSIONS = (".mp3", ".flac", ".ogg", ".oga", ".opus", ".wav", ".m4a", ".aac", ".aif", ".aiff",
                    ".wma", ".webm", ".mka")


def safe_component(name, fallback="unknown", max_length=80):
    """Turn any string (a scraped id, title or genre) into one safe path component.

    Keeps letters, digits, ``-``, ``_`` and ``.``; everything else becomes ``_``. The result never is
    empty, ``.`` or ``..``, never starts with a dot and never holds a path separator, so
    ``os.path.join(out_dir, safe_component(x))`` always stays inside ``out_dir``.
    """
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    text = text[:max_length].strip("._")
    return text or fallback


def printable_path(path):
    """``path`` as text any UTF-8 file or terminal takes: the bytes of a name that is not UTF-8 (which Python
    holds as surrogates) shown as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def name_problem(path):
    """Why a file cannot be taken by its name (its bytes are not UTF-8: no manifest, CSV or Parquet column can
    hold it), or "". Stage 1's folder import, stage 2 and tagging (``--audio``) skip such a file with this
    reason (shown with :func:`printable_path`); the rest goes on."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return "its file name is not UTF-8: skipped (rename it, e.g. with convmv -f latin1 -t utf8)"
    return ""


def tidy_genre(name):
    """A genre name with its whitespace collapsed and trimmed (NFC): "ROCK " -> "ROCK", "Hip  Hop" -> "Hip Hop"."""
    return " ".join(unicodedata.normalize("NFC", str(name or "")).split())


def genre_key(name):
    """What makes two genre names one genre: :func:`tidy_genre`, case-folded ("Rock", "rock", "ROCK ")."""
    return tidy_genre(name).casefold()


def genre_path_problem(name):
    """Why ``name`` cannot be a genre because it reads as a path (``..``, ``../../etc``, ``/etc``, ``.hidden``,
    a NUL), or "". "Old-Time / Historic" is a genre, not a path."""
    text = tidy_genre(name)
    parts = [p.strip() for p in re.split(r"[/\\]", text)]
    if text.startswith((".", "/", "\\")) or "\x00" in text or any(p in (".", "..") for p in parts):
        return f"genre {text!r} reads as a path: not used"
    return ""


def sha256_file(path, chunk_bytes=1 << 20):
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            h.update(chunk)
    return h.hexdigest()


def track_path(out_dir, genre, track_id, ext):
    """The absolute file path and the manifest ``path`` (relative, with ``/``) of one track.

    ``genre`` and ``track_id`` are sanitized with :func:`safe_component`; ``ext`` includes the dot.
    """
    ext = "." + safe_component(ext.lstrip("."), fallback="bin").lower()
    relative = f"{safe_component(genre)}/{safe_component(track_id)}{ext}"
    full = os.path.join(out_dir, *relative.split("/"))
    inside(out_dir, full)
    return full, relative


def inside(root, path):
    """Return ``path`` if it resolves inside ``root``; raise ValueError otherwise (a last line of defence)."""
    root_real = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([root_real, real]) != root_real:
        raise ValueError(f"refusing to write outside {root}: {path}")
    return path


def read_manifest(out_dir, replaced=None):
    """The manifest rows of ``out_dir`` as a dict track_id -> row (later rows win); {} if there is none.

    ``replaced``: a list to which each row that a later row of the same track_id but another ``path`` replaced
    is appended, as (earlier row, later row path) - a file stage 2 would otherwise drop without a word.
    """
    path = os.path.join(out_dir, MANIFEST_NAME)
    rows = {}
    if not os.path.isfile(path):
        return rows
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts the file with a BOM, which would rename the first column
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if reader.fieldnames and c not in reader.fieldnames]
            if missing:
                raise ValueError(f"{path} has no {' or '.join(missing)} column (its header: "
                                 f"{','.join(reader.fieldnames)[:120]}): name the columns as stage 1 writes "
                                 f"them ({','.join(MANIFEST_COLUMNS)})")
            read_rows(reader, rows, replaced)
    except (UnicodeDecodeError, csv.Error) as e:  # one line naming the file, never a bare codec error
        raise ValueError(f"{path} cannot be read as a UTF-8 CSV ({type(e).__name__}: {str(e)[:120]}): fix or "
                         f"remove it (stage 1 writes it again for the files it fetches)") from None
    return rows


def listed_nothing_problem(out_dir, rows):
    """Why stage 2 must not read ``out_dir`` when its manifest.csv exists but lists no track (empty, header only,
    or every row torn), or "" - such a manifest would silently give way to a scan of the folder's files."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    if rows or not os.path.isfile(path):
        return ""
    return (f"{path} lists no track (it is empty or holds only a header): add its rows, or remove it to read "
            f"every audio file below {out_dir} with genre = folder name")


def read_rows(reader, rows, replaced):
    """:func:`read_manifest`'s loop over the csv.DictReader ``reader`` into the dict ``rows``."""
    for row in reader:
        # a row cut short by a kill mid-write has missing fields: it describes no complete file
        if row.get("track_id") and None not in (row.get(c) for c in reader.fieldnames or []):
            earlier = rows.get(row["track_id"])
            if replaced is not None and earlier is not None and earlier.get("path") != row.get("path"):
                replaced.append((earlier, row.get("path", "")))
            rows[row["track_id"]] = row


def append_manifest_row(out_dir, row):
    """Append one row to ``out_dir/manifest.csv`` (header written first if new) and flush it to disk.

    Rows are appended as tracks complete, so a killed run loses at most the tracks in flight.
    """
    append_manifest_rows(out_dir, [row])


def append_manifest_rows(out_dir, rows):
    """:func:`append_manifest_row` for several rows, with one flush to disk."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    os.makedirs(out_dir, exist_ok=True)
    new = not os.path.isfile(path) or os.path.getsize(path) == 0
    torn = not new and not ends_with_newline(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        if torn:  # a kill mid-row left half a line: end it, so this row is not glued onto it
            f.write("\r\n")
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in MANIFEST_COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def ends_with_newline(path):
    """True if the file's last byte is a newline (or the file is empty)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def have_track(out_dir, manifest, track_id):
    """True if ``track_id`` is in the manifest and its file is there with the recorded size and sha256."""
    row = manifest.get(track_id)
    if not row or not row.get("path"):
        return False
    full = os.path.join(out_dir, *row["path"].split("/"))
    try:
        if os.path.getsize(full) != int(row.get("bytes") or -1):
            return False
    except OSError:
        return False
    return sha256_file(full) == row.get("sha256")


def place_file(src, dst, link=False, sync=True):
    """Put a copy (or a hard link, if ``link`` and possible) of ``src`` at ``dst`` atomically.

    ``sync=False``: no fsync of the file and its folder (a caller placing many files syncs each folder once
    with :func:`local.core.fileio.fsync_dir`, and a copy's bytes with os.fsync, before recording them)."""
    with fileio.atomic_path(dst, durable=sync) as tmp:
        if link:
            try:
                os.link(src, tmp)
                return
            except OSError:  # another disk, or a file system without hard links: copy
                pass
        shutil.copyfile(src, tmp)


def genre_selector(genres=None, max_tracks_per_genre=0):
    """A function ``take(genre)``: True while a track of ``genre`` is wanted, and it then counts one.

    ``genres``: the wanted genres, case-insensitive (empty = all); ``max_tracks_per_genre``: 0 = no limit.
    """
    wanted, taken = {g.lower() for g in genres or []}, {}

    def take(genre):
        if wanted and genre.lower() not in wanted:
            return False
        if max_tracks_per_genre and taken.get(genre, 0) >= max_tracks_per_genre:
            return False
        taken[genre] = taken.get(genre, 0) + 1
        return True
    return take


def record_track(out_dir, track_id, genre, full_path, relative_path, title="", artist="", source="", split=""):
    """Append the manifest row for a track whose file is complete at ``full_path``; return the row."""
    row = track_row(track_id, genre, full_path, relative_path, title, artist, source, split)
    append_manifest_row(out_dir, row)
    return row


def track_row(track_id, genre, full_path, relative_path, title="", artist="", source="", split=""):
    """The manifest row of a track whose file is complete at ``full_path`` (its size and sha256 read now)."""
    return {"track_id": track_id, "genre": genre, "title": title, "artist": artist, "source": source,
            "path": relative_path, "bytes": os.path.getsize(full_path), "sha256": sha256_file(full_path),
            "split": split}
