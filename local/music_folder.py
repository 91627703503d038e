"""Import a user's own music folder into the stage-1 layout (``<out_dir>/<Genre>/<track_id>.<ext>``).

The genre of a file comes from its tags (read by ffprobe through pydub's ``mediainfo``) or from the name of
the folder holding it; ``genre_from`` chooses which one wins when both exist.
"""
import hashlib
import os
import stat

from local import manifest

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


def read_tags(path):
    """The file's format tags (lowercase keys: genre, title, artist...) as ffprobe reports them; {} if none."""
    from pydub.utils import mediainfo
    try:
        info = mediainfo(path)
    except Exception:  # ffprobe failed on a broken file: stage 2 will report it; no tags here
        return {}
    tags = {k.lower(): v for k, v in (info.get("TAG") or {}).items() if isinstance(v, str)}
    return tags


def folder_track_id(relative_path):
    """A stable, safe track id for a file: its name plus a short hash of its path inside the folder."""
    stem = os.path.splitext(os.path.basename(relative_path))[0]
    digest = hashlib.sha1(relative_path.replace(os.sep, "/").encode("utf-8")).hexdigest()[:8]
    return f"{manifest.safe_component(stem, max_length=60)}-{digest}"


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
    for path in tqdm(find_audio_files(folder), desc="import folder", unit="file", disable=not progress):
        if os.path.realpath(path).startswith(out_real + os.sep):
            continue  # never import our own output when out_dir lies inside the folder
        relative = os.path.relpath(path, folder)
        problem, real = source_file_problem(path, folder)
        if problem:
            summary["failed"].append((manifest.printable_path(path), problem))
            continue
        # from here on only the checked file (``real``) is read, linked or copied
        if os.path.getsize(real) == 0:
            summary["failed"].append((path, "empty file (0 bytes)"))
            continue
        parent = os.path.basename(os.path.dirname(path)) if os.path.dirname(relative) else ""
        tags = read_tags(real)
        genre = choose_genre(tags, parent, genre_from)
        if not take(genre):
            continue
        track_id = folder_track_id(relative)
        if manifest.have_track(out_dir, have, track_id):
            summary["skipped"] += 1
            continue
        full, rel_out = manifest.track_path(out_dir, genre, track_id, os.path.splitext(path)[1])
        try:
            manifest.place_file(real, full, link=link)
        except OSError as e:
            summary["failed"].append((path, f"cannot copy: {e.strerror or e}"))
            continue
        manifest.record_track(out_dir, track_id, genre, full, rel_out, title=tags.get("title", ""),
                              artist=tags.get("artist", ""), source=os.path.abspath(path))
        summary["downloaded"] += 1
    return summary
