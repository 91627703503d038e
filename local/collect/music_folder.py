"""Import a user's own music folder into the stage-1 layout (``<out_dir>/<Genre>/<track_id>.<ext>``).

The genre of a file comes from its tags (read by a few ffmpeg processes for all files: read_tags_many) or from the name of
the folder holding it; ``genre_from`` chooses which one wins when both exist.
"""
import hashlib
import os
import stat

from local.store import manifest

IMPORT_EXTENSIONS = (".mp3", ".flac", ".ogg", ".wav", ".m4a", ".aiff", ".aif", ".opus")


def find_audio_files(folder, extensions=IMPORT_EXTENSIONS):
    """Every file below ``folder`` whose extension is in ``extensions``, sorted, as absolute paths."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append(os.path.join(root, name))
    return found


def source_file_problem(path, folder):
    """Why ``path`` (found below ``folder``) must not be imported, or "" if it may: ``(problem, real path)``.

    Only regular files whose real path (symlinks resolved) lies inside ``folder`` are taken: a link to
    ``/etc/shadow`` or to another user's music, a dangling link, a device, a FIFO or a socket is refused,
    so nothing from outside the chosen folder is ever linked or copied into ``raw_dir``.
    """
    folder_real = os.path.realpath(folder)
    real = os.path.realpath(path)
    if manifest.name_problem(path) or manifest.name_problem(real):
        return manifest.name_problem(path) or manifest.name_problem(real), real
    if os.path.commonpath([folder_real, real]) != folder_real:
        return f"links outside the folder (to {real}): not imported", real
    try:
        mode = os.stat(real).st_mode
    except OSError as e:
        if os.path.islink(path):
            return f"dangling symlink (to {os.readlink(path)}): skipped", real
        return f"cannot read: {e.strerror or e}", real
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, FIFO or socket): not imported", real
    return "", real


TAG_BATCH = 64  # files opened by one ffmpeg process when reading tags


def read_tags_many(paths, workers=None):
    """The tags of each file of ``paths`` (a list of dicts, lowercase keys; {} for a file without tags or that
    ffmpeg cannot open: stage 2 reports it), read by one ffmpeg process per :data:`TAG_BATCH` files, ``workers``
    processes at once (None: one per core).

    ffmpeg lists each input's container and stream metadata as it opens it (no decoding): about 1 ms a file
    against 30-80 ms for an ffprobe per file (pydub's ``mediainfo`` even ran ffprobe twice, its ``-of old``
    being gone). Container tags win over stream tags (an Ogg's Vorbis comments are stream tags).
    """
    from concurrent.futures import ThreadPoolExecutor
    batches = [list(paths[i:i + TAG_BATCH]) for i in range(0, len(paths), TAG_BATCH)]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return [tags for batch in pool.map(read_tags_batch, batches) for tags in batch]


def read_tags_batch(paths):
    """:func:`read_tags_many` for one batch: one ffmpeg, restarted after a file it cannot open."""
    import subprocess

    from local.audio.ffmpeg import ffmpeg_binary
    found = []
    while len(found) < len(paths):
        rest = paths[len(found):]
        command = [ffmpeg_binary(), "-nostdin", "-hide_banner"]
        for path in rest:
            command += ["-i", "file:" + os.path.abspath(path)]
        try:
            result = subprocess.run(command, capture_output=True, timeout=60 + len(rest))
        except (OSError, subprocess.TimeoutExpired):
            return found + [{} for _ in rest]
        blocks = parse_input_metadata(result.stderr.decode("utf-8", "replace"))[:len(rest)]
        found += blocks
        if len(blocks) < len(rest):  # ffmpeg stopped at the file it could not open: no tags for it
            found.append({})
    return found


def parse_input_metadata(text):
    """The tags of each ``Input #k`` block of ffmpeg's stderr listing, in order (container tags over stream tags)."""
    blocks, container, streams = [], None, None
    metadata_indent, target, last_key = None, None, None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        stripped = line.strip()
        if line.startswith("Input #"):
            if container is not None:
                blocks.append({**streams, **container})
            container, streams, metadata_indent = {}, {}, None
            continue
        if container is None or not stripped:
            continue
        if not line.startswith(" "):  # the listing is over (an error line, "At least one output file...")
            blocks.append({**streams, **container})
            container = None
            continue
        if stripped == "Metadata:":
            metadata_indent, target = indent, (container if indent <= 2 else streams)
            continue
        if metadata_indent is not None and indent > metadata_indent and ":" in stripped:
            key, _, value = stripped.partition(":")
            key = key.strip().lower()
            if key:
                last_key = key
                target.setdefault(key, value.strip())
            elif last_key in target:  # a value of several lines goes on
                target[last_key] += "\n" + value.strip()
            continue
        metadata_indent = None
    if container is not None:
        blocks.append({**streams, **container})
    return blocks


def folder_track_id(relative_path):
    """A stable, safe track id for a file: its name plus a short hash of its path inside the folder."""
    stem = os.path.splitext(os.path.basename(relative_path))[0]
    digest = hashlib.sha1(relative_path.replace(os.sep, "/").encode("utf-8")).hexdigest()[:8]
    return f"{manifest.safe_component(stem, max_length=60)}-{digest}"


RECORD_BATCH = 256  # files placed between two syncs (a killed import redoes at most these)


def record_placed(out_dir, rows):
    """Make the placed files of ``rows`` (manifest rows) durable - each copied file's bytes, each folder once -
    then append their rows with one sync; ``rows`` is emptied. A row is on disk only after its file."""
    from local.core.fileio import fsync_dir
    folders = set()
    for row in rows:
        full = os.path.join(out_dir, *row["path"].split("/"))
        if os.stat(full).st_nlink == 1:  # a copy: its bytes are new (a hard link's are the user's file's)
            with open(full, "rb") as f:
                os.fsync(f.fileno())
        folders.add(os.path.dirname(full))
    for folder in sorted(folders):
        fsync_dir(folder)
    if rows:
        manifest.append_manifest_rows(out_dir, rows)
    rows.clear()


def already_imported(out_dir, have, track_id, source):
    """True if ``track_id`` is imported and whole (:func:`local.store.manifest.have_track`); a hard link to ``source``
    with the recorded size is taken as whole without hashing it again (it is the very same bytes)."""
    row = have.get(track_id)
    if not row or not row.get("path"):
        return False
    full = os.path.join(out_dir, *row["path"].split("/"))
    try:
        if os.path.getsize(full) == int(row.get("bytes") or -1) and os.path.samefile(full, source):
            return True
    except (OSError, ValueError):
        return False
    return manifest.have_track(out_dir, have, track_id)


def choose_genre(tags, parent_folder, genre_from="tags"):
    """The genre of a file: from ``tags['genre']`` or the parent folder's name, ``genre_from`` winning."""
    tag_genre = manifest.tidy_genre((tags.get("genre") or "").split(";")[0].split("/")[0])
    folder_genre = manifest.tidy_genre(parent_folder)
    tag_genre, folder_genre = ("" if manifest.genre_path_problem(g) else g for g in (tag_genre, folder_genre))
    first, second = (tag_genre, folder_genre) if genre_from == "tags" else (folder_genre, tag_genre)
    return first or second or "Unknown"


def import_music_folder(folder, out_dir, genres=None, max_tracks_per_genre=0, *, genre_from="tags", link=True,
                        progress=True):
    """Copy (or hard-link) a music folder's audio files into ``out_dir`` with a manifest.

    ``genres``: keep only these genres (case-insensitive; empty = all). ``max_tracks_per_genre``: 0 = no
    limit. Returns a summary dict: ``downloaded``, ``skipped`` (already imported), ``failed`` [(path, why)].
    """
    from tqdm import tqdm

    take = manifest.genre_selector(genres, max_tracks_per_genre)
    have = manifest.read_manifest(out_dir)
    summary = {"downloaded": 0, "skipped": 0, "failed": []}
    out_real = os.path.realpath(out_dir)
    # first every file's checks, without opening it; the tags only of the files not imported yet (a rerun that
    # finds nothing new reads no file), by a few ffmpeg processes for all of them (read_tags_many)
    candidates = []
    for path in find_audio_files(folder):
        if os.path.realpath(path).startswith(out_real + os.sep):
            continue  # never import our own output when out_dir lies inside the folder
        relative = os.path.relpath(path, folder)
        problem, real = source_file_problem(path, folder)
        if problem:
            summary["failed"].append((manifest.printable_path(path), problem))
            continue
        candidates.append((path, relative, real, folder_track_id(relative)))
    new = []
    for path, relative, real, track_id in candidates:
        if already_imported(out_dir, have, track_id, real):
            if take(have[track_id].get("genre", "")):  # it counts towards max_tracks_per_genre, as before
                summary["skipped"] += 1
            continue
        # from here on only the checked file (``real``) is read, linked or copied
        if os.path.getsize(real) == 0:
            summary["failed"].append((path, "empty file (0 bytes)"))
            continue
        new.append((path, relative, real, track_id))
    tags_of = read_tags_many([real for _, _, real, _ in new])
    placed, bar = [], tqdm(total=len(new), desc="import folder", unit="file", disable=not progress)
    for (path, relative, real, track_id), tags in zip(new, tags_of):
        bar.update()
        parent = os.path.basename(os.path.dirname(path)) if os.path.dirname(relative) else ""
        genre = choose_genre(tags, parent, genre_from)
        if not take(genre):
            continue
        full, rel_out = manifest.track_path(out_dir, genre, track_id, os.path.splitext(path)[1])
        try:
            manifest.place_file(real, full, link=link, sync=False)  # synced a batch at a time (record_placed)
        except OSError as e:
            summary["failed"].append((path, f"cannot copy: {e.strerror or e}"))
            continue
        placed.append(manifest.track_row(track_id, genre, full, rel_out, title=tags.get("title", ""),
                                         artist=tags.get("artist", ""), source=os.path.abspath(path)))
        summary["downloaded"] += 1
        if len(placed) >= RECORD_BATCH:
            record_placed(out_dir, placed)
    record_placed(out_dir, placed)
    bar.close()
    return summary
