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

from local.core.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("local", "aws")
JOB_SCRIPTS = {"preprocessing": "aws/spark_preprocessing.py", "training": "aws/spark_training.py"}
VENV = "/home/hadoop/waveforms-venv"  # where bootstrap.sh installs the project's Python on every node
TERMINAL_STEP_STATES = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
FAILED_STEP_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")
ACTIONS = ("run", "add_steps", "status", "terminate")
# aws/emr.py's keys that go to job_flow_request under their own names
CLUSTER_KEYS = ("name", "s3_root", "release_label", "log_uri", "master_instance_type", "core_instance_type",
                "core_instance_count", "use_spot", "keep_alive", "service_role", "job_flow_role", "ec2_key_name",
                "subnet_id", "idle_timeout_s")


class StepsNotDone(Exception):
    """A step failed, or the wait ended before the steps did; the message is one line for the user."""


def s3_join(root, *names):
    return "/".join([root.rstrip("/"), *names])


def split_s3(uri):
    """(bucket, key) of ``s3://bucket/key``."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def code_zip(root=ROOT):
    """The bytes of a zip holding the ``local`` and ``aws`` packages (.py files only, subpackages included),
    importable from --py-files; the same bytes for the same sources (fixed dates, sorted names)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            for folder, _, files in sorted(os.walk(os.path.join(root, package))):
                for name in sorted(n for n in files if n.endswith(".py")):
                    path = os.path.join(folder, name)
                    info = zipfile.ZipInfo(os.path.relpath(path, root).replace(os.sep, "/"),
                                           date_time=(2020, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with open(path, "rb") as f:
                        archive.writestr(info, f.read())
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


def job_flow_request(*, name, s3_root, release_label, log_uri, master_instance_type, core_instance_type,
                     core_instance_count, use_spot=False, keep_alive=False, service_role="EMR_DefaultRole",
                     job_flow_role="EMR_EC2_DefaultRole", ec2_key_name="", subnet_id="", steps=(), idle_timeout_s=3600):
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


def wait_for_steps(client, cluster_id, step_ids, *, poll_seconds=30.0, timeout_seconds=None, report=print,
                   sleep=None):
    """Poll until every step is finished (or one failed, or ``timeout_seconds`` passed); return
    {step_id: (name, state)}.

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
        failed = any(state in FAILED_STEP_STATES for _, state in states.values())
        if finished or failed or (timeout_seconds is not None and time.time() - started >= timeout_seconds):
            return states
        sleep(poll_seconds)


def check_config(config):
    """Raise ConfigError naming the first key of aws/emr.py that cannot work, and what it accepts."""
    action, steps = config["action"], config["steps"]
    sends_steps = action in ("run", "add_steps")
    problems = [
        ("action", action not in ACTIONS, f"must be one of {', '.join(ACTIONS)}"),
        ("s3_root", sends_steps and not config["s3_root"].startswith("s3://"),
         "must be s3://bucket/prefix (where the code, logs and data go)"),
        ("cluster_id", action != "run" and not config["cluster_id"], f"is needed by action={action}: pass j-..."),
        ("steps", any(s not in JOB_SCRIPTS for s in steps) or (sends_steps and not steps),
         f"must be chosen from {', '.join(JOB_SCRIPTS)}"),
        ("core_instance_count", config["core_instance_count"] < 1, "must be at least 1"),
        ("poll_seconds", config["poll_seconds"] <= 0, "must be positive"),
    ]
    for key in ("preprocessing_args", "training_args"):
        stray = [a for a in config[key] if a and not a.startswith("--")]
        problems.append((key, stray, f"holds {stray[0]!r}, not a --key=value: the list is comma-separated, so no "
                                     f"value in it may hold a comma (for dilations pass --layers_per_stack=N,"
                                     f"--stacks=M)" if stray else ""))
    for key, bad, what in problems:
        if bad:
            raise ConfigError(f"{key}={config[key]!r} {what}")


def resolve_config(config):
    """aws/emr.py's config checked (:func:`check_config`), with raw_dir, data_dir, run_dir and log_uri filled in
    below s3_root where they are empty."""
    check_config(config)
    root = config["s3_root"]
    defaults = {"raw_dir": s3_join(root, "raw"), "data_dir": s3_join(root, "processed"),
                "run_dir": s3_join(root, "runs", "emr"), "log_uri": s3_join(root, "logs") + "/"}
    return dict(config, **{key: config[key] or value for key, value in defaults.items()})


def step_requests(config):
    """The Spark steps of ``config["steps"]``, with their job arguments (locations, then the extra args)."""
    job_args = {
        "preprocessing": [f"--raw_dir={config['raw_dir']}", f"--out_dir={config['data_dir']}",
                          f"--partitions={config['partitions']}", *[a for a in config["preprocessing_args"] if a]],
        "training": [f"--data_dir={config['data_dir']}", f"--run_dir={config['run_dir']}",
                     *[a for a in config["training_args"] if a]],
    }
    on_failure = "CONTINUE" if config["keep_alive"] or config["action"] == "add_steps" else "TERMINATE_CLUSTER"
    return [spark_step(f"waveforms {job}", job, config["s3_root"], job_args[job], on_failure)
            for job in config["steps"]]


def planned_requests(config, files):
    """[(operation, request)] the action sends, in order: what ``--dry_run`` prints. ``files``: :func:`uploads`."""
    action, cluster_id = config["action"], config["cluster_id"]
    calls = [("s3.put_object", {"Bucket": split_s3(uri)[0], "Key": split_s3(uri)[1], "ContentLength": len(data)})
             for uri, data in files]
    if action == "run":
        request = job_flow_request(steps=step_requests(config), **{key: config[key] for key in CLUSTER_KEYS})
        calls.append(("emr.run_job_flow", request))
    elif action == "add_steps":
        calls.append(("emr.add_job_flow_steps", {"JobFlowId": cluster_id, "Steps": step_requests(config)}))
    elif action == "status":
        calls.append(("emr.describe_cluster", {"ClusterId": cluster_id}))
    else:
        calls.append(("emr.terminate_job_flows", {"JobFlowIds": [cluster_id]}))
    return calls


def perform(config, files, report=print):
    """Send the action's requests with boto3 and, with ``wait``, follow the steps until they end.

    Raises StepsNotDone when a step fails or the wait ends first (the cluster keeps going then).
    """
    import boto3
    action, cluster_id = config["action"], config["cluster_id"]
    region, endpoint_url = config["region"], config["endpoint_url"] or None
    emr = boto3.client("emr", region_name=region, endpoint_url=endpoint_url)
    if action == "status":
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        report(f"{cluster_id} {cluster['Name']}: {cluster['Status']['State']} "
               f"{cluster['Status'].get('StateChangeReason', {}).get('Message', '')}".rstrip())
        for step in emr.list_steps(ClusterId=cluster_id)["Steps"]:
            report(f"  step {step['Name']} ({step['Id']}): {step['Status']['State']}")
        return
    if action == "terminate":
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        report(f"{cluster_id}: terminating")
        return

    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
    for uri, data in files:
        bucket, key = split_s3(uri)
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    report(f"code uploaded to {s3_join(config['s3_root'], 'code')}/")
    steps = step_requests(config)
    if action == "run":
        cluster_id = emr.run_job_flow(**job_flow_request(steps=steps, **{k: config[k] for k in CLUSTER_KEYS}))[
            "JobFlowId"]
        by_name = {s["Name"]: s["Id"] for s in emr.list_steps(ClusterId=cluster_id)["Steps"]}
        step_ids = [by_name[s["Name"]] for s in steps]
        report(f"cluster {cluster_id} starting ({config['core_instance_count']} x {config['core_instance_type']}); "
               f"logs: {config['log_uri']}")
    else:
        step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]
    report(f"steps: {', '.join(step_ids)}")
    if not config["wait"]:
        return
    states = wait_for_steps(emr, cluster_id, step_ids, poll_seconds=config["poll_seconds"],
                            timeout_seconds=config["max_wait_minutes"] * 60, report=report)
    failed = [f"{n} ({i}): {s}" for i, (n, s) in states.items() if s in FAILED_STEP_STATES]
    pending = [f"{n} ({i}): {s}" for i, (n, s) in states.items() if s not in TERMINAL_STEP_STATES]
    if failed:
        raise StepsNotDone(f"step {failed[0]}; logs under {config['log_uri']}{cluster_id}/steps/")
    if pending:
        raise StepsNotDone(f"still running after {config['max_wait_minutes']:g} min: {'; '.join(pending)}; the "
                           f"cluster keeps going (check: --action=status --cluster_id={cluster_id})")
    report(f"all steps completed; results: {config['data_dir']}" +
           (f", {config['run_dir']}" if "training" in config["steps"] else ""))
