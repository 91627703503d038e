"""The FMA dataset archives (fma_small ... fma_full, https://github.com/mdeff/fma) into the stage-1 layout.

``archive_dir`` holds ``fma_metadata/`` (``tracks.csv``, ``genres.csv``) and ``fma_<subset>/`` with the
audio as ``<first 3 digits>/<6-digit id>.mp3``; either may instead be the zip FMA distributes
(``fma_metadata.zip``, ``fma_<subset>.zip``), from which only the needed members are read.

``tracks.csv`` has a three-row header: the column group (``album``, ``artist``, ``set``, ``track``), the
column name, then a row holding only ``track_id``. Columns are named ``group/name`` here
(``set/subset``, ``set/split``, ``track/genre_top``, ``track/title``, ``artist/name``...).
The ``set/subset`` column names the smallest subset a track is in, so small ⊂ medium ⊂ large; ``full``
holds every track (untrimmed). ``set/split`` (training/validation/test) becomes the manifest's ``split``.
Missing and empty audio files (the real archives hold some) are reported, never fatal.
"""
import csv
import io
import os
import re
import zipfile

from local.core import fileio
from local.store import manifest

SUBSETS = ("small", "medium", "large", "full")
SPLITS = {"training": "train", "validation": "valid", "test": "test"}
NEEDED_COLUMNS = ("set/subset", "set/split", "track/genre_top", "track/genres", "track/title", "artist/name")


class ArchiveError(ValueError):
    """The archive folder lacks something required; the message is one line saying what and where."""


def in_subset(track_subset, subset):
    """True if a track whose ``set/subset`` is ``track_subset`` is in ``subset`` (small ⊂ medium ⊂ large ⊂ full)."""
    if subset == "full":
        return True
    order = SUBSETS[:3]
    return track_subset in order and order.index(track_subset) <= order.index(subset)


def read_tracks_csv(text_file, name="tracks.csv"):
    """Yield one dict per track of FMA's tracks.csv: ``track_id`` plus the ``group/name`` columns.

    ``text_file``: an open text file (newline=""; fields such as artist bios hold newlines). Raises
    ArchiveError if the three-row header is not there.
    """
    csv.field_size_limit(1 << 26)  # some bios and descriptions exceed csv's 128 KiB default
    reader = csv.reader(text_file)
    try:
        groups, names, id_row = next(reader), next(reader), next(reader)
    except StopIteration:
        raise ArchiveError(f"{name}: fewer than the three header rows of FMA's tracks.csv") from None
    if not id_row or id_row[0].strip() != "track_id" or any(cell.strip() for cell in id_row[1:]):
        raise ArchiveError(f"{name}: the third header row should be 'track_id' alone (FMA's tracks.csv); "
                           f"got {','.join(id_row)[:80]!r}")
    columns = [f"{g.strip()}/{n.strip()}" for g, n in zip(groups, names)]
    missing = [c for c in ("set/subset", "track/genre_top") if c not in columns]
    if missing:
        raise ArchiveError(f"{name}: no {', '.join(missing)} column in its header; is it FMA's tracks.csv?")
    wanted = [(i, c) for i, c in enumerate(columns) if c in NEEDED_COLUMNS]
    for row in reader:
        if not row or not row[0].strip():
            continue
        record = {"track_id": row[0].strip()}
        for i, column in wanted:
            record[column] = row[i].strip() if i < len(row) else ""
        yield record


def read_genres_csv(text_file):
    """FMA's genres.csv as {genre_id: (title, top_level genre_id)}."""
    genres = {}
    for row in csv.DictReader(text_file):
        try:
            genres[row["genre_id"].strip()] = (row.get("title", "").strip(), (row.get("top_level") or "").strip())
        except (KeyError, AttributeError):
            continue
    return genres


def track_genre(record, genres_table):
    """The genre of a track: ``track/genre_top``, else the top-level genre of its first ``track/genres`` entry.

    FMA leaves ``genre_top`` empty for tracks whose genres span several top-level genres; their first
    genre's top-level title is the closest single answer. "" if neither is known.
    """
    if record.get("track/genre_top"):
        return record["track/genre_top"]
    ids = re.findall(r"\d+", record.get("track/genres", ""))
    if ids and ids[0] in genres_table:
        top = genres_table[ids[0]][1]
        return genres_table.get(top, genres_table[ids[0]])[0]
    return ""


def audio_member(track_id):
    """The path of a track's audio inside ``fma_<subset>/``: ``000/000002.mp3`` for track 2."""
    padded = f"{int(track_id):06d}"
    return f"{padded[:3]}/{padded}.mp3"


class ArchiveFolder:
    """One part of the archive, ``fma_<name>/`` or ``fma_<name>.zip``: list, size and copy out members.

    Members are named relative to the ``fma_<name>/`` folder (``000/000002.mp3``); in a zip the top
    folder may be missing or named otherwise, so members are matched by that relative tail.
    """

    def __init__(self, archive_dir, name):
        self.folder = os.path.join(archive_dir, f"fma_{name}")
        self.zip_path = self.folder + ".zip"
        self.zip = None
        self.members = {}
        if os.path.isdir(self.folder):
            return
        if not os.path.isfile(self.zip_path):
            raise ArchiveError(f"archive_dir={archive_dir}: has neither fma_{name}/ nor fma_{name}.zip")
        try:
            self.zip = zipfile.ZipFile(self.zip_path)
        except (zipfile.BadZipFile, OSError) as e:
            raise ArchiveError(f"{self.zip_path}: not a readable zip ({e})") from None
        for info in self.zip.infolist():
            if not info.is_dir():
                parts = info.filename.replace("\\", "/").split("/")
                for k in range(len(parts)):  # index every tail, so "fma_small/000/x.mp3" answers "000/x.mp3"
                    self.members.setdefault("/".join(parts[k:]), info)

    def describe(self, member):
        """Where ``member`` lives, for the manifest's ``source`` column and messages."""
        if self.zip is None:
            return os.path.join(self.folder, *member.split("/"))
        info = self.members.get(member)
        return f"{self.zip_path}:{info.filename if info else member}"

    def size(self, member):
        """The member's size in bytes, or None if it is not there."""
        if self.zip is None:
            path = os.path.join(self.folder, *member.split("/"))
            return os.path.getsize(path) if os.path.isfile(path) else None
        info = self.members.get(member)
        return info.file_size if info else None

    def open_text(self, member):
        """The member opened as UTF-8 text (newline="" for csv)."""
        if self.zip is None:
            return open(os.path.join(self.folder, *member.split("/")), encoding="utf-8", newline="")
        return io.TextIOWrapper(self.zip.open(self.members[member]), encoding="utf-8", newline="")

    def place(self, member, dst, link=False):
        """Put the member's bytes at ``dst`` atomically (hard link or copy from a folder; stream out of a zip)."""
        if self.zip is None:
            manifest.place_file(os.path.join(self.folder, *member.split("/")), dst, link=link)
            return
        import shutil
        with self.zip.open(self.members[member]) as src, fileio.atomic_write(dst, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)  # zipfile checks the CRC at the end: a bad member raises

    def close(self):
        if self.zip is not None:
            self.zip.close()


def import_fma_archive(archive_dir, out_dir, subset="small", genres=None, max_tracks_per_genre=0, *, link=True,
                       progress=True):
    """Copy (or hard-link) the tracks of an FMA subset into ``out_dir`` with a manifest carrying FMA's split.

    ``genres``: keep only tracks whose genre (``track/genre_top``, see :func:`track_genre`) is one of these,
    case-insensitively; empty = all. ``max_tracks_per_genre``: 0 = no limit, else the first tracks by id.
    Raises ArchiveError (one line) when the metadata or the subset's audio is not in ``archive_dir``.
    Returns a summary dict: ``downloaded``, ``skipped`` (already there), ``failed`` [(path, reason)].
    """
    from tqdm import tqdm

    if subset not in SUBSETS:
        raise ArchiveError(f"subset={subset!r} is not one of {', '.join(SUBSETS)}")
    if not os.path.isdir(archive_dir):
        raise ArchiveError(f"archive_dir={archive_dir!r} is not a folder: pass --archive_dir=/path/to/fma")
    metadata = ArchiveFolder(archive_dir, "metadata")
    try:
        audio = ArchiveFolder(archive_dir, subset)
    except Exception:
        metadata.close()
        raise
    try:
        if metadata.size("tracks.csv") is None:
            raise ArchiveError(f"{metadata.describe('tracks.csv')}: not there (it comes in fma_metadata.zip)")
        genres_table = {}
        if metadata.size("genres.csv") is not None:
            with metadata.open_text("genres.csv") as f:
                genres_table = read_genres_csv(f)
        take = manifest.genre_selector(genres, max_tracks_per_genre)
        have = manifest.read_manifest(out_dir)
        summary = {"downloaded": 0, "skipped": 0, "failed": []}
        selected = []
        with metadata.open_text("tracks.csv") as f:
            for record in read_tracks_csv(f, metadata.describe("tracks.csv")):
                if not record["track_id"].isdigit():
                    summary["failed"].append((f"tracks.csv track_id {record['track_id'][:40]!r}", "not a number"))
                    continue
                if not in_subset(record.get("set/subset", ""), subset):
                    continue
                genre = track_genre(record, genres_table) or "Unknown"
                if take(genre):
                    selected.append((record, genre))
        for record, genre in tqdm(selected, desc=f"fma_{subset}", unit="track", disable=not progress):
            track_id = str(int(record["track_id"]))
            if manifest.have_track(out_dir, have, track_id):
                summary["skipped"] += 1
                continue
            member = audio_member(track_id)
            size = audio.size(member)
            if size is None:
                summary["failed"].append((audio.describe(member), f"missing from fma_{subset}"))
                continue
            if size == 0:
                summary["failed"].append((audio.describe(member), "empty file (0 bytes) in the archive"))
                continue
            full, relative = manifest.track_path(out_dir, genre, track_id, ".mp3")
            try:
                audio.place(member, full, link=link)
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                summary["failed"].append((audio.describe(member), f"cannot read it: {e}"))
                continue
            have[track_id] = manifest.record_track(
                out_dir, track_id, genre, full, relative, title=record.get("track/title", ""),
                artist=record.get("artist/name", ""), source=audio.describe(member),
                split=SPLITS.get(record.get("set/split", ""), ""))
            summary["downloaded"] += 1
        return summary
    finally:
        metadata.close()
        audio.close()
