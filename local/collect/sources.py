"""Stage 1's steps: check the config, collect from the chosen source into ``out_dir``, say what happened.

``run_webscraper.py`` calls these in order; each source (demo corpus, music folder, FMA website, FMA dataset
archive) lives in its own module and writes through :mod:`local.store.manifest`. Only the standard library is
imported at first, so a config mistake answers at once; a source's module is imported when it runs.
"""
import os

from local.collect.demo_corpus import demo_settings_problem, write_demo_corpus
from local.collect.fma_archive import SUBSETS, import_fma_archive
from local.collect.music_folder import import_music_folder
from local.collect.scraping import scrape_fma
from local.core import checks
from local.core.config import ConfigError
from local.store.dataset_files import write_failures
from local.store.layout import DatasetDir

SOURCES = ("demo", "folder", "fma", "fma-archive")
# the config keys that go to local.collect.scraping.scrape_fma under their own names
FMA_KEYS = ("fma_base_url", "page_size", "user_agent", "allowed_hosts", "request_delay_s", "max_retries",
            "timeout_s", "concurrency", "max_file_mb", "backoff_s", "file_timeout_s")
SHOWN_FAILURES = 20  # more are only in failures.csv


def check_config(config):
    """Raise ConfigError (one line: the key, its value and what it accepts) for the first stage-1 key that
    cannot work. ``config``: run_webscraper.py's resolved config dict."""
    source = config["source"]
    problems = [
        ("source", source not in SOURCES, f"is not one of {', '.join(SOURCES)}"),
        ("folder", source == "folder" and not os.path.isdir(os.path.expanduser(config["folder"])),
         "is not a folder: pass --folder=/path/to/your/music"),
        ("genre_from", config["genre_from"] not in ("tags", "folder"), "must be tags or folder"),
        ("archive_dir", source == "fma-archive" and not os.path.isdir(os.path.expanduser(config["archive_dir"])),
         "is not a folder: pass --archive_dir=/path/holding/fma_metadata"),
        ("subset", source == "fma-archive" and config["subset"] not in SUBSETS, f"must be one of {', '.join(SUBSETS)}"),
        ("fma_base_url", source == "fma" and not config["fma_base_url"].startswith(("http://", "https://")),
         "must be an http(s) URL like https://freemusicarchive.org"),
    ]
    problems += [(key, config[key] <= 0, "must be greater than 0")
                 for key in ("page_size", "concurrency", "max_file_mb", "timeout_s")]
    problems += [(key, config[key] < 0, "must not be negative")
                 for key in ("request_delay_s", "max_retries", "backoff_s", "max_tracks_per_genre", "file_timeout_s")]
    for key, bad, what in problems:
        if bad:
            raise ConfigError(f"{key}={config[key]!r} {what}")
    if source == "demo":
        problem = demo_settings_problem(config["demo_seconds"], config["demo_tracks_per_genre"])
        if problem:
            raise ConfigError(problem)
    problem = checks.shared_folder_problem(config, "out_dir", "folder", "archive_dir") \
        or checks.output_folder_problem(config["out_dir"], "out_dir")
    if problem:
        raise ConfigError(problem)


def collect(config, progress=True):
    """Run the configured source into ``out_dir`` and write ``<out_dir>/failures.csv``.

    Returns the source's summary dict: ``downloaded``, ``skipped`` (already there), ``failed``
    [(path or URL, reason)]. Raises ValueError (one line) when the source cannot start (an unknown demo genre,
    an archive without its metadata, a site whose genres cannot be listed).
    """
    source, out_dir, genres = config["source"], config["out_dir"], config["genres"]
    limit = config["max_tracks_per_genre"]
    if os.path.isdir(out_dir):  # the temps a killed run (SIGTERM, kill -9) left: no file ever trusts them
        from local.core.fileio import remove_stale_temps
        remove_stale_temps(out_dir, recursive=True)
    if source == "demo":
        per_genre = min(config["demo_tracks_per_genre"], limit) if limit else config["demo_tracks_per_genre"]
        summary = write_demo_corpus(out_dir, genres, per_genre, config["demo_seconds"], config["seed"],
                                    progress=progress)
    elif source == "folder":
        summary = import_music_folder(os.path.expanduser(config["folder"]), out_dir, genres, limit,
                                      genre_from=config["genre_from"], link=config["link"], progress=progress)
    elif source == "fma":
        summary = scrape_fma(out_dir, genres, limit, progress=progress, **{key: config[key] for key in FMA_KEYS})
    else:
        summary = import_fma_archive(os.path.expanduser(config["archive_dir"]), out_dir, config["subset"], genres,
                                     limit, link=config["link"], progress=progress)
    write_failures(out_dir, summary["failed"])
    return summary


def summary_lines(summary, config):
    """What run_webscraper.py prints at the end: the counts, then the first failures."""
    failed = summary["failed"]
    lines = [f"{config['source']}: {summary['downloaded']} new, {summary['skipped']} already had, "
             f"{len(failed)} failed -> {os.path.join(config['out_dir'], 'manifest.csv')}"]
    lines += [f"  failed: {path}: {reason}" for path, reason in failed[:SHOWN_FAILURES]]
    if len(failed) > SHOWN_FAILURES:
        lines.append(f"  ... and {len(failed) - SHOWN_FAILURES} more in "
                     f"{DatasetDir(config['out_dir']).failures_csv}")
    return lines
