"""Stage 1's sources: the offline demo corpus, the FMA website (scraping over a polite http_client), an FMA
dataset archive, a music folder, and the dispatcher (sources).

May import: core, store, audio. Never a package after it in local/__init__.py's order, nor aws/ or a run_
script.

Names are imported on first use (``from local.collect import name`` or ``local.collect.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('demo_corpus', 'fma_archive', 'http_client', 'http_rules', 'music_folder', 'scraping', 'sources')
_OWNERS = {'ArchiveError': 'fma_archive',
           'ArchiveFolder': 'fma_archive',
           'CHUNK_BYTES': 'http_client',
           'DEMO_GENRES': 'demo_corpus',
           'FMA_FILE_HOST': 'scraping',
           'FMA_KEYS': 'sources',
           'FetchError': 'http_client',
           'GENRE_SYNTHS': 'demo_corpus',
           'IMPORT_EXTENSIONS': 'music_folder',
           'MAJOR_SCALE': 'demo_corpus',
           'MAX_DEMO_SECONDS': 'demo_corpus',
           'MAX_PAGE_BYTES': 'http_client',
           'MAX_REDIRECTS': 'http_client',
           'MAX_RETRY_AFTER_SECONDS': 'http_client',
           'NEEDED_COLUMNS': 'fma_archive',
           'PARTIAL_MARK': 'http_client',
           'RECORD_BATCH': 'music_folder',
           'RequestPacer': 'http_client',
           'RetryableError': 'http_client',
           'SHOWN_FAILURES': 'sources',
           'SOURCES': 'sources',
           'SPLITS': 'fma_archive',
           'SUBSETS': 'fma_archive',
           'TAG_BATCH': 'music_folder',
           'WebClient': 'http_client',
           'add': 'demo_corpus',
           'already_imported': 'music_folder',
           'ambient_track': 'demo_corpus',
           'audio_format': 'http_rules',
           'audio_member': 'fma_archive',
           'body_chunks': 'http_client',
           'check_config': 'sources',
           'choose_genre': 'music_folder',
           'collect': 'sources',
           'content_range_start': 'http_client',
           'cut_at_deadline': 'http_client',
           'demo_settings_problem': 'demo_corpus',
           'demo_track_id': 'demo_corpus',
           'electronic_track': 'demo_corpus',
           'envelope': 'demo_corpus',
           'find_audio_files': 'music_folder',
           'folder_track_id': 'music_folder',
           'folk_track': 'demo_corpus',
           'genre_page_url': 'scraping',
           'import_fma_archive': 'fma_archive',
           'import_music_folder': 'music_folder',
           'in_subset': 'fma_archive',
           'is_text_content_type': 'http_rules',
           'list_fma_genres': 'scraping',
           'midi_to_hz': 'demo_corpus',
           'parse_genre_page': 'scraping',
           'parse_genres_page': 'scraping',
           'parse_input_metadata': 'music_folder',
           'partial_path': 'http_client',
           'pluck': 'demo_corpus',
           'read_genres_csv': 'fma_archive',
           'read_tags_batch': 'music_folder',
           'read_tags_many': 'music_folder',
           'read_tracks_csv': 'fma_archive',
           'record_placed': 'music_folder',
           'remove_quietly': 'http_client',
           'retry_after_seconds': 'http_client',
           'retry_after_too_long': 'http_client',
           'scrape_fma': 'scraping',
           'sha256_of': 'http_client',
           'source_file_problem': 'music_folder',
           'summary_lines': 'sources',
           'synthesize_track': 'demo_corpus',
           'track_genre': 'fma_archive',
           'track_id_from_link': 'scraping',
           'triad': 'demo_corpus',
           'url_problem': 'http_rules',
           'write_demo_corpus': 'demo_corpus'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
