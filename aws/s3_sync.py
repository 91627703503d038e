"""Sync a folder with S3 (either way round), like `aws s3 sync`: only new or changed files travel.

"Changed" = a different size or content hash (sha256 kept in the object's metadata, else the ETag), never a
timestamp, so a fresh clone or a second machine does not send everything again. Large files go up in parts
and no partial object ever becomes visible; downloads are renamed into place only when complete.
Credentials come from boto3's standard chain only (AWS_* environment variables, ~/.aws, the instance role).

Run:
  python aws/s3_sync.py --src=data/demo/raw --dst=s3://my-bucket/waveforms/raw
  python aws/s3_sync.py --src=s3://my-bucket/waveforms/runs/emr --dst=data/runs/emr
  python aws/s3_sync.py --src=data/raw --dst=s3://my-bucket/raw --delete      # also remove what src lacks
  python aws/s3_sync.py --src=data/raw --dst=s3://bucket/raw --endpoint_url=http://127.0.0.1:8333  # MinIO etc.
"""
import time

from local.core.config import ConfigError, configure, fail, stage_main

src = ""  # a folder or s3://bucket/prefix
dst = ""  # a folder or s3://bucket/prefix (the other kind than src)
endpoint_url = ""  # S3-compatible server URL; "" = AWS
delete = False  # remove files in dst that src does not have
multipart_mb = 64  # files above this go up in parts of this size, MiB (S3's minimum part is 5)
workers = 8  # parallel transfers
progress = True  # show a progress bar (bytes)

# -----------------------------------------------------------------------------


def check_config(config):
    """Raise ConfigError naming the first key that cannot work."""
    problems = (
        ("src", not config["src"], "must be given: a folder or s3://bucket/prefix"),
        ("dst", not config["dst"], "must be given: a folder or s3://bucket/prefix (the other kind than src)"),
        ("multipart_mb", config["multipart_mb"] < 5, "must be at least 5 (S3's smallest part)"),
        ("workers", config["workers"] < 1, "must be at least 1"),
        ("endpoint_url", config["endpoint_url"] and not config["endpoint_url"].startswith(("http://", "https://")),
         "must be an http(s) URL"),
    )
    for key, bad, what in problems:
        if bad:
            raise ConfigError(f"{key}={config[key]!r} {what}")


@stage_main
def main(argv=None):
    """Check the config, sync src to dst, say what travelled."""
    config = configure(dict(globals()), argv)  # a copy: the block above keeps its defaults for the next call
    try:
        check_config(config)
    except ConfigError as e:
        fail(str(e))
    from aws import s3_files  # boto3: only once the config is good
    src, dst, started = config["src"], config["dst"], time.time()
    with s3_files.aws_errors_in_one_line(f"S3 refused the sync of {src} -> {dst}"):
        try:
            result = s3_files.sync(src, dst, config["endpoint_url"], config["delete"],
                                   multipart_bytes=config["multipart_mb"] << 20, workers=config["workers"],
                                   progress=config["progress"])
        except ValueError as e:
            fail(str(e))
    for relative, why in result["skipped"]:
        print(f"skipped: {relative}: {why}")
    print(f"s3_sync: {len(result['copied'])} copied ({result['copied_bytes'] / 1e6:.1f} MB), "
          f"{len(result['unchanged'])} unchanged, {len(result['deleted'])} deleted, "
          f"{len(result['skipped'])} skipped (links out of src, special files), {src} -> {dst} "
          f"in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
