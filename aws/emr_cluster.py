"""The EMR requests of aws/emr.py, built as plain dicts (so --dry_run can print exactly what would be sent).

Layout under ``s3_root`` (``s3://bucket/prefix``):
  code/waveforms.zip          the local/ and aws/ packages, given to spark-submit as --py-files
  code/<job>.py               the job scripts spark-submit runs (aws/spark_preprocessing.py, ...)
  code/bootstrap.sh           the bootstrap action (ffmpeg, a Python venv with requirements.txt)
  code/requirements.txt       what bootstrap.sh installs (without pyspark: the cluster's own Spark provides it)
  logs/                       the cluster's log URI (default)
"""
import io
import os
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("local", "aws")
JOB_SCRIPTS = {"preprocessing": "aws/spark_preprocessing.py", "training": "aws/spark_training.py"}
VENV = "/home/hadoop/waveforms-venv"  # where bootstrap.sh installs the project's Python on every node
TERMINAL_STEP_STATES = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")


def s3_join(root, *names):
    return "/".join([root.rstrip("/"), *names])


def split_s3(uri):
    """(bucket, key) of ``s3://bucket/key``."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def code_zip(root=ROOT):
    """The bytes of a zip holding the ``local`` and ``aws`` packages (.py files only), importable from --py-files.

    ``local`` has no ``__init__.py`` on disk (a namespace package); the zip gets an empty one, because
    zipimport finds packages by their ``__init__.py``.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            names = sorted(n for n in os.listdir(os.path.join(root, package)) if n.endswith(".py"))
            for name in names:
                info = zipfile.ZipInfo(f"{package}/{name}", date_time=(2020, 1, 1, 0, 0, 0))  # same bytes each time
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(os.path.join(root, package, name), "rb") as f:
                    archive.writestr(info, f.read())
            if "__init__.py" not in names:
                archive.writestr(zipfile.ZipInfo(f"{package}/__init__.py", date_time=(2020, 1, 1, 0, 0, 0)), b"")
    return buffer.getvalue()


def uploads(s3_root, jobs=tuple(JOB_SCRIPTS), root=ROOT):
    """[(s3 uri, bytes)] of everything a cluster running ``jobs`` needs from this checkout.

    Raises FileNotFoundError naming a file the checkout lacks.
    """
    files = [(s3_join(s3_root, "code", "waveforms.zip"), code_zip(root))]
    for relative in ("aws/bootstrap.sh", "requirements.txt", *[JOB_SCRIPTS[j] for j in jobs]):
        with open(os.path.join(root, relative), "rb") as f:
            files.append((s3_join(s3_root, "code", os.path.basename(relative)), f.read()))
    return files


def spark_step(name, job, s3_root, job_args, action_on_failure="TERMINATE_CLUSTER"):
    """An EMR step running ``spark-submit`` (cluster mode, YARN) on one of :data:`JOB_SCRIPTS`."""
    script = s3_join(s3_root, "code", os.path.basename(JOB_SCRIPTS[job]))
    args = ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn",
            "--conf", f"spark.pyspark.python={VENV}/bin/python",
            "--conf", f"spark.pyspark.driver.python={VENV}/bin/python",
            "--conf", f"spark.executorEnv.PYSPARK_PYTHON={VENV}/bin/python",
            "--conf", f"spark.yarn.appMasterEnv.PYSPARK_PYTHON={VENV}/bin/python",
            "--py-files", s3_join(s3_root, "code", "waveforms.zip"), script, *job_args]
    return {"Name": name, "ActionOnFailure": action_on_failure,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}


def job_flow_request(name, s3_root, release_label, log_uri, master_instance_type, core_instance_type,
                     core_instance_count, use_spot, keep_alive, service_role, job_flow_role, ec2_key_name="",
                     subnet_id="", steps=(), idle_timeout_s=3600):
    """The ``run_job_flow`` request: Spark, the bootstrap action, one master and ``core_instance_count`` cores."""
    market = "SPOT" if use_spot else "ON_DEMAND"
    instances = {
        "InstanceGroups": [
            {"Name": "master", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
             "InstanceType": master_instance_type, "InstanceCount": 1},
            {"Name": "core", "InstanceRole": "CORE", "Market": market,
             "InstanceType": core_instance_type, "InstanceCount": int(core_instance_count)},
        ],
        "KeepJobFlowAliveWhenNoSteps": bool(keep_alive),
        "TerminationProtected": False,
    }
    if ec2_key_name:
        instances["Ec2KeyName"] = ec2_key_name
    if subnet_id:
        instances["Ec2SubnetId"] = subnet_id
    request = {
        "Name": name,
        "ReleaseLabel": release_label,
        "LogUri": log_uri,
        "Applications": [{"Name": "Spark"}, {"Name": "Hadoop"}],
        "Instances": instances,
        "BootstrapActions": [{
            "Name": "waveforms: ffmpeg and the Python requirements",
            "ScriptBootstrapAction": {"Path": s3_join(s3_root, "code", "bootstrap.sh"),
                                      "Args": [s3_join(s3_root, "code", "requirements.txt"), VENV]}}],
        "Configurations": [
            {"Classification": "spark-env", "Configurations": [
                {"Classification": "export", "Properties": {"PYSPARK_PYTHON": f"{VENV}/bin/python",
                                                            "PYSPARK_DRIVER_PYTHON": f"{VENV}/bin/python"}}]},
            {"Classification": "spark-defaults", "Properties": {
                "spark.pyspark.python": f"{VENV}/bin/python",
                "spark.sql.files.maxPartitionBytes": "268435456"}},
        ],
        "Steps": list(steps),
        "ServiceRole": service_role,
        "JobFlowRole": job_flow_role,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": "project", "Value": "waveforms"}],
    }
    if keep_alive and idle_timeout_s:
        request["AutoTerminationPolicy"] = {"IdleTimeout": int(idle_timeout_s)}
    return request


def step_states(client, cluster_id, step_ids):
    """{step_id: (name, state)} of the given steps."""
    states = {}
    for step_id in step_ids:
        step = client.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
        states[step_id] = (step["Name"], step["Status"]["State"])
    return states


def wait_for_steps(client, cluster_id, step_ids, poll_seconds=30.0, timeout_s=None, report=print, sleep=None):
    """Poll until every step is finished (or one failed, or ``timeout_s`` passed); return {step_id: (name, state)}.

    ``report`` gets one line whenever a state changes.
    """
    import time
    sleep = sleep or time.sleep
    started, last = time.time(), {}
    while True:
        states = step_states(client, cluster_id, step_ids)
        for step_id, (name, state) in states.items():
            if last.get(step_id) != state:
                report(f"step {name} ({step_id}): {state}")
        last = {k: v[1] for k, v in states.items()}
        finished = all(state in TERMINAL_STEP_STATES for _, state in states.values())
        failed = any(state in ("FAILED", "CANCELLED", "INTERRUPTED") for _, state in states.values())
        if finished or failed or (timeout_s is not None and time.time() - started >= timeout_s):
            return states
        sleep(poll_seconds)
