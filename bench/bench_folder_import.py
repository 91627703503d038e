"""Benchmark stage 1's folder import: files per second on a first import and the seconds of a rerun that finds
nothing new (issue 20: 10,000 files in under 2 minutes on 2 cores, a rerun in under 10 s).

Run:
  .venv/bin/python bench/bench_folder_import.py                 # 10,000 files
  .venv/bin/python bench/bench_folder_import.py --files=1000

The folder: ``files`` tagged mp3s (1 s, 8 kB each; copies of one file per genre, ``genres`` genres, 100 files
per sub-folder), imported with hard links (the default) as ``run_webscraper.py --source=folder`` does.
Prints one JSON line: files, cores, first_import_seconds, files_per_second, rerun_seconds, imported, skipped.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.core.config import configure

files = 10000  # audio files in the folder
genres = 4  # genres (tags) among them

# -----------------------------------------------------------------------------


def make_folder(folder):
    from local.audio import ffmpeg
    originals = []
    for g in range(genres):
        path = os.path.join(folder, f"original-{g}.mp3")
        subprocess.run([ffmpeg.ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=f={300 + 50 * g}:d=1",
                        "-metadata", f"genre=Genre {g}", "-metadata", f"title=Tone {g}", path], check=True)
        originals.append(path)
    music = os.path.join(folder, "music")
    for k in range(files):
        sub = os.path.join(music, f"album-{k // 100:04d}")
        os.makedirs(sub, exist_ok=True)
        shutil.copyfile(originals[k % genres], os.path.join(sub, f"track-{k:05d}.mp3"))
    return music


def main(argv=None):
    configure(globals(), argv)
    from local.collect.music_folder import import_music_folder
    with tempfile.TemporaryDirectory() as folder:
        music, out = make_folder(folder), os.path.join(folder, "raw")
        started = time.perf_counter()
        first = import_music_folder(music, out, progress=False)
        first_seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = import_music_folder(music, out, progress=False)
        rerun_seconds = time.perf_counter() - started
    assert first["downloaded"] == files and not first["failed"], first["failed"][:3]
    assert again["skipped"] == files and again["downloaded"] == 0
    print(json.dumps({"files": files, "cores": os.cpu_count(), "first_import_seconds": round(first_seconds, 1),
                      "files_per_second": round(files / first_seconds, 1), "rerun_seconds": round(rerun_seconds, 2),
                      "imported": first["downloaded"], "skipped": again["skipped"]}))


if __name__ == "__main__":
    main()
