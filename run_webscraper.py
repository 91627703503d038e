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

A rerun fetches only what is missing; a killed run loses at most the files in flight. What could not be
fetched is listed at the end and in <out_dir>/failures.csv (path, reason).
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
link = True  # hard-link instead of copying when the source files are on the same disk (folder, fma-archive)
# --- FMA website ---
fma_base_url = "https://freemusicarchive.org"  # the site to scrape (source=fma)
page_size = 100  # tracks per genre listing page
user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"  # browser-like: the site answers 403 to unknown clients
allowed_hosts = []  # extra hosts downloads may come from (the base site and FMA's file host always may)
request_delay_s = 1.0  # pause between requests to the site, seconds
max_retries = 5  # retries on 429, 5xx, timeouts and dropped connections
backoff_s = 1.0  # wait before the first retry, seconds; doubles each retry (a 429's Retry-After wins)
timeout_s = 30.0  # connect and read timeout per request, seconds
file_timeout_s = 0.0  # deadline for one whole file, all its tries together, seconds (0 = none); a rerun resumes it
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
if source == "fma-archive" and not os.path.isdir(os.path.expanduser(archive_dir)):
    fail(f"archive_dir={archive_dir!r} is not a folder: pass --archive_dir=/path/holding/fma_metadata")
if source == "fma-archive" and subset not in ("small", "medium", "large", "full"):
    fail(f"subset={subset!r} must be small, medium, large or full")
if source == "fma" and not fma_base_url.startswith(("http://", "https://")):
    fail(f"fma_base_url={fma_base_url!r} must be an http(s) URL like https://freemusicarchive.org")
for name, value in (("page_size", page_size), ("concurrency", concurrency), ("max_file_mb", max_file_mb),
                    ("timeout_s", timeout_s)):
    if value <= 0:
        fail(f"{name}={value} must be greater than 0")
for name, value in (("request_delay_s", request_delay_s), ("max_retries", max_retries), ("backoff_s", backoff_s),
                    ("max_tracks_per_genre", max_tracks_per_genre), ("file_timeout_s", file_timeout_s)):
    if value < 0:
        fail(f"{name}={value} must not be negative")

if source == "demo":
    from local.demo_corpus import demo_settings_problem
    if demo_settings_problem(demo_seconds, demo_tracks_per_genre):
        fail(demo_settings_problem(demo_seconds, demo_tracks_per_genre))

from local import checks  # noqa: E402
if checks.output_folder_problem(out_dir, "out_dir"):
    fail(checks.output_folder_problem(out_dir, "out_dir"))
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
elif source == "fma":
    from local.scraping import scrape_fma
    try:
        summary = scrape_fma(out_dir, genres, max_tracks_per_genre, fma_base_url, page_size, user_agent,
                             allowed_hosts, request_delay_s, max_retries, timeout_s, concurrency, max_file_mb,
                             backoff_s, file_timeout_s=file_timeout_s)
    except ValueError as e:
        fail(str(e))
else:
    from local.fma_archive import import_fma_archive
    try:
        summary = import_fma_archive(os.path.expanduser(archive_dir), out_dir, subset, genres,
                                     max_tracks_per_genre, link)
    except ValueError as e:
        fail(str(e))

from local.dataset_store import write_failures  # noqa: E402  (same failures.csv shape as stage 2)
write_failures(out_dir, summary["failed"])

print(f"{source}: {summary['downloaded']} new, {summary['skipped']} already had, "
      f"{len(summary['failed'])} failed -> {os.path.join(out_dir, 'manifest.csv')}")
for path, reason in summary["failed"][:20]:
    print(f"  failed: {path}: {reason}")
if len(summary["failed"]) > 20:
    print(f"  ... and {len(summary['failed']) - 20} more in {os.path.join(out_dir, 'failures.csv')}")
