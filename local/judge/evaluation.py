"""How well a WaveNet predicts real audio: teacher-forced negative log-likelihood in bits per sample, and baselines.

Every code of a track but the first is scored given all the codes before it (as far back as the receptive
field reaches; before the track's start, the model's causal zero padding). Long tracks are cut into
windows of ``window`` scored positions, each with receptive_field - 1 codes of context in front, so the
scores equal those of one pass over the whole track while memory stays bounded by
``batch_positions`` positions per forward pass.

Baselines: ``uniform`` = log2(Q) bits (every code equally likely); ``unigram`` = the entropy of the train
codes' histogram (a model that knows only how often each code occurs).
"""
import math

import numpy as np

from local.core.config import StageError
from local.core.fileio import write_json_atomic
from local.dataset.code_statistics import code_histogram, cross_entropy_bits, entropy_bits
from local.store.dataset_files import read_track_codes
from local.store.layout import RunDir


def track_windows(n_codes, receptive_field, window):
    """The windows that score a track of ``n_codes`` codes: a list of (input_start, score_start, score_stop).

    Output position p (0..n_codes-2) predicts code p+1. A window feeds codes input_start ..
    input_start + receptive_field - 1 + window - 1 (fewer at the track's end) and scores outputs
    score_start..score_stop-1 (absolute positions). The first window starts at the track's start, where
    the model's own padding is the truth, so it scores from position 0.
    """
    windows = []
    first_span = receptive_field - 1 + window  # the first window has no context to spend: it scores it all
    position = 0
    while position < n_codes - 1:
        if position == 0:
            start, stop = 0, min(n_codes - 1, first_span)
        else:
            start, stop = position - (receptive_field - 1), min(n_codes - 1, position + window)
        windows.append((start, position, stop))
        position = stop
    return windows


def log2_softmax(logits):
    """log2 of softmax over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))) / math.log(2.0)


def score_tracks(model, config, tracks, *, window=8192, batch_positions=32768, progress=None, plan_settings=None):
    """Teacher-forced negative log2-likelihood of every track.

    config: the model's :class:`local.model.wavenet.WaveNetConfig`. tracks: a list of (codes (n,) uint8, genre_id int or None). Windows of all tracks share one input length
    (receptive_field - 1 + window; shorter ones are padded at the end, which a causal model never sees), so
    the forward pass is traced once; ``batch_positions`` bounds the positions per pass.
    progress: an optional tqdm-like object; ``update(k)`` is called with the positions scored.
    Returns a list of (bits summed over the track, positions scored), one per track.

    With a context stack each track is fed after ``context_past`` codes of silence (as the generator starts)
    and every window starts on a frame boundary of that padded track (up to context_rate - 1 codes earlier),
    so the scores still equal those of one pass over the whole padded track.

    A renderer (``plan_settings``: its :class:`local.audio.plan.PlanSettings`) hears each track's own plan
    (local.audio.plan.plan_frames) and is scored as it generates: from one code of silence, so every code of
    the track is scored, code a playing frame a // hop; windows start on a frame (and on a context frame). A
    pre-emphasized renderer is scored on its own (emphasized) codes.
    """
    receptive_field, past = config.receptive_field, config.context_past
    align = config.context_rate if past else 1
    plans = None
    if plan_settings is not None:
        from local.audio.plan import plan_frames, plan_window
        align = math.lcm(align, plan_settings.hop)
        plans = [plan_frames(codes, plan_settings) for codes, _ in tracks]
        tracks = [(np.concatenate([[config.silence_code], np.asarray(config.model_codes(codes))]), genre)
                  for codes, genre in tracks]
    length = receptive_field - 1 + window + align - 1
    rows = max(1, batch_positions // (past + length))
    padded = [config.pad_context(codes) for codes, _ in tracks]  # = the codes without a context stack
    jobs = []  # (track index, input_start, score_start, score_stop)
    for index, (codes, _) in enumerate(tracks):
        jobs += [(index, *w) for w in track_windows(len(codes), receptive_field, window)]
    totals = [[0.0, 0] for _ in tracks]
    n_q = config.quantization_channels
    for first in range(0, len(jobs), rows):
        batch = jobs[first:first + rows]
        batch += [batch[-1]] * (rows - len(batch))  # same batch shape every pass: no retracing
        inputs = np.full((rows, past + length), n_q // 2, np.int32)
        genres = np.zeros(rows, np.int32)
        frames = None if plans is None else \
            np.zeros((rows, config.plan_frames_for(length), plan_settings.bands), np.float32)
        for row, (index, start, _, _) in enumerate(batch):
            start -= start % align  # track position start is padded position past + start
            piece = padded[index][start:start + past + length]
            inputs[row, :len(piece)] = piece
            genres[row] = tracks[index][1] or 0
            if plans is not None:  # input position start + j + 1 is the track's code start + j: frame j // hop
                frames[row] = plan_window(plans[index], start // plan_settings.hop, -(-length // plan_settings.hop),
                                          config.plan_width)
        logits = model.predict_on_batch(config.model_inputs(inputs, genres, frames))
        for row, (index, start, score_start, score_stop) in enumerate(batch[:len(jobs[first:first + rows])]):
            start -= start % align
            positions = np.arange(score_start, score_stop)
            targets = np.asarray(tracks[index][0][positions + 1], np.int64)
            log2p = log2_softmax(logits[row, positions - start])
            totals[index][0] += float(-log2p[np.arange(len(positions)), targets].sum())
            totals[index][1] += len(positions)
            if progress is not None:
                progress.update(len(positions))
    return [(bits, n) for bits, n in totals]


def evaluate_test_tracks(model, config, *, test_rows, train_rows, genres, window=8192, batch_positions=32768,
                         read_codes, progress=None, plan_settings=None):
    """Score the test tracks and the baselines: the dict saved as ``<run_dir>/evaluation.json``.

    test_rows, train_rows  dataset index rows; genres: the run's genres (index = genre id)
    read_codes             ``read_codes(row) -> (n,) uint8`` (local.store.dataset_files.read_track_codes)
    Tracks are read 16 at a time, so memory does not grow with the test set.
    """
    n_codes = config.quantization_channels
    scores, test_counts = [], np.zeros(n_codes, np.int64)
    for first in range(0, len(test_rows), 16):
        tracks = [(read_codes(row), genres.index(row["genre"]) if config.conditioned else None)
                  for row in test_rows[first:first + 16]]
        scores += score_tracks(model, config, tracks, window=window, batch_positions=batch_positions, progress=progress,
                               plan_settings=plan_settings)
        test_counts += code_histogram((codes for codes, _ in tracks), n_codes)
    total_bits, total_n = sum(b for b, _ in scores), sum(n for _, n in scores)
    train_counts = code_histogram((read_codes(row) for row in train_rows), n_codes)
    per_genre = {}
    for row, (bits, n) in zip(test_rows, scores):
        entry = per_genre.setdefault(row["genre"], [0.0, 0])
        entry[0] += bits
        entry[1] += n
    return {"test_bits_per_sample": total_bits / max(total_n, 1),
            "uniform_bits_per_sample": math.log2(n_codes),
            "unigram_bits_per_sample": entropy_bits(train_counts) if train_counts.sum() else None,
            "unigram_test_bits_per_sample": cross_entropy_bits(test_counts, train_counts),
            "n_samples": int(total_n), "n_tracks": len(test_rows),
            "per_genre_bits_per_sample": {g: b / max(n, 1) for g, (b, n) in per_genre.items()},
            "per_track_bits_per_sample": {str(row["track_id"]): b / max(n, 1)
                                          for row, (b, n) in zip(test_rows, scores)},
            "receptive_field": config.receptive_field, "total_receptive_field": config.total_receptive_field}


def test_rows_of(index, genres, *, conditioned, max_tracks=0):
    """The test rows to score: the index's ``test`` split, only the run's genres for a conditioned model (a
    model cannot be asked for a genre it never saw), at most ``max_tracks`` (0 = all). Returns (rows, skipped
    genre names)."""
    rows = [row for row in index if row["split"] == "test"]
    skipped = sorted({row["genre"] for row in rows if row["genre"] not in genres}) if conditioned else []
    rows = [row for row in rows if row["genre"] not in skipped]
    return rows[:max_tracks or None], skipped


def evaluate_run(model, config, *, run_dir, index, genres, data_dir, window=8192, batch_positions=32768,
                 max_tracks=0, progress=None, sample_rate=None):
    """Score a run's model on the test tracks of ``index`` and write ``<run_dir>/evaluation.json``.

    config: the run's WaveNetConfig; ``sample_rate`` (Hz) adds the receptive field in seconds. Returns (the evaluation dict, its path). Raises StageError (one line)
    when the dataset has no test track to score.
    """
    test_rows, _ = test_rows_of(index, genres, conditioned=config.conditioned, max_tracks=max_tracks)
    if not test_rows:
        raise StageError(f"{data_dir} has no test tracks to evaluate on (see its dataset.json): rerun stage 2 with "
                         f"--test_fraction > 0 or pass another --data_dir", status=1)
    result = evaluate_test_tracks(model, config, test_rows=test_rows,
                                  train_rows=[row for row in index if row["split"] == "train"], genres=genres,
                                  window=window, batch_positions=batch_positions, read_codes=read_track_codes,
                                  progress=progress, plan_settings=config.plan_settings(sample_rate or 16000))
    if sample_rate:
        result.update(config.receptive_field_json(sample_rate))
    path = write_json_atomic(RunDir(run_dir).evaluation_json, {**result, "data_dir": data_dir})
    return result, path


def evaluation_table(result):
    """The evaluation as the lines printed to a person: model, unigram and uniform bits/sample."""
    unigram = result["unigram_bits_per_sample"]
    heading = f"test set ({result['n_tracks']} tracks, {result['n_samples']:,} samples)"
    return [f"{heading:<44}bits/sample",
            f"  {'model (teacher-forced)':<42}{result['test_bits_per_sample']:.3f}",
            f"  {'unigram (train codes histogram entropy)':<42}" + (f"{unigram:.3f}" if unigram is not None else "-"),
            f"  {'unigram on the test codes':<42}{result['unigram_test_bits_per_sample']:.3f}",
            f"  {'uniform (log2 ' + str(round(2 ** result['uniform_bits_per_sample'])) + ')':<42}"
            f"{result['uniform_bits_per_sample']:.3f}"]
