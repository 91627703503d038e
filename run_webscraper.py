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

A rerun fetches only what is missing; a killed run loses at most the files in flight. One run per out_dir at a
time: a second is refused in one line (<out_dir>/.waveforms.lock). What could not be
fetched is listed at the end and in <out_dir>/failures.csv (path, reason).
"""

from local.core.config import configure, fail, save_config, stage_main

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

# -----------------------------------------------------------------------------


@stage_main
def main(argv=None):
    """Stage 1: check the config, record it, collect what is missing from the source, say what happened."""
    config = configure(dict(globals()), argv)  # a copy: the block above keeps its defaults for the next call
    from local.collect import sources
    from local.core import locks
    try:
        sources.check_config(config)
        with locks.acquire_lock(config["out_dir"], "stage 1"):  # one writer per out_dir; before config.json
            save_config(config, config["out_dir"])
            summary = sources.collect(config)
    except ValueError as e:  # a ConfigError, a LockHeld, or a source that cannot start (one line saying why)
        fail(str(e))
    print("\n".join(sources.summary_lines(summary, config)))


if __name__ == "__main__":
    main()
