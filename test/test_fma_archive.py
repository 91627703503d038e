"""local/collect/fma_archive.py on an FMA-shaped archive built at test time: folders and zips, real mp3s, faults.

tracks.csv is written with FMA's real three-row header (column group, column name, a ``track_id`` row)
and all of its 52 columns, including an artist bio spanning lines; the audio tree is
``fma_<subset>/<3 digits>/<6 digits>.mp3``; one listed file is empty and one is missing, as in the real
archives.
"""
import csv
import json
import os
import shutil
import zipfile

import pytest
from helpers import make_audio, run_script

from local.collect import fma_archive
from local.store import manifest

COLUMNS = {
    "album": ["comments", "date_created", "date_released", "engineer", "favorites", "id", "information",
              "listens", "producer", "tags", "title", "tracks", "type"],
    "artist": ["active_year_begin", "active_year_end", "associated_labels", "bio", "comments", "date_created",
               "favorites", "id", "latitude", "location", "longitude", "members", "name", "related_projects",
               "tags", "website", "wikipedia_page"],
    "set": ["split", "subset"],
    "track": ["bit_rate", "comments", "composer", "date_created", "date_recorded", "duration", "favorites",
              "genre_top", "genres", "genres_all", "information", "interest", "language_code", "license",
              "listens", "lyricist", "number", "publisher", "tags", "title"],
}
# track_id, subset, split, genre_top, genres, title, artist, audio: "ok" | "empty" | "missing"
TRACKS = [
    ("2", "small", "training", "Hip-Hop", "[21]", "Food", "AWOL", "ok"),
    ("5", "small", "validation", "Hip-Hop", "[21]", "This World", "AWOL", "ok"),
    ("10", "small", "test", "Pop", "[10]", "Freeway", "Kurt Vile", "ok"),
    ("140", "small", "training", "Folk", "[17]", "Queen Of The Wires", "Alec K. Redfearn", "ok"),
    ("666", "medium", "training", "Rock", "[12]", "Garage", "Band, \"The\"", "ok"),
    ("1000", "large", "validation", "", "[21, 811]", "Crossover", "Mixed", "ok"),
    ("99134", "small", "training", "Rock", "[12]", "Silence", "Nobody", "empty"),
    ("98565", "small", "test", "Electronic", "[15]", "Gone", "Nobody", "missing"),
]
GENRES_CSV = ("genre_id,#tracks,parent,title,top_level\n10,13845,0,Pop,10\n12,32923,0,Rock,12\n"
              "15,34413,0,Electronic,15\n17,12706,0,Folk,17\n21,8389,0,Hip-Hop,21\n811,1320,21,Hip-Hop Beats,21\n")
SPLIT = {"training": "train", "validation": "valid", "test": "test"}


def write_tracks_csv(path, tracks, extra_rows=()):
    names = [(g, n) for g, cols in COLUMNS.items() for n in cols]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([""] + [g for g, _ in names])
        w.writerow([""] + [n for _, n in names])
        w.writerow(["track_id"] + [""] * len(names))
        for track_id, subset, split, top, genres, title, artist, _ in tracks:
            values = {("set", "subset"): subset, ("set", "split"): split, ("track", "genre_top"): top,
                      ("track", "genres"): genres, ("track", "genres_all"): genres, ("track", "title"): title,
                      ("artist", "name"): artist, ("artist", "bio"): f"<p>{artist} plays,\nsays \"hi\"</p>",
                      ("track", "duration"): "30", ("album", "title"): "An Album"}
            w.writerow([track_id] + [values.get(key, "") for key in names])
        for row in extra_rows:
            w.writerow(row + [""] * (len(names) + 1 - len(row)))


def build_archive(root, subsets=("small", "medium", "large", "full")):
    """An archive folder at ``root``; returns {track_id: mp3 bytes} of every track with audio."""
    os.makedirs(os.path.join(root, "fma_metadata"))
    write_tracks_csv(os.path.join(root, "fma_metadata", "tracks.csv"), TRACKS, extra_rows=[["x../"]])
    with open(os.path.join(root, "fma_metadata", "genres.csv"), "w", encoding="utf-8") as f:
        f.write(GENRES_CSV)
    bodies = {}
    for k, (track_id, subset, _, _, _, _, _, audio) in enumerate(TRACKS):
        if audio == "missing":
            continue
        member = fma_archive.audio_member(track_id)
        for folder in subsets:
            if not fma_archive.in_subset(subset, folder):
                continue
            path = os.path.join(root, f"fma_{folder}", *member.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if audio == "empty":
                open(path, "wb").close()
                continue
            if track_id not in bodies:
                make_audio(path, seconds=0.3, freq_hz=220.0 + 60 * k)
                with open(path, "rb") as f:
                    bodies[track_id] = f.read()
            else:
                with open(path, "wb") as f:
                    f.write(bodies[track_id])
    return bodies


def zip_folder(root, name, compression=zipfile.ZIP_DEFLATED):
    """Zip ``root/name/`` as FMA does (members under ``name/``) and remove the folder."""
    with zipfile.ZipFile(os.path.join(root, f"{name}.zip"), "w", compression) as z:
        for folder, _, files in os.walk(os.path.join(root, name)):
            for file in sorted(files):
                full = os.path.join(folder, file)
                z.write(full, os.path.relpath(full, root))
    shutil.rmtree(os.path.join(root, name))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fma"))
    return root, build_archive(root)


def manifest_rows(out_dir):
    with open(os.path.join(out_dir, "manifest.csv"), newline="", encoding="utf-8") as f:
        return {r["track_id"]: r for r in csv.DictReader(f)}


def expected(subset, genres=()):
    keep = []
    for t in TRACKS:
        genre = t[3] or "Hip-Hop"  # 1000 has no genre_top; its first genre 21 is under Hip-Hop
        if fma_archive.in_subset(t[1], subset) and (not genres or genre.lower() in genres):
            keep.append((t, genre))
    return keep


def check_import(out_dir, summary, subset, bodies, genres=()):
    keep = expected(subset, genres)
    good = [(t, g) for t, g in keep if t[7] == "ok"]
    assert summary["downloaded"] == len(good) and summary["skipped"] == 0
    rows = manifest_rows(out_dir)
    assert set(rows) == {t[0] for t, _ in good}
    for (track_id, _, split, _, _, title, artist, _), genre in good:
        row = rows[track_id]
        assert row["genre"] == genre and row["split"] == SPLIT[split]
        assert row["title"] == title and row["artist"] == artist
        assert row["path"] == f"{genre}/{track_id}.mp3"
        with open(os.path.join(out_dir, genre, f"{track_id}.mp3"), "rb") as f:
            assert f.read() == bodies[track_id]
        assert int(row["bytes"]) == len(bodies[track_id])
    reasons = {os.path.basename(path.split(":")[-1]): why for path, why in summary["failed"]}
    for t, _ in keep:
        if t[7] == "empty":
            assert "empty" in reasons[f"{int(t[0]):06d}.mp3"]
        if t[7] == "missing":
            assert "missing" in reasons[f"{int(t[0]):06d}.mp3"]
    return rows


@pytest.mark.parametrize("link", [True, False])
def test_small_subset_from_folders_carries_the_split_and_reports_bad_files(archive, tmp_path, link):
    root, bodies = archive
    out_dir = str(tmp_path / "raw")
    summary = fma_archive.import_fma_archive(root, out_dir, "small", link=link, progress=False)
    rows = check_import(out_dir, summary, "small", bodies)
    assert {r["split"] for r in rows.values()} == {"train", "valid", "test"}
    assert len(summary["failed"]) == 3  # the empty file, the missing file, the track_id that is no number
    assert any("not a number" in why for _, why in summary["failed"])
    src = os.path.join(root, "fma_small", "000", "000002.mp3")
    same_inode = os.stat(src).st_ino == os.stat(os.path.join(out_dir, "Hip-Hop", "2.mp3")).st_ino
    assert same_inode == link
    assert rows["2"]["source"] == src


def test_rerun_skips_what_is_there(archive, tmp_path):
    root, bodies = archive
    out_dir = str(tmp_path / "raw")
    fma_archive.import_fma_archive(root, out_dir, "small", link=False, progress=False)
    again = fma_archive.import_fma_archive(root, out_dir, "small", link=False, progress=False)
    assert again["downloaded"] == 0 and again["skipped"] == 4
    with open(os.path.join(out_dir, "manifest.csv"), encoding="utf-8") as f:
        assert len(f.read().strip().splitlines()) == 1 + 4


@pytest.mark.parametrize("subset,genres", [("medium", ()), ("large", ("hip-hop",)), ("full", ()),
                                           ("small", ("pop", "folk"))])
def test_subsets_nest_and_genres_select_against_genre_top(archive, tmp_path, subset, genres):
    root, bodies = archive
    out_dir = str(tmp_path / "raw")
    summary = fma_archive.import_fma_archive(root, out_dir, subset, [g.title() for g in genres],
                                             link=False, progress=False)
    check_import(out_dir, summary, subset, bodies, genres)


def test_max_tracks_per_genre_keeps_the_first_by_id(archive, tmp_path):
    root, _ = archive
    out_dir = str(tmp_path / "raw")
    fma_archive.import_fma_archive(root, out_dir, "small", ["Hip-Hop"], max_tracks_per_genre=1, progress=False)
    assert set(manifest_rows(out_dir)) == {"2"}


def test_zips_are_read_without_extracting_everything(tmp_path):
    root = str(tmp_path / "fma")
    bodies = build_archive(root, subsets=("small",))
    zip_folder(root, "fma_metadata")
    zip_folder(root, "fma_small", zipfile.ZIP_STORED)
    # corrupt the stored bytes of track 140: the zip's CRC check must catch it and the rest go on
    with open(os.path.join(root, "fma_small.zip"), "r+b") as f:
        data = f.read()
        at = data.index(bodies["140"][200:232]) + 8
        f.seek(at)
        f.write(bytes([data[at] ^ 0xFF]))
    assert sorted(os.listdir(root)) == ["fma_metadata.zip", "fma_small.zip"]
    out_dir = str(tmp_path / "raw")
    summary = fma_archive.import_fma_archive(root, out_dir, "small", ["Pop", "Hip-Hop", "Folk", "Rock", "Electronic"],
                                             progress=False)
    rows = manifest_rows(out_dir)
    assert set(rows) == {"2", "5", "10"}
    assert rows["2"]["source"].endswith("fma_small.zip:fma_small/000/000002.mp3")
    for track_id in rows:
        with open(os.path.join(tmp_path, "raw", rows[track_id]["path"]), "rb") as f:
            assert f.read() == bodies[track_id]
    reasons = {os.path.basename(path): why for path, why in summary["failed"]}
    assert "cannot read" in reasons["000140.mp3"] and "empty" in reasons["099134.mp3"]
    assert "missing" in reasons["098565.mp3"]
    assert sorted(os.listdir(root)) == ["fma_metadata.zip", "fma_small.zip"]  # nothing extracted beside them
    leftovers = [n for _, _, names in os.walk(out_dir) for n in names if n.startswith(".")]
    assert leftovers == []


def test_a_csv_without_the_three_row_header_is_refused_in_one_line(tmp_path):
    path = tmp_path / "tracks.csv"
    path.write_text("track_id,title,genre_top\n2,Food,Hip-Hop\n", encoding="utf-8")
    with open(path, newline="", encoding="utf-8") as f, pytest.raises(fma_archive.ArchiveError) as e:
        list(fma_archive.read_tracks_csv(f, str(path)))
    assert "three" in str(e.value) or "track_id" in str(e.value)
    assert "\n" not in str(e.value)


def test_multiline_fields_do_not_break_rows(archive):
    root, _ = archive
    with open(os.path.join(root, "fma_metadata", "tracks.csv"), newline="", encoding="utf-8") as f:
        records = list(fma_archive.read_tracks_csv(f))
    assert [r["track_id"] for r in records] == [t[0] for t in TRACKS] + ["x../"]
    assert records[4]["artist/name"] == 'Band, "The"' and records[4]["set/subset"] == "medium"


def test_the_script_imports_an_archive_and_lists_failures(archive, tmp_path):
    root, _ = archive
    out_dir = str(tmp_path / "raw")
    result = run_script("run_webscraper.py", "--source=fma-archive", f"--archive_dir={root}", "--subset=small",
                        f"--out_dir={out_dir}", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fma-archive: 4 new, 0 already had, 3 failed" in result.stdout
    with open(os.path.join(out_dir, "failures.csv"), newline="", encoding="utf-8") as f:
        failures = list(csv.DictReader(f))
    assert len(failures) == 3 and any("empty" in r["reason"] for r in failures)
    with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["subset"] == "small"
    assert set(manifest.read_manifest(out_dir)) == {"2", "5", "10", "140"}


@pytest.mark.parametrize("args,expect", [
    (["--archive_dir={tmp}"], "fma_metadata"),
    (["--archive_dir={tmp}/nowhere"], "is not a folder"),
    (["--archive_dir={tmp}", "--subset=tiny"], "subset='tiny'"),
])
def test_the_script_refuses_a_bad_archive_in_one_line(tmp_path, args, expect):
    out_dir = str(tmp_path / "raw")
    result = run_script("run_webscraper.py", "--source=fma-archive", f"--out_dir={out_dir}",
                        *[a.format(tmp=tmp_path) for a in args], timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], result.stderr
