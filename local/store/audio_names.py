"""Which file names are audio: what stage 2 reads from a folder with no manifest.
"""
import os

from local.store import manifest


def is_audio_path(relative_path):
    """True for a file stage 2 reads when there is no manifest: an audio extension, no hidden component."""
    parts = relative_path.split("/")
    return (not any(p.startswith(".") for p in parts)
            and os.path.splitext(parts[-1])[1].lower() in manifest.AUDIO_EXTENSIONS)
