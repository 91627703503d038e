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

from local.core.config import ConfigError, configure, fail

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

# -----------------------------------------------------------------------------


def main(argv=None):
    """Check the config, then print (dry_run) or send the action's requests and follow its steps."""
    from aws import emr_cluster  # the standard library only: --help and config mistakes still answer at once
    try:  # configure a copy: the block above keeps its defaults for the next call
        config = emr_cluster.resolve_config(configure(dict(globals()), argv))
        files = emr_cluster.uploads(config["s3_root"], config["steps"]) if config["action"] in ("run", "add_steps") \
            else []
    except ConfigError as e:
        fail(str(e))
    except FileNotFoundError as e:
        fail(f"this checkout lacks {e.filename}: run aws/emr.py from a complete clone")
    if config["dry_run"]:
        for operation, request in emr_cluster.planned_requests(config, files):
            print(f"{operation} {json.dumps(request, indent=2)}")
        return
    from aws.s3_files import aws_errors_in_one_line  # boto3: only when requests are sent
    with aws_errors_in_one_line(f"AWS refused {config['action']}"):
        try:
            emr_cluster.perform(config, files)
        except emr_cluster.StepsNotDone as e:
            fail(str(e), status=1)


if __name__ == "__main__":
    main()
