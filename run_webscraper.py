"""Stage 1: collect audio into data/raw/ (one folder per genre) with a manifest.csv.

Sources:
  demo         an offline corpus this project synthesizes (three genres, no network needed) - the default
  folder       your own music folder (mp3, flac, ogg, wav, m4a, aiff); genre from tags or folder names
  fma          the Free Music Archive website, by genre
  fma-archive  an FMA dataset archive (fma_small ... fma_full with fma_metadata/tracks.csv)

Run:
  python run_webscraper.py                                   # the demo corpus into data/raw
  python run_webscraper.py --source=folder --folder=~/Music
  python run_webscraper.py --source=fma --genres=Rock,Jazz --max_tracks_per_genre=50
  python run_webscraper.py --source=fma-archive --archive_dir=/data/fma --subset=small
  python run_webscraper.py --config my.toml --help

A rerun fetches only what is missing; a killed run loses at most the files in flight.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local.config import configure, fail, save_config  # noqa: E402

# --- what to collect ---
source = "demo"  # demo | folder | fma | fma-archive
out_dir = "data/raw"  # where <Genre>/<track_id>.<ext> and manifest.csv go
genres = []  # genres to collect (empty = all the source has)
max_tracks_per_genre = 0  # at most this many tracks per genre (0 = no limit)
seed = 0  # the demo corpus is deterministic for a seed
# --- demo corpus ---
demo_tracks_per_genre = 8  # tracks synthesized per demo genre
demo_seconds = 10.0  # length of each demo track, seconds
# --- your own folder ---
folder = ""  # the music folder to import (source=folder)
genre_from = "tags"  # tags | folder: which wins when a file has a genre tag and sits in a genre folder
link = True  # hard-link instead of copying when the folder is on the same disk
# --- FMA website ---
fma_base_url = "https://freemusicarchive.org"  # the site to scrape (source=fma)
page_size = 100  # tracks per genre listing page
user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"  # browser-like: the site answers 403 to unknown clients
allowed_hosts = []  # extra hosts downloads may come from (the base site and FMA's file host always may)
request_delay_s = 1.0  # pause between requests to the site, seconds
max_retries = 5  # retries on 429, 5xx, timeouts and dropped connections
timeout_s = 30.0  # connect and read timeout per request, seconds
concurrency = 2  # downloads at once
max_file_mb = 50.0  # a file larger than this is abandoned and reported, MB
# --- FMA dataset archive ---
archive_dir = ""  # the folder holding fma_metadata/ (or fma_metadata.zip) and fma_<subset>/ (or .zip)
subset = "small"  # small | medium | large | full

config = configure(globals())
# -----------------------------------------------------------------------------

SOURCES = ("demo", "folder", "fma", "fma-archive")
if source not in SOURCES:
    fail(f"source={source!r} is not one of {', '.join(SOURCES)}")
if source == "folder" and not os.path.isdir(os.path.expanduser(folder)):
    fail(f"folder={folder!r} is not a folder: pass --folder=/path/to/your/music")
if genre_from not in ("tags", "folder"):
    fail(f"genre_from={genre_from!r} must be tags or folder")

os.makedirs(out_dir, exist_ok=True)
save_config(config, out_dir)

if source == "demo":
    from local.demo_corpus import write_demo_corpus
    try:
        summary = write_demo_corpus(out_dir, genres, demo_tracks_per_genre if not max_tracks_per_genre
                                    else min(demo_tracks_per_genre, max_tracks_per_genre), demo_seconds, seed)
    except ValueError as e:
        fail(str(e))
elif source == "folder":
    from local.music_folder import import_music_folder
    summary = import_music_folder(os.path.expanduser(folder), out_dir, genres, max_tracks_per_genre,
                                  genre_from, link)
else:
    fail(f"source={source} is not available yet: use source=demo or source=folder")

print(f"{source}: {summary['downloaded']} new, {summary['skipped']} already had, "
      f"{len(summary['failed'])} failed -> {os.path.join(out_dir, 'manifest.csv')}")
for path, reason in summary["failed"]:
    print(f"  failed: {path}: {reason}")
