"""What a URL or a response may be, for :class:`local.collect.http_client.WebClient`: http(s) on an allowed
host only, and audio that its first bytes show to be audio."""
from urllib.parse import urlsplit


def audio_format(head):
    """The audio format whose magic bytes start ``head`` ("mp3", "flac", "ogg", "wav", "m4a", "aiff"), or None.

    ``head``: the first bytes of a file (16 are enough). An HTML or JSON error page is None.
    """
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
        if version != 1 and layer != 0:  # 01 and 00 are reserved values: not an MPEG audio frame
            return "mp3"
        return None
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    return None


def is_text_content_type(content_type):
    """True for a Content-Type that announces a page or data rather than audio (text/*, html, json, xml)."""
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct.startswith("text/") or any(word in ct for word in ("html", "json", "xml", "javascript"))


def url_problem(url, allowed_hosts):
    """Why ``url`` must not be fetched (not http(s), or a host outside ``allowed_hosts``), or "" if it may."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return f"not a valid URL: {url[:200]!r}"
    if parts.scheme not in ("http", "https"):
        return f"only http(s) URLs are followed, not {parts.scheme or 'a relative'} URL {url[:200]!r}"
    if host not in allowed_hosts:
        return f"host {host!r} is not allowed (add it with --allowed_hosts={host} if you trust it)"
    return ""
