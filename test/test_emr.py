"""aws/emr.py and aws/emr_cluster.py against moto's EMR and S3 server on 127.0.0.1."""
import io
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile

import pytest
from helpers import PYTHON, run_script

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "waveforms-emr"


@pytest.fixture(scope="module")
def moto_server():
    from moto.server import ThreadedMotoServer
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3
    clients = {name: boto3.client(name, endpoint_url=endpoint, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
               for name in ("s3", "emr")}
    clients["s3"].create_bucket(Bucket=BUCKET)
    yield endpoint, clients
    server.stop()


def emr(endpoint, *args):
    return run_script("aws/emr.py", f"--endpoint_url={endpoint}", *args, env=CREDENTIALS, timeout=120)


def test_dry_run_prints_the_requests_and_sends_nothing():
    result = run_script("aws/emr.py", "--s3_root=s3://b/wf", "--dry_run", "--core_instance_count=3",
                        "--preprocessing_args=--min_seconds=2", "--endpoint_url=http://127.0.0.1:9", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "s3.put_object" in result.stdout and '"Key": "wf/code/waveforms.zip"' in result.stdout
    request = json.loads(result.stdout.split("emr.run_job_flow ", 1)[1])
    assert request["ReleaseLabel"] == "emr-spark-8.0.0"
    assert request["Instances"]["InstanceGroups"][1]["InstanceCount"] == 3
    assert request["BootstrapActions"][0]["ScriptBootstrapAction"]["Path"] == "s3://b/wf/code/bootstrap.sh"
    first, second = request["Steps"]
    args = first["HadoopJarStep"]["Args"]
    assert args[0] == "spark-submit" and args[args.index("--py-files") + 1] == "s3://b/wf/code/waveforms.zip"
    assert "s3://b/wf/code/spark_preprocessing.py" in args and "--raw_dir=s3://b/wf/raw" in args
    assert "--min_seconds=2" in args and "--out_dir=s3://b/wf/processed" in args
    assert "s3://b/wf/code/spark_training.py" in second["HadoopJarStep"]["Args"]


def test_user_mistakes_are_one_line():
    for args, word in ((["--s3_root=bucket/x"], "s3_root"), (["--action=status"], "cluster_id"),
                       (["--s3_root=s3://b/x", "--steps=train"], "steps"), (["--action=explode"], "action")):
        result = run_script("aws/emr.py", *args, timeout=60)
        assert result.returncode == 2 and word in result.stderr and "Traceback" not in result.stderr


def test_run_uploads_code_creates_the_cluster_and_terminates(moto_server, tmp_path):
    endpoint, clients = moto_server
    result = emr(endpoint, f"--s3_root=s3://{BUCKET}/wf", "--wait=false", "--core_instance_count=2",
                 "--core_instance_type=m5.xlarge")
    assert result.returncode == 0, result.stderr
    cluster_id = result.stdout.split("cluster ", 1)[1].split()[0]
    cluster = clients["emr"].describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-spark-8.0.0" and cluster["LogUri"] == f"s3://{BUCKET}/wf/logs/"
    steps = clients["emr"].list_steps(ClusterId=cluster_id)["Steps"]
    assert sorted(s["Name"] for s in steps) == ["waveforms preprocessing", "waveforms training"]
    actions = clients["emr"].list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    assert actions[0]["ScriptPath"] == f"s3://{BUCKET}/wf/code/bootstrap.sh"
    keys = {o["Key"] for o in clients["s3"].list_objects_v2(Bucket=BUCKET, Prefix="wf/code/")["Contents"]}
    assert {"wf/code/waveforms.zip", "wf/code/bootstrap.sh", "wf/code/requirements.txt",
            "wf/code/spark_preprocessing.py"} <= keys

    # the shipped zip is what --py-files puts on the executors' path: the packages import from it alone
    body = clients["s3"].get_object(Bucket=BUCKET, Key="wf/code/waveforms.zip")["Body"].read()
    (tmp_path / "code.zip").write_bytes(body)
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert "local/dataset/settings.py" in names and "aws/spark_dataset.py" in names
    probe = subprocess.run([PYTHON, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import local.dataset.settings, local.audio.ffmpeg, aws.spark_io; print(local.dataset.settings.__file__)",
                            str(tmp_path / "code.zip")], capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert "code.zip" in probe.stdout

    added = emr(endpoint, "--action=add_steps", f"--cluster_id={cluster_id}", f"--s3_root=s3://{BUCKET}/wf",
                "--steps=training", "--wait=false")
    assert added.returncode == 0, added.stderr
    assert len(clients["emr"].list_steps(ClusterId=cluster_id)["Steps"]) == 3
    status = emr(endpoint, "--action=status", f"--cluster_id={cluster_id}")
    assert status.returncode == 0 and "waveforms training" in status.stdout
    assert emr(endpoint, "--action=terminate", f"--cluster_id={cluster_id}").returncode == 0
    state = clients["emr"].describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state in ("TERMINATING", "TERMINATED")


def test_wait_for_steps_follows_states_until_done_or_failed(moto_server):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    from aws import emr_cluster
    _, clients = moto_server
    request = emr_cluster.job_flow_request(
        name="poll", s3_root=f"s3://{BUCKET}/wf", release_label="emr-spark-8.0.0", log_uri=f"s3://{BUCKET}/logs/",
        master_instance_type="m5.xlarge", core_instance_type="m5.xlarge", core_instance_count=1,
        steps=[emr_cluster.spark_step(f"s{i}", "preprocessing", f"s3://{BUCKET}/wf", []) for i in range(2)])
    cluster_id = clients["emr"].run_job_flow(**request)["JobFlowId"]
    steps = emr_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].clusters[cluster_id].steps
    ids = [s.id for s in sorted(steps, key=lambda s: s.name)]
    script = iter([("RUNNING", "PENDING"), ("COMPLETED", "RUNNING"), ("COMPLETED", "COMPLETED")])

    def advance(_seconds):
        states = next(script)
        for step in steps:
            step.state = states[ids.index(step.id)]

    lines = []
    final = emr_cluster.wait_for_steps(clients["emr"], cluster_id, ids, poll_seconds=0, report=lines.append,
                                       sleep=advance)
    assert [s for _, s in final.values()] == ["COMPLETED", "COMPLETED"]
    assert any("s0" in line and "COMPLETED" in line for line in lines) and len(lines) >= 4

    for step in steps:
        step.state = "FAILED" if step.id == ids[0] else "PENDING"
    failed = emr_cluster.wait_for_steps(clients["emr"], cluster_id, ids, poll_seconds=0, report=lines.append,
                                        sleep=lambda s: pytest.fail("must not wait after a failure"))
    assert failed[ids[0]][1] == "FAILED"


def fake_tools(folder, names):
    """Executables that log their arguments (one line per call) to folder/calls.log and succeed."""
    folder.mkdir(exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{folder}/calls.log"\n')
        path.chmod(0o755)
    return folder


def test_hdfs_sync_runs_the_staging_steps_in_order(tmp_path):
    bin_dir = fake_tools(tmp_path / "bin", ["aws", "hadoop", "spark-submit"])
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", STAGING=str(tmp_path / "stage"),
               HDFS_ROOT="/wf", PYSPARK_PYTHON=PYTHON)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "aws", "hdfs_sync.sh")
    result = subprocess.run(["bash", script, "s3://b/raw", "s3://b/processed", "--partitions=64"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = (bin_dir / "calls.log").read_text().splitlines()
    assert [c.split()[0] + " " + c.split()[1] for c in calls] == [
        "aws s3", "hadoop fs", "hadoop fs", "spark-submit --master", "hadoop fs", "aws s3"]
    assert f"s3://b/raw {tmp_path}/stage/raw" in calls[0]
    submit = calls[3]
    assert "--raw_dir=hdfs:///wf/raw" in submit and "--out_dir=hdfs:///wf/processed" in submit
    assert "--partitions=64" in submit and f"--py-files {tmp_path}/stage/waveforms.zip" in submit
    assert zipfile.ZipFile(tmp_path / "stage" / "waveforms.zip").getinfo("local/__init__.py")
    assert calls[5].endswith(f"{tmp_path}/stage/processed s3://b/processed")
    missing = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "usage" in missing.stderr


def test_bootstrap_installs_requirements_but_never_pyspark(tmp_path):
    """bootstrap.sh with stand-ins for python3.11/pip/aws: what it asks pip to install, in which order."""
    bin_dir = fake_tools(tmp_path / "bin", ["sudo", "ffmpeg"])
    log = bin_dir / "calls.log"
    (bin_dir / "aws").write_text(f'#!/bin/bash\necho "aws $*" >> "{log}"\ncp "{tmp_path}/requirements.txt" "$5"\n')
    # python3.11 -m venv DIR makes DIR/bin/pip (logs, copies -r files, `show pyspark` says $PYSPARK_SHOWN) and python
    (bin_dir / "python3.11").write_text(f'''#!/bin/bash
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  cat > "$3/bin/pip" <<'PIP'
#!/bin/bash
echo "pip $*" >> "{log}"
if [ "$1" = "show" ]; then exit "${{PYSPARK_SHOWN:-1}}"; fi
for a in "$@"; do if [ "$prev" = "-r" ]; then cp "$a" "{tmp_path}/pip-r.txt"; fi; prev="$a"; done
PIP
  printf '#!/bin/bash\\necho "python $*" >> "{log}"\\n' > "$3/bin/python"
  chmod +x "$3/bin/pip" "$3/bin/python"
fi
''')
    for name in ("aws", "python3.11"):
        (bin_dir / name).chmod(0o755)
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\npyspark==4.0.0\nelephas==7.3.0\nlibrosa==0.11.0\n"
                                               "pyspark-stubs==1.0\n")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "aws", "bootstrap.sh")
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    venv = str(tmp_path / "venv")
    result = subprocess.run(["bash", script, "s3://b/wf/code/requirements.txt", venv], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    installed = (tmp_path / "pip-r.txt").read_text().split()
    assert installed == ["numpy==1.26.4", "librosa==0.11.0", "pyspark-stubs==1.0"]  # no pyspark, no elephas
    calls = log.read_text().splitlines()
    assert "aws s3 cp --only-show-errors s3://b/wf/code/requirements.txt" in calls[0]
    no_deps = [c for c in calls if "--no-deps" in c]
    assert len(no_deps) == 1 and no_deps[0].endswith("elephas==7.3.0")
    assert any(c.startswith("pip show pyspark") for c in calls) and any(c.startswith("python -c") for c in calls)

    refused = subprocess.run(["bash", script, "s3://b/wf/code/requirements.txt", venv],
                             env=dict(env, PYSPARK_SHOWN="0"), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "refusing" in refused.stderr


def test_a_job_argument_split_at_a_comma_is_a_one_line_error_before_any_request():
    result = run_script("aws/emr.py", "--s3_root=s3://bucket/w", "--dry_run",
                        "--training_args=--epochs=2,--dilations=1,2,4")
    assert result.returncode == 2 and "'2'" in result.stderr and "layers_per_stack" in result.stderr
    assert result.stderr.count("\n") == 1 and not result.stdout
