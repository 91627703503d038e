"""A stage-4 output folder holds the clips of one call, always: never a killed call's WAVs beside the
previous call's ``generation.json``, never a clip the new call did not write.

    claim_folder(out_dir, names)   # before the first clip: the previous calls' clips and generation.json go
    ...write the clips, then generation.json...
    release_folder(out_dir)        # the call is complete

Which files a call owns is recorded before it writes any (``.clips-pending.json``: the file names, the previous
calls' ones included), so a call killed at any point leaves a list the next call clears from. Files the calls
did not write (a user's own) are never touched. Only the standard library is imported here.
"""
import contextlib
import os

from local.core.fileio import read_json, write_json_atomic

GENERATION_JSON = "generation.json"
PENDING_NAME = ".clips-pending.json"

def owned_files(out_dir):
    """The file names in ``out_dir`` that earlier stage-4 calls wrote: the clips (WAV, PNG) its
    ``generation.json`` lists, and those a call that did not finish had claimed."""
    names = set()
    generation = read_json(os.path.join(out_dir, GENERATION_JSON)) or {}
    for clip in generation.get("clips", []) if isinstance(generation, dict) else []:
        for key in ("wav", "png"):
            if isinstance(clip, dict) and isinstance(clip.get(key), str):
                names.add(os.path.basename(clip[key]))
    pending = read_json(os.path.join(out_dir, PENDING_NAME))
    if isinstance(pending, dict):
        names.update(n for n in pending.get("files", []) if isinstance(n, str))
    return {n for n in names if n and os.path.basename(n) == n and not n.startswith(".")}

def claim_folder(out_dir, names):
    """Before a call writes the files ``names`` (file names in ``out_dir``): record them with what earlier calls
    left, then remove the earlier calls' ``generation.json`` and clips. Returns the names removed."""
    earlier = owned_files(out_dir)
    write_json_atomic(os.path.join(out_dir, PENDING_NAME), {"files": sorted(earlier | set(names))})
    removed = []
    for name in [GENERATION_JSON] + sorted(earlier):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out_dir, name))
            removed.append(name)
    return removed

def release_folder(out_dir):
    """The call that claimed ``out_dir`` wrote its ``generation.json``: its claim is no longer needed."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(out_dir, PENDING_NAME))

