"""local/audio/ffmpeg.py on real encoded files: decoding, downmix, resampling, trimming, mu-law."""
import librosa
import numpy as np
import pytest
from helpers import encode, make_audio, tone

from local.audio import ffmpeg as audio_ffmpeg
from local.audio import waveform


@pytest.mark.parametrize("ext,sample_rate,channels", [
    ("wav", 22050, 1), ("flac", 44100, 2), ("ogg", 48000, 2), ("mp3", 44100, 1), ("mp3", 48000, 2),
    ("m4a", 44100, 2), ("aiff", 22050, 1),
])
def test_decode_keeps_the_files_rate_and_channels(tmp_path, ext, sample_rate, channels):
    path = make_audio(str(tmp_path / f"x.{ext}"), seconds=1.5, sample_rate=sample_rate, channels=channels)
    samples, rate, warning = audio_ffmpeg.decode_audio(path)
    assert rate == sample_rate
    assert samples.shape[1] == channels and samples.dtype == np.float32
    # lossy codecs add encoder delay/padding; the length stays within a few frames of 1.5 s
    assert abs(len(samples) - 1.5 * sample_rate) < 0.1 * sample_rate
    assert warning == ""


def test_decode_from_bytes_keeps_the_start_of_the_stream(tmp_path):
    # Through a pipe ffmpeg cannot seek to learn the mp3's end padding, so the stream may be a few ms longer;
    # everything before that is the same samples (the stage always decodes bytes, so its codes never differ).
    path = make_audio(str(tmp_path / "x.mp3"), seconds=2.0, sample_rate=44100, channels=2)
    from_path, rate_a, _ = audio_ffmpeg.decode_audio(path)
    with open(path, "rb") as f:
        from_bytes, rate_b, _ = audio_ffmpeg.decode_audio(f.read())
    assert rate_a == rate_b
    assert 0 <= len(from_bytes) - len(from_path) < 0.05 * rate_a
    np.testing.assert_array_equal(from_path, from_bytes[: len(from_path)])


def test_lossless_decode_returns_the_samples_written(tmp_path):
    original = tone(seconds=0.5, sample_rate=16000, channels=2)
    path = encode(str(tmp_path / "x.wav"), original, 16000, codec_args=("-c:a", "pcm_f32le"))
    samples, rate, _ = audio_ffmpeg.decode_audio(path)
    np.testing.assert_array_equal(samples, original)


def test_downmix_averages_the_channels_instead_of_taking_the_left_one():
    left = np.linspace(-1, 1, 100, dtype=np.float32)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    np.testing.assert_allclose(waveform.to_mono(stereo), left / 2)
    np.testing.assert_array_equal(waveform.to_mono(left[:, None]), left)


def test_resample_is_librosas_soxr_hq():
    y = tone(seconds=1.0, sample_rate=44100)[:, 0]
    ours = waveform.resample(y, 44100, 16000)
    theirs = librosa.resample(y, orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    assert len(ours) == 16000
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_mu_law_codes_equal_librosa_and_round_trip():
    y = np.linspace(-1, 1, 2001, dtype=np.float32)
    codes = waveform.mu_law_encode(y, 256)
    expected = librosa.mu_compress(y, mu=255, quantize=True) + 128
    np.testing.assert_array_equal(codes, expected)
    assert codes.dtype == np.uint8 and codes.min() == 0 and codes.max() == 255
    decoded = waveform.mu_law_decode(codes, 256)
    # mu-law steps are finest near zero; the round trip error stays within one step everywhere
    assert np.max(np.abs(decoded - y)) < 0.045
    assert np.max(np.abs(decoded[np.abs(y) < 0.01] - y[np.abs(y) < 0.01])) < 1e-3


def test_trim_silence_cuts_only_the_quiet_ends():
    sr = 16000
    y = np.concatenate([np.zeros(sr), tone(1.0, sr)[:, 0], np.zeros(sr)])
    trimmed = waveform.trim_silence(y, silence_threshold_db=60)
    assert 0.9 * sr < len(trimmed) < 1.2 * sr


def test_pcm16_scales_down_instead_of_clipping():
    y = np.array([0.0, 0.5, -2.0], dtype=np.float32)
    pcm = waveform.to_pcm16(y)
    assert pcm.dtype == np.int16
    assert pcm[2] == -32767 and pcm[1] == round(0.25 * 32767)


def test_decode_error_names_the_problem(tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00\x01 not audio at all " * 50)
    with pytest.raises(audio_ffmpeg.DecodeError, match="ffmpeg cannot decode"):
        audio_ffmpeg.decode_audio(str(bad))


@pytest.mark.parametrize("channels", [256, 16, 2])
def test_mu_law_codes_equal_librosa_on_noise_and_at_every_level_edge(channels):
    mu = channels - 1
    rng = np.random.default_rng(channels)
    edges = np.linspace(-1, 1, mu + 1)
    at_edges = np.sign(edges) * np.expm1(np.abs(edges) * np.log1p(mu)) / mu  # inputs that compress onto an edge
    for y in (np.clip(rng.standard_normal(100000).astype(np.float32) * 0.3, -1, 1), at_edges,
              np.clip(np.nextafter(at_edges, 2), -1, 1), np.clip(np.nextafter(at_edges, -2), -1, 1),
              at_edges.astype(np.float32)):
        expected = librosa.mu_compress(y, mu=mu, quantize=True) + channels // 2
        np.testing.assert_array_equal(waveform.mu_law_encode(y, channels).astype(int), expected)


def test_decode_many_gives_each_file_the_samples_decode_audio_gives_it(tmp_path):
    paths = [make_audio(str(tmp_path / f"x{k}.{ext}"), seconds=1.0 + 0.3 * k, sample_rate=rate, channels=ch,
                        freq_hz=300 + 50 * k)
             for k, (ext, rate, ch) in enumerate([("mp3", 44100, 2), ("flac", 22050, 1), ("ogg", 48000, 2)])]
    datas = [open(p, "rb").read() for p in paths]
    for outcome, data in zip(audio_ffmpeg.decode_many(datas), datas):
        samples, rate, warning = audio_ffmpeg.decode_audio(data)
        assert outcome[1] == rate and outcome[2] == warning == ""
        np.testing.assert_array_equal(outcome[0], samples)
    # one broken file in a batch: its own error, the others still decoded
    mixed = audio_ffmpeg.decode_many([datas[0], b"\x00\x01 not audio " * 64, datas[1][: len(datas[1]) // 2]])
    assert isinstance(mixed[1], audio_ffmpeg.DecodeError)
    np.testing.assert_array_equal(mixed[0][0], audio_ffmpeg.decode_audio(datas[0])[0])
    assert mixed[2][2] != "" or len(mixed[2][0]) < len(audio_ffmpeg.decode_audio(datas[1])[0])  # truncated: warned or shorter
