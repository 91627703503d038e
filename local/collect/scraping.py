"""The Free Music Archive website, by genre: polite, resumable downloads that hostile pages cannot misuse.

Genre listing pages are ``{base_url}/genre/{Genre}/?pageSize={n}&page={k}``. Two page layouts are read:

- today's site: every track is an element with a ``data-track-info`` attribute holding JSON with at least
  ``id``, ``title``, ``artistName``, ``albumTitle``, ``url`` and ``fileUrl`` (the mp3);
- the 2020 site: a ``.playlist-lrg`` list whose ``.icn-arrow`` links are the mp3 downloads (the track id
  comes from the link; title and artist from the enclosing ``.play-item`` when it has them).

Pages are followed until one holds no new track, has no "next" link, or ``max_tracks_per_genre`` tracks
are there. Each file goes to ``<out_dir>/<Genre>/<id>.<ext>`` through a temp name in the same folder and
is renamed only when complete and verified (content type and magic bytes), then its manifest row is
appended, so a killed run loses at most the downloads in flight and a rerun fetches only what is missing.

Politeness and safety are local/collect/http_client.py's :class:`~local.collect.http_client.WebClient` (User-Agent,
robots.txt, pacing, retries, host checks at every redirect, size caps, resumable verified downloads); this
module knows the site's pages. Scraped ids and titles never become raw path components (:func:`local.store.manifest.track_path`).
"""
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import quote, unquote, urljoin, urlsplit

from local.collect.http_client import FetchError, WebClient
from local.core import fileio
from local.store import manifest

FMA_FILE_HOST = "files.freemusicarchive.org"  # where today's fileUrls point


# --------------------------------------------------------------------------- pure helpers

def genre_page_url(base_url, genre, page_size, page):
    """The listing URL of page ``page`` (1-based) of ``genre``; spaces in the genre become ``_`` like FMA's."""
    slug = quote(str(genre).strip().replace(" ", "_"), safe="-_.")
    return f"{base_url.rstrip('/')}/genre/{slug}/?pageSize={int(page_size)}&page={int(page)}"


def track_id_from_link(link):
    """The track id in a 2020-layout download link: ``/track/<id>/download`` or the last path part, no extension."""
    path = [unquote(p) for p in urlsplit(link).path.split("/") if p]
    if len(path) >= 2 and path[-1] == "download":
        return path[-2]
    return os.path.splitext(path[-1])[0] if path else ""


def parse_genre_page(html, page_url):
    """Tracks and pagination of one genre listing page, in either layout.

    Returns ``(tracks, has_next, problems)``: ``tracks`` is a list of dicts with ``id``, ``title``, ``artist``,
    ``album``, ``page_url``, ``file_url`` (absolute, resolved against ``page_url``); ``has_next`` says whether
    the page links to a next page; ``problems`` lists (where, why) for track entries that cannot be read.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    tracks, problems, seen = [], [], set()

    def add(track):
        if track["id"] and track["id"] not in seen:
            seen.add(track["id"])
            tracks.append(track)

    for element in soup.select("[data-track-info]"):
        raw = element.get("data-track-info", "")
        try:
            info = json.loads(raw)
            if not isinstance(info, dict):
                raise ValueError("not an object")
        except ValueError:
            problems.append((page_url, f"unreadable data-track-info {raw[:80]!r}"))
            continue
        track_id = str(info.get("id") or "").strip()
        file_url = str(info.get("fileUrl") or "").strip()
        if not track_id or not file_url:
            problems.append((page_url, f"data-track-info without id or fileUrl: {raw[:80]!r}"))
            continue
        add({"id": track_id, "title": str(info.get("title") or ""), "artist": str(info.get("artistName") or ""),
             "album": str(info.get("albumTitle") or ""), "page_url": urljoin(page_url, str(info.get("url") or "")),
             "file_url": urljoin(page_url, file_url)})

    for link in soup.select(".playlist-lrg .icn-arrow[href]"):
        file_url = urljoin(page_url, link["href"].strip())
        item = link.find_parent(class_="play-item")

        def text_of(selector):
            found = item.select_one(selector) if item is not None else None
            return found.get_text(" ", strip=True) if found is not None else ""

        track_link = item.select_one(".ptxt-track a[href]") if item is not None else None
        add({"id": track_id_from_link(file_url), "title": text_of(".ptxt-track"), "artist": text_of(".ptxt-artist"),
             "album": text_of(".ptxt-album"),
             "page_url": urljoin(page_url, track_link["href"]) if track_link is not None else "",
             "file_url": file_url})

    has_next = False
    for a in soup.find_all("a", href=True):
        rel = [r.lower() for r in (a.get("rel") or [])]
        classes = [c.lower() for c in (a.get("class") or [])]
        text = a.get_text(" ", strip=True).lower()
        if "next" in rel or any("next" in c for c in classes) or text.startswith("next") or text in ("»", "›"):
            has_next = True
            break
    return tracks, has_next, problems


def parse_genres_page(html):
    """Genre names linked from FMA's ``/genres/`` page (``/genre/<Name>/`` links), in page order, deduplicated."""
    names = []
    for href in re.findall(r'href=["\'][^"\']*?/genre/([^/?#"\']+)/?["\'?#]', html):
        name = unquote(href)
        if name not in names:
            names.append(name)
    return names


# --------------------------------------------------------------------------- the scraper

def list_fma_genres(client, base_url):
    """Every genre the site links from its ``/genres/`` page."""
    html, _ = client.get_page(f"{base_url.rstrip('/')}/genres/")
    return parse_genres_page(html)


def scrape_fma(out_dir, genres, max_tracks_per_genre=0, fma_base_url="https://freemusicarchive.org", *,
               page_size=100, user_agent="Mozilla/5.0", allowed_hosts=(), request_delay_s=1.0, max_retries=5,
               timeout_s=30.0, concurrency=2, max_file_mb=50.0, backoff_s=1.0, progress=True, log=None,
               file_timeout_s=0.0):
    """Download FMA tracks by genre into the stage-1 layout, appending manifest rows as tracks complete.

    The keywords are stage 1's config keys of the same names (``_s``: seconds; ``max_file_mb``: MB = 10**6
    bytes). ``genres``: names as in the site's URLs (``Rock``, ``Hip-Hop``...); empty = every genre on
    ``/genres/``. ``max_tracks_per_genre``: 0 = all. ``allowed_hosts``: hosts beyond the base site's and FMA's
    file host. ``file_timeout_s``: every try of one file together ends within this (0 = no limit); an interrupted
    download resumes with HTTP Range (see :meth:`WebClient.download`). Tracks already in the manifest with
    matching size and sha256 are skipped without a request.
    Returns a summary dict: ``downloaded``, ``skipped``, ``failed`` [(url, reason)].
    """
    from tqdm import tqdm

    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    base_url = fma_base_url.rstrip("/")
    base_host = (urlsplit(base_url).hostname or "").lower()
    if urlsplit(base_url).scheme not in ("http", "https") or not base_host:
        raise ValueError(f"fma_base_url={base_url!r} must be an http(s) URL like https://freemusicarchive.org")
    hosts = {base_host, FMA_FILE_HOST} | {h.strip().lower() for h in allowed_hosts if h.strip()}
    client = WebClient(user_agent, hosts, request_delay_seconds=request_delay_s, max_retries=max_retries,
                       timeout_seconds=timeout_s, backoff_seconds=backoff_s, log=log,
                       file_timeout_seconds=file_timeout_s)
    max_bytes = int(max_file_mb * 1e6)
    summary = {"downloaded": 0, "skipped": 0, "failed": []}
    have = manifest.read_manifest(out_dir)

    if not genres:
        try:
            genres = list_fma_genres(client, base_url)
        except FetchError as e:
            raise ValueError(f"cannot list the genres of {base_url}/genres/ ({e}): pass --genres=Rock,Jazz") from None
        if not genres:
            raise ValueError(f"{base_url}/genres/ links no genre: pass --genres=Rock,Jazz")
        log(f"fma: {len(genres)} genres found on {base_url}/genres/")

    bar = tqdm(desc="fma", unit="track", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, int(concurrency))) as pool:
        for genre in genres:
            folder = os.path.join(out_dir, manifest.safe_component(genre))
            if os.path.isdir(folder):
                fileio.remove_stale_temps(folder)  # downloads a killed run left half-done
            good, seen, page = 0, set(), 1
            while not max_tracks_per_genre or good < max_tracks_per_genre:
                url = genre_page_url(base_url, genre, page_size, page)
                try:
                    html, final_url = client.get_page(url)
                except FetchError as e:
                    summary["failed"].append((url, str(e)))
                    log(f"fma: {genre} page {page}: {e}")
                    break
                tracks, has_next, problems = parse_genre_page(html, final_url)
                summary["failed"].extend(problems)
                fresh = [t for t in tracks if manifest.safe_component(t["id"]) not in seen]
                seen.update(manifest.safe_component(t["id"]) for t in fresh)
                todo = []
                for track in fresh:
                    track_id = manifest.safe_component(track["id"])
                    if manifest.have_track(out_dir, have, track_id):
                        summary["skipped"] += 1
                        good += 1
                        bar.update()
                    else:
                        todo.append(track)
                    if max_tracks_per_genre and good >= max_tracks_per_genre:
                        break
                while todo and (not max_tracks_per_genre or good < max_tracks_per_genre):
                    room = max_tracks_per_genre - good if max_tracks_per_genre else len(todo)
                    batch, todo = todo[:room], todo[room:]
                    futures = {pool.submit(client.download, t["file_url"], folder,
                                           manifest.safe_component(t["id"]), max_bytes,
                                           (have.get(manifest.safe_component(t["id"])) or {}).get("sha256", "")):
                               t for t in batch}
                    for future in as_completed(futures):
                        track = futures[future]
                        try:
                            full = future.result()
                        except (FetchError, OSError, ValueError) as e:
                            summary["failed"].append((track["file_url"], str(e)))
                            log(f"fma: {genre}/{track['id']}: {e}")
                            continue
                        track_id = os.path.splitext(os.path.basename(full))[0]
                        relative = f"{os.path.basename(folder)}/{os.path.basename(full)}"
                        have[track_id] = manifest.record_track(
                            out_dir, track_id, genre, full, relative, title=track["title"], artist=track["artist"],
                            source=track["file_url"])
                        summary["downloaded"] += 1
                        good += 1
                        bar.update()
                if not fresh or not has_next:
                    break
                page += 1
    bar.close()
    return summary
