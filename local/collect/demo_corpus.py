"""The offline demo corpus: three genres of synthesized music you can tell apart by ear.

- ``Ambient``: slow sustained chords of detuned sine/saw pads with slow swells, 60-72 bpm, no drums.
- ``Electronic``: four-on-the-floor kick, off-beat hi-hats, a saw bass line and chord stabs, 120-132 bpm.
- ``Folk``: Karplus-Strong plucked-string arpeggios over a I-IV-V-I progression, 84-104 bpm.

Everything is numpy (plus scipy's ``lfilter`` for the plucked strings) and deterministic for a seed:
track ``i`` of genre ``g`` draws from ``np.random.default_rng([seed, g, i])``, so adding tracks or genres
never changes the others. Waveforms are float32 in [-1, 1], shape (n_samples,).
"""
import numpy as np

from local.audio import encoding
from local.core import fileio
from local.store import manifest

DEMO_GENRES = ["Ambient", "Electronic", "Folk"]
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])


def midi_to_hz(note):
    """Frequency in Hz of a MIDI note number (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def envelope(n_samples, sample_rate, attack_seconds, release_seconds):
    """A linear attack, then an exponential decay reaching -60 dB after ``release_seconds`` seconds; (n,) float64."""
    t = np.arange(n_samples) / sample_rate
    attack = np.clip(t / max(attack_seconds, 1e-4), 0.0, 1.0)
    return attack * np.exp(-6.9 * np.maximum(t - attack_seconds, 0.0) / max(release_seconds, 1e-4))


def triad(root, degree):
    """MIDI notes of the diatonic triad on scale ``degree`` (0-based) of the major key on ``root``."""
    steps = [degree, degree + 2, degree + 4]
    return [root + 12 * (s // 7) + MAJOR_SCALE[s % 7] for s in steps]


def add(out, start, signal):
    """Mix ``signal`` into ``out`` from sample ``start``, cutting what runs past the end."""
    end = min(len(out), start + len(signal))
    if end > start:
        out[start:end] += signal[: end - start]


def pluck(freq_hz, n_samples, sample_rate, rng, damping=0.996):
    """A Karplus-Strong plucked string: a noise burst through a lowpassed feedback delay line; (n,)."""
    from scipy.signal import lfilter
    delay = max(2, int(round(sample_rate / freq_hz)))
    burst = np.zeros(n_samples)
    burst[:delay] = rng.uniform(-1.0, 1.0, delay)
    denominator = np.zeros(delay + 2)
    denominator[0] = 1.0
    denominator[delay] = denominator[delay + 1] = -0.5 * damping
    return lfilter([1.0], denominator, burst)


def ambient_track(rng, out, seconds, sample_rate):
    """Slow pads: one chord every bar at 60-72 bpm, four detuned voices each with a slow swell."""
    bar_seconds = 4 * 60.0 / rng.uniform(60, 72)
    root = int(rng.integers(48, 60))
    t = np.arange(int(bar_seconds * 1.6 * sample_rate)) / sample_rate
    for bar, start_seconds in enumerate(np.arange(0.0, seconds, bar_seconds)):
        degree = int(rng.choice([0, 3, 5, 4])) if bar else 0
        notes = triad(root, degree) + [root - 12 + MAJOR_SCALE[degree % 7]]
        env = envelope(len(t), sample_rate, attack_seconds=bar_seconds * 0.5, release_seconds=bar_seconds * 1.5)
        for note in notes:
            f = midi_to_hz(note)
            voice = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * f * 1.004 * t + rng.uniform(0, 6.28))
            voice += 0.15 * np.sin(2 * np.pi * 2 * f * t)
            add(out, int(start_seconds * sample_rate), 0.12 * env * voice)
    lfo = 0.8 + 0.2 * np.sin(2 * np.pi * 0.1 * np.arange(len(out)) / sample_rate)
    return out * lfo


def electronic_track(rng, out, seconds, sample_rate):
    """Dance music: kick on every beat, hi-hat on the off-beats, a saw bass on eighths, chord stabs."""
    beat_seconds = 60.0 / rng.uniform(120, 132)
    root = int(rng.integers(33, 41))
    kick_t = np.arange(int(0.25 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (50 * kick_t + 60 * (1 - np.exp(-kick_t * 30)) / 30)) * np.exp(-kick_t * 14)
    hat = rng.uniform(-1, 1, int(0.05 * sample_rate)) * np.exp(-np.arange(int(0.05 * sample_rate)) / (0.008 * sample_rate))
    hat = np.diff(hat, prepend=0.0)  # a crude highpass: hats are bright
    bass_pattern = rng.choice([0, 0, 7, 12, 10, 5], size=8)
    eighth = int(beat_seconds / 2 * sample_rate)
    bass_t = np.arange(eighth) / sample_rate
    for beat, start_seconds in enumerate(np.arange(0.0, seconds, beat_seconds)):
        start = int(start_seconds * sample_rate)
        add(out, start, 0.9 * kick)
        add(out, start + eighth, 0.25 * hat)
        for half in range(2):
            f = midi_to_hz(root + bass_pattern[(2 * beat + half) % 8])
            saw = 2.0 * ((f * bass_t) % 1.0) - 1.0
            add(out, start + half * eighth, 0.22 * saw * envelope(eighth, sample_rate, 0.005, beat_seconds / 2))
        if beat % 4 == 2:
            stab_t = np.arange(int(0.2 * sample_rate)) / sample_rate
            stab = sum(np.sign(np.sin(2 * np.pi * midi_to_hz(m) * stab_t)) for m in triad(root + 24, 0))
            add(out, start, 0.06 * stab * envelope(len(stab_t), sample_rate, 0.002, 0.15))
    return out


def folk_track(rng, out, seconds, sample_rate):
    """Plucked strings: arpeggiated triads of a I-IV-V-I progression at 84-104 bpm, a bass note per bar."""
    beat_seconds = 60.0 / rng.uniform(84, 104)
    root = int(rng.integers(52, 60))
    progression = [0, 3, 4, 0]
    note_len = int(1.2 * sample_rate)
    step_seconds = beat_seconds / 2
    for step, start_seconds in enumerate(np.arange(0.0, seconds, step_seconds)):
        degree = progression[(step // 8) % 4]
        chord = triad(root, degree)
        note = chord[[0, 1, 2, 1, 0, 2, 1, 2][step % 8]] + (12 if step % 8 == 5 else 0)
        start = int(start_seconds * sample_rate)
        add(out, start, 0.35 * pluck(midi_to_hz(note), note_len, sample_rate, rng))
        if step % 8 == 0:
            add(out, start, 0.35 * pluck(midi_to_hz(chord[0] - 12), 2 * note_len, sample_rate, rng, 0.998))
    return out


# each mixes its genre's music into ``out`` (zeros, (seconds * sample_rate,) float64) and returns the track
GENRE_SYNTHS = {"Ambient": ambient_track, "Electronic": electronic_track, "Folk": folk_track}


def synthesize_track(genre, index, seed=0, seconds=10.0, sample_rate=22050):
    """One demo track: float32 (seconds * sample_rate,) in [-1, 1], deterministic for (genre, index, seed)."""
    if genre not in GENRE_SYNTHS:
        raise ValueError(f"unknown demo genre {genre!r}; the demo has {', '.join(DEMO_GENRES)}")
    rng = np.random.default_rng([int(seed), DEMO_GENRES.index(genre), int(index)])
    silence = np.zeros(int(float(seconds) * int(sample_rate)))
    y = GENRE_SYNTHS[genre](rng, silence, float(seconds), int(sample_rate))
    fade = min(len(y) // 4, int(0.05 * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    peak = np.max(np.abs(y)) or 1.0
    return (0.89 * y / peak).astype(np.float32)


MAX_DEMO_SECONDS = 600.0  # one track is synthesized in float64 in memory: 600 s at 22,050 Hz is ~106 MB


def demo_settings_problem(seconds, tracks_per_genre):
    """One line naming the key that is out of range (``demo_seconds``, ``demo_tracks_per_genre``), or ""."""
    if not 0.0 < float(seconds) <= MAX_DEMO_SECONDS:  # also refuses nan
        return (f"demo_seconds={seconds:g} must be more than 0 and at most {MAX_DEMO_SECONDS:g} "
                f"(each track is synthesized in memory, ~0.18 MB per second), e.g. --demo_seconds=10")
    if int(tracks_per_genre) < 1:
        return f"demo_tracks_per_genre={tracks_per_genre} must be at least 1, e.g. --demo_tracks_per_genre=8"
    return ""


def demo_track_id(genre, index):
    """The track id of demo track ``index`` of ``genre``, e.g. ``demo-folk-003``."""
    return f"demo-{genre.lower()}-{index:03d}"


def write_demo_corpus(out_dir, genres=None, tracks_per_genre=8, seconds=10.0, seed=0, *, sample_rate=22050,
                      progress=True):
    """Synthesize the demo corpus and encode it to mp3 into the stage-1 layout with a manifest.

    Tracks already in the manifest with matching files are skipped. Returns a summary dict with
    ``downloaded`` (written now), ``skipped`` (already there) and ``failed`` (list of (track_id, reason)).
    """
    from tqdm import tqdm


    genres = genres or DEMO_GENRES
    unknown = [g for g in genres if g not in GENRE_SYNTHS]
    if unknown:
        raise ValueError(f"genres={','.join(unknown)}: the demo corpus has {', '.join(DEMO_GENRES)}")
    have = manifest.read_manifest(out_dir)
    summary = {"downloaded": 0, "skipped": 0, "failed": []}
    jobs = [(g, i) for g in genres for i in range(tracks_per_genre)]
    for genre, index in tqdm(jobs, desc="demo corpus", unit="track", disable=not progress):
        track_id = demo_track_id(genre, index)
        if manifest.have_track(out_dir, have, track_id):
            summary["skipped"] += 1
            continue
        full, relative = manifest.track_path(out_dir, genre, track_id, ".mp3")
        y = synthesize_track(genre, index, seed, seconds, sample_rate)
        title = f"{genre} study no. {index + 1}"
        with fileio.atomic_path(full) as tmp:  # the temp keeps the .mp3 ending: ffmpeg picks the format by it
            encoding.encode_audio(y, sample_rate, tmp, metadata={"genre": genre, "title": title,
                                                              "artist": "Waveforms demo"})
        manifest.record_track(out_dir, track_id, genre, full, relative, title=title, artist="Waveforms demo",
                              source=f"demo:seed={seed}")
        summary["downloaded"] += 1
    return summary
