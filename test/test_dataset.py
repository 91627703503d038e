"""The window stream: aligned targets, every train track once per epoch, never valid/test, bounded memory."""
import itertools
import weakref

import numpy as np
import pytest

from local.dataset import windows as dataset
from local.store import dataset_files

R, W = 16, 24  # receptive field and window used below


def write_dataset(directory, lengths_by_split, seed=0, rows_per_part=3):
    """A real Parquet dataset of random codes: {split: [n_samples, ...]}; returns {track_id: codes}."""
    rng = np.random.default_rng(seed)
    writer = dataset_files.PartWriter(str(directory), rows_per_part=rows_per_part)
    tracks = {}
    for split, lengths in lengths_by_split.items():
        for i, n in enumerate(lengths):
            track_id = f"{split}{i:02d}"
            codes = rng.integers(0, 256, n).astype(np.uint8)
            tracks[track_id] = codes
            writer.write({"track_id": track_id, "genre": f"g{i % 2}", "genre_id": i % 2, "split": split,
                          "sample_rate": 8000, "n_samples": n, "codes": codes.tobytes(),
                          "source_path": f"{track_id}.wav", "source_sha256": track_id})
    writer.close()
    return tracks


def locate(window, tracks):
    """(track_id, offset) of the only place a window of codes occurs in the tracks."""
    found = [(tid, codes.tobytes().find(window.astype(np.uint8).tobytes())) for tid, codes in tracks.items()]
    found = [(tid, at) for tid, at in found if at >= 0]
    assert len(found) == 1, f"window found {len(found)} times"
    return found[0]


@pytest.fixture()
def store(tmp_path):
    lengths = {"train": [300, 95, 64, 41, 500, 130, 77], "valid": [200, 90], "test": [150, 220]}
    tracks = write_dataset(tmp_path, lengths)
    return tmp_path, tracks, dataset_files.read_index(str(tmp_path))


def test_windows_from_codes_targets_are_the_next_codes():
    codes = np.arange(100, dtype=np.uint8)
    inputs, targets = dataset.windows_from_codes(codes, R, W, [0, 5, 100 - R - W])
    assert inputs.shape == (3, R + W - 1) and targets.shape == (3, W)
    assert inputs.dtype == np.int32 and targets.dtype == np.int32
    np.testing.assert_array_equal(inputs[1], np.arange(5, 5 + R + W - 1))
    np.testing.assert_array_equal(targets[1], np.arange(5 + R, 5 + R + W))
    np.testing.assert_array_equal(inputs[:, R:], targets[:, :-1])  # target j = input R + j
    with pytest.raises(ValueError, match="window starts"):
        dataset.windows_from_codes(codes, R, W, [100 - R - W + 1])


def test_track_starts_tile_the_track():
    rng = np.random.default_rng(0)
    for n in (R + W, 300, 301, 1000):
        starts = dataset.track_starts(n, R, W, rng)
        assert len(starts) == (n - R) // W == dataset.examples_per_track(n, R, W)
        np.testing.assert_array_equal(np.diff(starts), W)  # targets adjacent, never overlapping
        assert starts[0] >= 0 and starts[-1] + R + W <= n
    assert len(dataset.track_starts(R + W - 1, R, W, rng)) == 0


def test_one_epoch_covers_every_train_track_and_nothing_else(store):
    directory, tracks, index = store
    train = dataset.split_tracks(index, "train")
    reads = []

    def counting_read(row):
        reads.append((row["part"], row["row_group"], row["row_in_group"]))
        return dataset_files.read_track_codes(row)

    stream = dataset.TrainStream(train, R, W, batch_size=1, seed=3, cache_tracks=2, read_codes=counting_read)
    assert stream.epoch_examples == sum((n - R) // W for n in (300, 95, 64, 41, 500, 130, 77))
    seen = {}
    batches = stream.batches()
    for _ in range(stream.epoch_examples):
        features, targets = next(batches)
        for codes, genre, target in zip(features["codes"], features["genre_id"], targets):
            track_id, at = locate(np.concatenate([codes, target[-1:]]), tracks)
            assert track_id.startswith("train"), f"a window came from {track_id}"
            assert genre == int(track_id[-2:]) % 2
            np.testing.assert_array_equal(target, tracks[track_id][at + R:at + R + W])
            seen.setdefault(track_id, []).append(at)
    assert set(seen) == {r["track_id"] for r in train if r["n_samples"] >= R + W}
    for track_id, offsets in seen.items():
        expected = (len(tracks[track_id]) - R) // W
        assert len(offsets) == expected
        assert np.all(np.diff(sorted(offsets)) == W)  # this epoch's targets tile the track
    assert len(reads) == len(set(reads)) == len(seen)  # each track read once in the epoch


def test_epochs_are_reshuffled_and_the_stream_resumes_exactly(store):
    _, _, index = store
    train = dataset.split_tracks(index, "train")
    stream = dataset.TrainStream(train, R, W, batch_size=4, seed=7, cache_tracks=1)
    n = stream.epoch_examples
    examples = [e for _, e in zip(range(2 * n), stream.examples())]
    order = [[t for t, _ in examples[:n]], [t for t, _ in examples[n:]]]
    first_seen = [list(dict.fromkeys(o)) for o in order]
    assert sorted(first_seen[0]) == sorted(first_seen[1]) and first_seen[0] != first_seen[1]
    resumed = [e for _, e in zip(range(n), stream.examples(examples_done=n - 5))]
    assert resumed == examples[n - 5:2 * n - 5]
    a = next(stream.batches(examples_done=12))
    b = next(dataset.TrainStream(train, R, W, batch_size=4, seed=7, cache_tracks=1).batches(examples_done=12))
    np.testing.assert_array_equal(a[0]["codes"], b[0]["codes"])


def test_memory_holds_at_most_cache_tracks(store):
    _, _, index = store
    refs, peak = [], [0]

    def tracked_read(row):
        codes = dataset_files.read_track_codes(row)
        refs.append(weakref.ref(codes))
        peak[0] = max(peak[0], sum(r() is not None for r in refs))  # track arrays still held by the stream
        return codes

    stream = dataset.TrainStream(dataset.split_tracks(index, "train"), R, W, batch_size=3, seed=0, cache_tracks=2,
                                 read_codes=tracked_read)
    batches = stream.batches()
    for _ in range(stream.epoch_examples):  # three epochs
        next(batches)
    assert peak[0] == 2


def test_read_track_codes_reads_one_track_or_a_slice_of_it(store):
    _, tracks, index = store
    for row in index:
        np.testing.assert_array_equal(dataset_files.read_track_codes(row), tracks[row["track_id"]])
        np.testing.assert_array_equal(dataset_files.read_track_codes(row, 5, 20), tracks[row["track_id"]][5:20])


def test_validation_set_is_fixed_and_from_valid_tracks_only(store):
    _, tracks, index = store
    valid = dataset.split_tracks(index, "valid")
    first = dataset.validation_set(valid, R, W, 10)
    again = dataset.validation_set(valid, R, W, 10)
    np.testing.assert_array_equal(first[0]["codes"], again[0]["codes"])
    np.testing.assert_array_equal(first[1], again[1])
    assert 8 <= len(first[1]) <= 12
    for codes, target in zip(first[0]["codes"], first[1]):
        track_id, at = locate(np.concatenate([codes, target[-1:]]), tracks)
        assert track_id.startswith("valid")
        np.testing.assert_array_equal(target, tracks[track_id][at + R:at + R + W])
    assert dataset.validation_set(valid, 300, W, 10) is None  # no track long enough


def test_led_in_tracks_give_windows_from_the_first_sample_after_silence(store):
    """--start_from_silence: an epoch's targets cover each train track from its first few codes, and those
    windows read silence before the track (as generation starts); without it no target lies in the first R."""
    _, tracks, index = store
    train, window, silence = dataset.split_tracks(index, "train"), 8, 128
    led, read = dataset.lead_in(train, dataset_files.read_track_codes, R, silence)
    assert [r["n_samples"] for r in led] == [r["n_samples"] + R for r in train]
    for row in led:
        codes = read(row)
        assert len(codes) == row["n_samples"] and (codes[:R] == silence).all()
        np.testing.assert_array_equal(codes[R:], tracks[row["track_id"]])

    def first_targets(stream):
        """{track_id: (offset of the earliest target in the track, that window's inputs)} over one epoch."""
        first = {}
        for (x, y), _ in zip(stream.batches(), range(stream.epoch_examples)):
            track_id, at = locate(y[0], tracks)  # the targets are W real codes of one track
            if at < first.get(track_id, (len(tracks[track_id]), None))[0]:
                first[track_id] = (at, x["codes"][0])
        return first

    led_first = first_targets(dataset.TrainStream(led, R, window, batch_size=1, seed=3, read_codes=read))
    assert set(led_first) == {row["track_id"] for row in train}
    for at, inputs in led_first.values():
        assert at < window  # the tiling's phase is below one window
        assert (inputs[:R - at] == silence).all()  # the silence before the track's first code
    plain_first = first_targets(dataset.TrainStream(train, R, window, batch_size=1, seed=3))
    assert min(at for at, _ in plain_first.values()) >= R
    assert dataset.lead_in(train, dataset_files.read_track_codes, 0, silence)[0] is train


def test_tf_dataset_feeds_the_same_batches(store):
    _, _, index = store
    stream = dataset.TrainStream(dataset.split_tracks(index, "train"), R, W, batch_size=4, seed=1)
    expected = [b for _, b in zip(range(3), stream.batches(examples_done=8))]
    fed = [b for _, b in zip(range(3), dataset.to_tf_dataset(stream, examples_done=8, prefetch=2))]
    for (x, y), (fx, fy) in zip(expected, fed):
        np.testing.assert_array_equal(x["codes"], fx["codes"].numpy())
        np.testing.assert_array_equal(x["genre_id"], fx["genre_id"].numpy())
        np.testing.assert_array_equal(y, fy.numpy())


def test_no_usable_train_track_is_an_error(store):
    _, _, index = store
    with pytest.raises(ValueError, match="no train track"):
        dataset.TrainStream(dataset.split_tracks(index, "train"), 1000, W, batch_size=2)


def test_unigram_bits_of_uniform_codes_is_near_eight(store):
    _, _, index = store
    bits = dataset.unigram_bits(dataset.split_tracks(index, "train"), 256)
    assert 7.0 < bits <= 8.0


def test_an_unreadable_track_is_reported_and_skipped(store, capsys):
    _, tracks, index = store
    train = dataset.split_tracks(index, "train")

    def read_or_fail(row):
        codes = dataset_files.read_track_codes(row)
        if codes.tobytes() == tracks["train04"].tobytes():
            raise OSError("corrupt row group")
        return codes

    stream = dataset.TrainStream(train, R, W, batch_size=1, seed=0, read_codes=read_or_fail)
    batches = stream.batches()
    seen = {locate(np.concatenate([x["codes"][0], y[0, -1:]]), tracks)[0]
            for x, y in (next(batches) for _ in range(stream.epoch_examples - 20))}
    assert seen == {r["track_id"] for r in train} - {"train04"}
    assert "skipping track train04" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no train track could be read"):
        broken = dataset.TrainStream(train, R, W, batch_size=1, read_codes=lambda row: np.zeros(0, np.uint8))
        next(broken.batches())


def unbalanced_tracks():
    """Genre 0: 12 long tracks; genre 1: 3 short ones; genre 2: one track. In-memory codes (track_id = position)."""
    lengths = [(0, 9000)] * 12 + [(1, 1500)] * 3 + [(2, 4000)]
    rows = [{"track_id": str(i), "genre_id": g, "n_samples": n} for i, (g, n) in enumerate(lengths)]
    codes = {r["track_id"]: np.full(r["n_samples"], r["genre_id"], np.uint8) for r in rows}
    return rows, (lambda row: codes[row["track_id"]])


def test_the_balanced_stream_draws_every_genre_equally_often_and_resumes_exactly():
    rows, read = unbalanced_tracks()
    R, W = 1, 500
    plain = dataset.TrainStream(rows, R, W, batch_size=16, seed=5, cache_tracks=4, read_codes=read)
    drawn = [plain.tracks[p]["genre_id"] for p, _ in itertools.islice(plain.examples(), 3000)]
    assert np.bincount(drawn).tolist()[0] > 10 * np.bincount(drawn).tolist()[1]  # in proportion to length

    stream = dataset.GenreBalancedStream(rows, R, W, batch_size=16, seed=5, cache_tracks=4, windows_per_visit=8,
                                         read_codes=read)
    genres = np.concatenate([b[0]["genre_id"] for b in itertools.islice(stream.batches(), 200)])  # 3200 windows
    counts = np.bincount(genres, minlength=3)
    assert abs(counts - len(genres) / 3).max() <= 0.1 * len(genres) / 3, counts
    first = list(itertools.islice(stream.examples(), 3000))
    assert {p for p, _ in first} == set(range(len(rows)))  # every track visited, the single one of genre 2 too
    for p, start in first:  # every window inside its track
        assert 0 <= start <= rows[p]["n_samples"] - R - W
    # a pure function of (seed, examples_done): a resumed stream continues exactly
    assert list(itertools.islice(stream.examples(1234), 50)) == first[1234:1284]
    again = dataset.GenreBalancedStream(rows, R, W, batch_size=16, seed=5, cache_tracks=4, windows_per_visit=8,
                                        read_codes=read)
    resumed = next(again.batches(examples_done=16 * 37))
    expected = list(itertools.islice(stream.batches(), 38))[-1]
    assert np.array_equal(resumed[0]["codes"], expected[0]["codes"])
    assert np.array_equal(resumed[0]["genre_id"], expected[0]["genre_id"])
