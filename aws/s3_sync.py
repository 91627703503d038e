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
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.config import configure, fail  # noqa: E402

src = ""  # a folder or s3://bucket/prefix
dst = ""  # a folder or s3://bucket/prefix (the other kind than src)
endpoint_url = ""  # S3-compatible server URL; "" = AWS
delete = False  # remove files in dst that src does not have
multipart_mb = 64  # files above this go up in parts of this size, MiB (S3's minimum part is 5)
workers = 8  # parallel transfers
progress = True  # show a progress bar (bytes)

config = configure(globals())
# -----------------------------------------------------------------------------

if not src or not dst:
    fail("give both --src and --dst (a folder and s3://bucket/prefix)")
if multipart_mb < 5 or workers < 1:
    fail(f"multipart_mb={multipart_mb} must be at least 5 (S3's smallest part) and workers={workers} at least 1")
if endpoint_url and not endpoint_url.startswith(("http://", "https://")):
    fail(f"endpoint_url={endpoint_url!r} must be an http(s) URL")

from aws import s3_files  # noqa: E402  (imports boto3: only once the config is good)
import botocore.exceptions  # noqa: E402

started = time.time()
try:
    result = s3_files.sync(src, dst, endpoint_url, delete, multipart_mb << 20, workers, progress)
except ValueError as e:
    fail(str(e))
except botocore.exceptions.NoCredentialsError:
    fail("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or a role")
except (botocore.exceptions.ClientError, botocore.exceptions.EndpointConnectionError) as e:
    fail(f"S3 refused the sync of {src} -> {dst}: {e}")
print(f"s3_sync: {len(result['copied'])} copied ({result['copied_bytes'] / 1e6:.1f} MB), "
      f"{len(result['unchanged'])} unchanged, {len(result['deleted'])} deleted, {src} -> {dst} "
      f"in {time.time() - started:.1f} s")
