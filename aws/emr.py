"""Run stage 2 (and 3) on an EMR cluster: ship the code to S3, create the cluster, add the Spark steps, poll
until they finish, and let the cluster terminate (or terminate one yourself).

The project's code travels as s3_root/code/waveforms.zip (spark-submit --py-files); aws/bootstrap.sh puts
ffmpeg and a Python venv with requirements.txt on every node, without touching the cluster's own pyspark.
Credentials come from boto3's standard chain only. Data lives under s3_root unless raw_dir/data_dir/run_dir
say otherwise; copy it there with aws/s3_sync.py.

Run:
  python aws/emr.py --s3_root=s3://my-bucket/waveforms --dry_run          # print every request, send nothing
  python aws/s3_sync.py --src=data/raw --dst=s3://my-bucket/waveforms/raw
  python aws/emr.py --s3_root=s3://my-bucket/waveforms --core_instance_count=4 --steps=preprocessing
  python aws/emr.py --s3_root=s3://my-bucket/waveforms --keep_alive --wait=false   # a cluster to add steps to
  python aws/emr.py --action=add_steps --cluster_id=j-XXXX --s3_root=s3://my-bucket/waveforms --steps=training
  python aws/emr.py --action=status --cluster_id=j-XXXX
  python aws/emr.py --action=terminate --cluster_id=j-XXXX
  python aws/s3_sync.py --src=s3://my-bucket/waveforms/processed --dst=data/processed
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.config import configure, fail  # noqa: E402

# --- what to do ---
action = "run"  # run (new cluster with the steps) | add_steps | status | terminate
cluster_id = ""  # the cluster for add_steps / status / terminate (j-...)
steps = ["preprocessing", "training"]  # jobs to run, in order: preprocessing, training
dry_run = False  # print the exact requests (uploads, run_job_flow, add_job_flow_steps) and send nothing
# --- where ---
s3_root = ""  # s3://bucket/prefix: code/, logs/ and (by default) raw/, processed/, runs/ go below it
raw_dir = ""  # stage 1's output on S3; "" = <s3_root>/raw
data_dir = ""  # the processed dataset; "" = <s3_root>/processed
run_dir = ""  # the training run; "" = <s3_root>/runs/emr
log_uri = ""  # cluster logs; "" = <s3_root>/logs/
region = "us-east-1"  # AWS region
endpoint_url = ""  # for tests only (a local EMR/S3 mock); "" = AWS
# --- cluster ---
name = "waveforms"  # cluster name
release_label = "emr-spark-8.0.0"  # an EMR release with Spark 4.0.x and Python 3.11 (check: aws emr list-release-labels)
master_instance_type = "m5.xlarge"  # the driver node
core_instance_type = "c5.4xlarge"  # worker nodes (16 vCPU each; decoding is CPU-bound)
core_instance_count = 2  # worker nodes
use_spot = False  # core nodes on spot capacity (cheaper; a lost node's tasks are retried)
keep_alive = False  # keep the cluster after its steps (then terminate it yourself); else it ends with them
idle_timeout_s = 3600  # with keep_alive: EMR ends an idle cluster after this long, seconds
service_role = "EMR_DefaultRole"  # IAM role of the EMR service
job_flow_role = "EMR_EC2_DefaultRole"  # IAM instance profile of the nodes (needs S3 access to s3_root)
ec2_key_name = ""  # an EC2 key pair for ssh to the master; "" = none
subnet_id = ""  # the VPC subnet; "" = the default VPC
# --- jobs ---
partitions = 0  # preprocessing tasks; 0 = 4 per core
preprocessing_args = []  # extra --key=value for aws/spark_preprocessing.py (comma-separated)
training_args = []  # extra --key=value for aws/spark_training.py (comma-separated)
# --- polling ---
wait = True  # poll until the steps finish
poll_seconds = 30.0  # between polls, seconds
max_wait_minutes = 720.0  # stop polling (the cluster keeps going) after this long, minutes

config = configure(globals())
# -----------------------------------------------------------------------------

if action not in ("run", "add_steps", "status", "terminate"):
    fail(f"action={action!r} must be run, add_steps, status or terminate")
if action in ("run", "add_steps") and not s3_root.startswith("s3://"):
    fail(f"s3_root={s3_root!r} must be s3://bucket/prefix (where the code, logs and data go)")
if action != "run" and not cluster_id:
    fail(f"action={action} needs --cluster_id=j-...")
unknown = [s for s in steps if s not in ("preprocessing", "training")]
if unknown or (action in ("run", "add_steps") and not steps):
    fail(f"steps={','.join(steps)}: choose from preprocessing, training")
if core_instance_count < 1 or poll_seconds <= 0:
    fail(f"core_instance_count={core_instance_count} must be at least 1 and poll_seconds={poll_seconds} positive")

stray = [a for a in preprocessing_args + training_args if a and not a.startswith("--")]
if stray:
    fail(f"preprocessing_args/training_args item {stray[0]!r} is not a --key=value: the lists are comma-separated, "
         f"so no value in them may hold a comma (for dilations pass --layers_per_stack=N,--stacks=M)")

from aws import emr_cluster as emr  # noqa: E402

raw_dir = raw_dir or emr.s3_join(s3_root, "raw")
data_dir = data_dir or emr.s3_join(s3_root, "processed")
run_dir = run_dir or emr.s3_join(s3_root, "runs", "emr")
log_uri = log_uri or emr.s3_join(s3_root, "logs") + "/"
job_args = {
    "preprocessing": [f"--raw_dir={raw_dir}", f"--out_dir={data_dir}", f"--partitions={partitions}",
                      *[a for a in preprocessing_args if a]],
    "training": [f"--data_dir={data_dir}", f"--run_dir={run_dir}", *[a for a in training_args if a]],
}
try:
    files = emr.uploads(s3_root, steps) if action in ("run", "add_steps") else []
except FileNotFoundError as e:
    fail(f"this checkout lacks {e.filename}: run aws/emr.py from a complete clone")
step_requests = [emr.spark_step(f"waveforms {job}", job, s3_root, job_args[job],
                                "CONTINUE" if keep_alive or action == "add_steps" else "TERMINATE_CLUSTER")
                 for job in steps]


def show(operation, request):
    print(f"{operation} {json.dumps(request, indent=2)}")


if dry_run:
    if action in ("run", "add_steps"):
        for uri, data in files:
            bucket, key = emr.split_s3(uri)
            show("s3.put_object", {"Bucket": bucket, "Key": key, "ContentLength": len(data)})
    if action == "run":
        show("emr.run_job_flow", emr.job_flow_request(
            name, s3_root, release_label, log_uri, master_instance_type, core_instance_type, core_instance_count,
            use_spot, keep_alive, service_role, job_flow_role, ec2_key_name, subnet_id, step_requests,
            idle_timeout_s))
    elif action == "add_steps":
        show("emr.add_job_flow_steps", {"JobFlowId": cluster_id, "Steps": step_requests})
    elif action == "status":
        show("emr.describe_cluster", {"ClusterId": cluster_id})
    else:
        show("emr.terminate_job_flows", {"JobFlowIds": [cluster_id]})
    sys.exit(0)

import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402

try:
    emr_client = boto3.client("emr", region_name=region, endpoint_url=endpoint_url or None)
    if action == "status":
        cluster = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]
        print(f"{cluster_id} {cluster['Name']}: {cluster['Status']['State']} "
              f"{cluster['Status'].get('StateChangeReason', {}).get('Message', '')}".rstrip())
        for step in emr_client.list_steps(ClusterId=cluster_id)["Steps"]:
            print(f"  step {step['Name']} ({step['Id']}): {step['Status']['State']}")
        sys.exit(0)
    if action == "terminate":
        emr_client.terminate_job_flows(JobFlowIds=[cluster_id])
        print(f"{cluster_id}: terminating")
        sys.exit(0)

    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url or None)
    for uri, data in files:
        bucket, key = emr.split_s3(uri)
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    print(f"code uploaded to {emr.s3_join(s3_root, 'code')}/")
    if action == "run":
        response = emr_client.run_job_flow(**emr.job_flow_request(
            name, s3_root, release_label, log_uri, master_instance_type, core_instance_type, core_instance_count,
            use_spot, keep_alive, service_role, job_flow_role, ec2_key_name, subnet_id, step_requests,
            idle_timeout_s))
        cluster_id = response["JobFlowId"]
        by_name = {s["Name"]: s["Id"] for s in emr_client.list_steps(ClusterId=cluster_id)["Steps"]}
        step_ids = [by_name[s["Name"]] for s in step_requests]
        print(f"cluster {cluster_id} starting ({core_instance_count} x {core_instance_type}); "
              f"logs: {log_uri}")
    else:
        step_ids = emr_client.add_job_flow_steps(JobFlowId=cluster_id, Steps=step_requests)["StepIds"]
    print(f"steps: {', '.join(step_ids)}")
    if wait:
        states = emr.wait_for_steps(emr_client, cluster_id, step_ids, poll_seconds, max_wait_minutes * 60)
        failed = [f"{n} ({i}): {s}" for i, (n, s) in states.items() if s in ("FAILED", "CANCELLED", "INTERRUPTED")]
        pending = [f"{n} ({i}): {s}" for i, (n, s) in states.items() if s not in emr.TERMINAL_STEP_STATES]
        if failed:
            fail(f"step {failed[0]}; logs under {log_uri}{cluster_id}/steps/", status=1)
        if pending:
            fail(f"still running after {max_wait_minutes:g} min: {'; '.join(pending)}; the cluster keeps going "
                 f"(check: --action=status --cluster_id={cluster_id})", status=1)
        print(f"all steps completed; results: {data_dir}" + (f", {run_dir}" if "training" in steps else ""))
except botocore.exceptions.NoCredentialsError:
    fail("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or a role")
except (botocore.exceptions.ClientError, botocore.exceptions.EndpointConnectionError) as e:
    fail(f"AWS refused {action}: {e}")
