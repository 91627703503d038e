"""The track-level train/valid/test split: a stable hash of the track id, with every genre given a train
track (and, from 3 tracks, a valid and a test track).
"""
import hashlib
import os


def normalize_split(name):
    """Map a source's split name (FMA: training/validation/test) to train/valid/test; "" if none."""
    name = (name or "").strip().lower()
    return {"training": "train", "train": "train", "validation": "valid", "valid": "valid", "val": "valid",
            "test": "test"}.get(name, "")


def hash_unit(track_id, split_seed):
    """A stable number in [0, 1) from a track id and a seed (sha256; independent of the other tracks)."""
    digest = hashlib.sha256(f"{split_seed}/{track_id}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16 ** 15


def hash_split(track_id, valid_fraction, test_fraction, split_seed):
    """The split of a track from a stable hash: test below ``test_fraction``, then valid, then train."""
    u = hash_unit(track_id, split_seed)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def ensure_train_per_genre(new_rows, existing_rows, split_seed):
    """Move one new track of each genre that would otherwise have no train track into train (in place).

    Only tracks that are new in this run move, so tracks already in the dataset keep their split. The track
    moved is the one whose hash is closest to train, so the choice is stable for a given set of tracks.
    Returns the list of genres that still have no train track (their tracks came with a source split).
    """
    has_train = {r["genre"] for r in list(existing_rows) + list(new_rows) if r["split"] == "train"}
    lacking = []
    for genre in sorted({r["genre"] for r in new_rows} - has_train):
        movable = [r for r in new_rows if r["genre"] == genre and not r.get("split_from_source")]
        if not movable:
            lacking.append(genre)
            continue
        max(movable, key=lambda r: hash_unit(r["track_id"], split_seed))["split"] = "train"
    return lacking


EVERY_SPLIT_MIN_TRACKS = 3  # a genre with at least this many tracks gets a train, a valid and a test track


def ensure_every_split_per_genre(new_rows, existing_rows, split_seed, min_tracks=EVERY_SPLIT_MIN_TRACKS):
    """Give every genre a train track, and one of at least ``min_tracks`` tracks a valid and a test track too.

    Train first (:func:`ensure_train_per_genre`); then, for a genre of at least ``min_tracks`` tracks (new and
    existing) with no valid (then no test) track, one new track moves there from a split of that genre that
    keeps another track (train preferred): of those, the one whose hash is closest to the split (the lowest),
    so the choice is stable for a given set of tracks. Tracks already in the dataset and tracks whose split
    came from the source never move. In place; returns the genres still without a train track.
    """
    lacking = ensure_train_per_genre(new_rows, existing_rows, split_seed)
    rows = list(existing_rows) + list(new_rows)
    for genre in sorted({r["genre"] for r in new_rows}):
        of_genre = [r for r in rows if r["genre"] == genre]
        if len(of_genre) < min_tracks:
            continue
        for split in ("valid", "test"):
            counts = {s: sum(r["split"] == s for r in of_genre) for s in ("train", "valid", "test")}
            if counts[split]:
                continue
            donors = [r for r in new_rows if r["genre"] == genre and not r.get("split_from_source")
                      and counts.get(r["split"], 0) > 1]
            if donors:
                min(donors, key=lambda r: (r["split"] != "train", hash_unit(r["track_id"], split_seed),
                                           r["track_id"]))["split"] = split
    return lacking


def keep_same_audio_in_one_split(new_items, existing_rows):
    """Put tracks that are the same audio under two ids - the same ``path``, or the same ``sha256`` (the
    manifest's, or the dataset's for a track already there) - into one split, so a valid or test track is
    never a copy of a train track. The split kept: a track already in the dataset's, else that of the first
    (by track_id) whose split came from the source, else the first's. In place on ``new_items``; returns
    [(path, text)] warnings, one per track whose split was set so."""
    def keys(path, sha):
        found = [("path", os.path.normpath(path) if "://" not in path else path)] if path else []
        return found + ([("sha256", sha)] if sha else [])

    members = [(0, r["track_id"], r.get("split_from_source", True), r,
                keys(r.get("source_path") or "", r.get("source_sha256") or "")) for r in existing_rows]
    members += [(1, i["track_id"], not i.get("split_from_source"), i, keys(i["path"], i.get("sha256") or ""))
                for i in new_items]
    groups = {}  # key -> list of members sharing it
    for member in members:
        for key in member[4]:
            groups.setdefault(key, []).append(member)
    warnings, told = [], set()
    for key, group in sorted(groups.items(), key=lambda kv: str(kv[0])):  # "path" before "sha256"
        if len({m[1] for m in group}) < 2:
            continue
        leader = min(group, key=lambda m: (m[0], m[2], str(m[1])))
        for member in group:
            if member[0] == 1 and member[1] != leader[1] and member[1] not in told:
                told.add(member[1])
                moved = member[3]["split"] != leader[3]["split"]
                member[3].update(split=leader[3]["split"], split_from_source=True)
                warnings.append((member[3]["path"], f"the same audio as track {leader[1]!r} (same {key[0]}): "
                                 f"kept in its split ({leader[3]['split']}"
                                 f"{', moved' if moved else ''}) so that no copy leaks across splits"))
    return warnings


def resplit_usable(written, kept_rows, splits):
    """The splits the tracks a run could use (decoded and written) should have: :func:`local.dataset.build.plan_tracks`'s
    rule applied to them alone, so planned valid/test tracks that failed to decode leave no genre without one.

    ``written``: the planned items whose rows were written (``track_id``, ``genre``, ``split``,
    ``split_from_source``); ``kept_rows``: the dataset's rows from before the run that stay (they never move);
    ``splits``: SplitSettings. Returns {track_id: split} for the written tracks whose split changes ({} when
    every planned track decoded: the plan already split them so).
    """
    rows = [dict(item, split=item["split"] if item["split_from_source"] else
                 hash_split(item["track_id"], splits.valid_fraction, splits.test_fraction, splits.split_seed))
            for item in written]
    ensure_every_split_per_genre(rows, kept_rows, splits.split_seed)
    keep_same_audio_in_one_split(rows, kept_rows)  # copies stay together (the plan already said so)
    return {row["track_id"]: row["split"] for row, item in zip(rows, written) if row["split"] != item["split"]}
