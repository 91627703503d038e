"""Sound as numbers: decoding any file through ffmpeg or libsndfile (ffmpeg, decoding), waveforms and mu-law
codes (waveform), and writing WAV or encoded files (encoding).

May import: core, store. Never a package after it in local/__init__.py's order, nor aws/ or a run_ script.

Names are imported on first use (``from local.audio import name`` or ``local.audio.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('decoding', 'encoding', 'ffmpeg', 'waveform')
_OWNERS = {'DecodeError': 'ffmpeg',
           'DecodeSettings': 'decoding',
           'FFMPEG_TIMEOUT_SECONDS': 'ffmpeg',
           'HTML_PREFIXES': 'decoding',
           'LIBSNDFILE': 'decoding',
           'MISSING_REASON': 'decoding',
           'MMAP_THRESHOLD_BYTES': 'decoding',
           'SILENT_PEAK': 'decoding',
           'SPECIAL_FILE_REASON': 'decoding',
           'STREAM_ABOVE_BYTES': 'decoding',
           'STREAM_CHUNK_FRAMES': 'ffmpeg',
           'TooLongToHold': 'ffmpeg',
           'TrackError': 'decoding',
           'WHOLE_DECODE_MAX_BYTES': 'ffmpeg',
           'WHOLE_DECODE_MAX_SECONDS': 'decoding',
           'check_bytes': 'decoding',
           'check_file_rate': 'decoding',
           'check_finite': 'decoding',
           'check_length': 'decoding',
           'clip_problem': 'waveform',
           'decode_after_ffmpeg_refused': 'decoding',
           'decode_audio': 'ffmpeg',
           'decode_from_path': 'decoding',
           'decode_many': 'ffmpeg',
           'decode_one_or_error': 'ffmpeg',
           'decode_track': 'decoding',
           'decode_with_libsndfile': 'ffmpeg',
           'encode_audio': 'encoding',
           'failure_reason': 'decoding',
           'feed_stdin': 'ffmpeg',
           'ffmpeg_binary': 'ffmpeg',
           'file_size': 'decoding',
           'keep_large_blocks_mapped': 'decoding',
           'length_problem': 'ffmpeg',
           'long_result': 'decoding',
           'mu_law_decode': 'waveform',
           'mu_law_encode': 'waveform',
           'peak_normalize': 'waveform',
           'process_batch': 'decoding',
           'process_long_input': 'decoding',
           'read_pcm': 'ffmpeg',
           'read_regular_file': 'decoding',
           'read_wav_header': 'ffmpeg',
           'resample': 'waveform',
           'short_ffmpeg_error': 'ffmpeg',
           'sniff_not_audio': 'decoding',
           'stream_decode': 'ffmpeg',
           'stream_decode_with_libsndfile': 'ffmpeg',
           'stream_pass': 'decoding',
           'to_mono': 'waveform',
           'to_pcm16': 'waveform',
           'track_from_samples': 'decoding',
           'track_from_stream': 'decoding',
           'trim_bounds': 'decoding',
           'trim_silence': 'waveform',
           'write_wav': 'encoding'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
