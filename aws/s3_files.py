"""Folder <-> S3 synchronisation with boto3, like ``aws s3 sync`` but deciding by content, not by time.

A file is "the same" on both sides when its size and sha256 match. The sha256 of an uploaded file is kept in
the object's metadata (``x-amz-meta-sha256``); for an object without it (put there by another tool) the ETag
is used: the MD5 of a single-part object, or the MD5 of the part MD5s of a multipart one (compared at our
part size). Uploads above ``multipart_bytes`` go in parts (boto3 aborts the upload on failure, so no partial
object ever appears); downloads land under a hidden temp name (local/core/fileio.py) and are renamed when complete.
Credentials come only from boto3's standard chain (environment, ~/.aws, instance role).
"""
import contextlib
import hashlib
import os

from local.core import fileio
from local.core.config import fail
from local.store.manifest import sha256_file

META_KEY = "sha256"


def parse_s3_uri(uri):
    """(bucket, prefix) of ``s3://bucket/prefix`` (prefix without leading/trailing "/"); None if not an S3 URI."""
    for scheme in ("s3://", "s3a://", "s3n://"):
        if uri.startswith(scheme):
            bucket, _, prefix = uri[len(scheme):].partition("/")
            return bucket, prefix.strip("/")
    return None


def s3_client(endpoint_url=""):
    """A boto3 S3 client from the standard credential chain; ``endpoint_url`` for S3-compatible servers."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint_url or None,
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def list_folder(folder, skipped=None):
    """{relative path with "/": {"size", "path"}} of every regular file below ``folder``; hidden temp files left out.

    Only regular files whose real path lies inside ``folder`` are taken (stage 1's folder-import rule,
    :func:`local.collect.music_folder.source_file_problem`): a link to ``/etc/shadow``, a FIFO or ``/dev/zero`` is never
    read; each is appended to ``skipped`` (a list, when given) as (relative path, why). ``path`` is the path in
    the folder (a link stays a link: opening it reads the checked file, removing it removes only the link).
    Linked folders are not followed.
    """
    from local.collect.music_folder import source_file_problem
    entries = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names) + sorted(d for d in dirs if os.path.islink(os.path.join(root, d))):
            if name.startswith(".") and ".tmp-" in name:
                continue  # a download in progress or a killed one
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            problem = source_file_problem(path, folder)[0].replace("not imported", "not synced")
            if problem.startswith("not a regular file") and os.path.isdir(path):  # a link to a folder inside
                problem = "a linked folder: not followed"
            if problem:
                if skipped is not None:
                    skipped.append((relative, problem))
                continue
            entries[relative] = {"size": os.path.getsize(path), "path": path}
    return entries


def list_bucket(client, bucket, prefix):
    """{relative key: {"size", "etag", "key"}} of every object under ``prefix`` ("/" = folder separator)."""
    entries = {}
    start = f"{prefix}/" if prefix else ""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(start):]
            if relative and not relative.endswith("/"):
                if not is_safe_relative(relative):
                    print(f"warning: s3://{bucket}/{obj['Key']}: skipped, its key would land outside the folder")
                    continue
                entries[relative] = {"size": obj["Size"], "etag": obj["ETag"].strip('"'), "key": obj["Key"]}
    return entries


def is_safe_relative(relative):
    """True if a key relative to the synced prefix maps to a path inside the folder (no '', '.', '..' parts)."""
    parts = relative.split("/")
    return all(part not in ("", ".", "..") and "\\" not in part for part in parts)


def etag_of_file(path, part_bytes=0):
    """The ETag S3 gives ``path``: its MD5 (``part_bytes`` = 0), or uploaded in parts of ``part_bytes``, the MD5
    of the parts' MD5s followed by "-<number of parts>"."""
    md5s = []
    with open(path, "rb") as f:
        if not part_bytes:
            whole = hashlib.md5()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                whole.update(chunk)
            return whole.hexdigest()
        for chunk in iter(lambda: f.read(part_bytes), b""):
            md5s.append(hashlib.md5(chunk).digest())
    if len(md5s) <= 1:
        return etag_of_file(path)
    return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"


def object_matches_file(client, bucket, entry, path, part_bytes):
    """True when the object ``entry`` holds exactly the bytes of the local file ``path``."""
    if entry["size"] != os.path.getsize(path):
        return False
    head = client.head_object(Bucket=bucket, Key=entry["key"])
    remote_sha = head.get("Metadata", {}).get(META_KEY)
    if remote_sha:
        return remote_sha == sha256_file(path)
    return entry["etag"] == etag_of_file(path, part_bytes if "-" in entry["etag"] else 0)


def transfer_config(multipart_bytes, workers):
    from boto3.s3.transfer import TransferConfig
    return TransferConfig(multipart_threshold=multipart_bytes, multipart_chunksize=multipart_bytes,
                          max_concurrency=workers, use_threads=workers > 1)


def upload(client, path, bucket, key, config):
    """Upload ``path`` to ``bucket/key`` with its sha256 in the metadata; whole or not at all."""
    client.upload_file(path, bucket, key, ExtraArgs={"Metadata": {META_KEY: sha256_file(path)}}, Config=config)


def download(client, bucket, key, path, config):
    """Download ``bucket/key`` to ``path`` through a hidden temp file in the same folder (local.core.fileio)."""
    with fileio.atomic_path(path) as tmp:
        client.download_file(bucket, key, tmp, Config=config)


@contextlib.contextmanager
def aws_errors_in_one_line(what):
    """Inside the block, boto3's missing-credentials and refusal errors stop the script with one line
    (``what``: the request refused, for the message), never a traceback."""
    import botocore.exceptions
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        fail("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or a role")
    except (botocore.exceptions.ClientError, botocore.exceptions.EndpointConnectionError) as e:
        fail(f"{what}: {e}")


def sync(src, dst, endpoint_url="", delete=False, *, multipart_bytes=64 << 20, workers=8, progress=True):
    """Make ``dst`` hold what ``src`` holds; one side is a folder, the other ``s3://bucket/prefix``.

    Only new or changed files are sent; with ``delete``, files in ``dst`` that ``src`` lacks are removed. A
    local ``src`` gives only its regular files inside it (:func:`list_folder`).
    Returns {"copied", "copied_bytes", "unchanged", "deleted"} (lists of relative paths, and a byte count) and
    "skipped" [(relative path, why)] (the links, FIFOs and devices of a local ``src`` that were not read).
    Raises ValueError for a bad pair of locations.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    src_s3, dst_s3 = parse_s3_uri(src), parse_s3_uri(dst)
    if bool(src_s3) == bool(dst_s3):
        raise ValueError(f"src={src!r} dst={dst!r}: exactly one of them must be s3://bucket/prefix")
    if not src_s3 and not os.path.isdir(src):
        raise ValueError(f"src={src!r} is not a folder")
    client = s3_client(endpoint_url)
    config = transfer_config(multipart_bytes, workers)
    skipped = []
    if dst_s3:
        bucket, prefix = dst_s3
        source, target = list_folder(src, skipped), list_bucket(client, bucket, prefix)
    else:
        bucket, prefix = src_s3
        source, target = list_bucket(client, bucket, prefix), list_folder(dst) if os.path.isdir(dst) else {}

    def same(relative):
        if relative not in target:
            return False
        if dst_s3:
            return object_matches_file(client, bucket, target[relative], source[relative]["path"], multipart_bytes)
        return object_matches_file(client, bucket, source[relative], target[relative]["path"], multipart_bytes)

    def key_of(relative):
        return f"{prefix}/{relative}" if prefix else relative

    def copy(relative):
        if dst_s3:
            upload(client, source[relative]["path"], bucket, key_of(relative), config)
        else:
            download(client, bucket, source[relative]["key"], os.path.join(dst, *relative.split("/")), config)
        return relative

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        unchanged = [r for r, ok in zip(source, pool.map(same, list(source))) if ok]
        todo = [r for r in source if r not in set(unchanged)]
        bar = tqdm(total=sum(source[r]["size"] for r in todo), unit="B", unit_scale=True, desc="sync",
                   disable=not progress)
        copied = []
        for relative in pool.map(copy, todo):
            copied.append(relative)
            bar.update(source[relative]["size"])
        bar.close()
    deleted = sorted(set(target) - set(source)) if delete else []
    if deleted and dst_s3:
        for i in range(0, len(deleted), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key_of(r)} for r in deleted[i:i + 1000]],
                                                         "Quiet": True})
    elif deleted:
        for relative in deleted:
            os.remove(target[relative]["path"])
    return {"copied": copied, "copied_bytes": sum(source[r]["size"] for r in copied), "unchanged": unchanged,
            "deleted": deleted, "skipped": skipped}
