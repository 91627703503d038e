#!/bin/bash
# Stage 2 with HDFS staging, on an EMR master node: S3 -> local disk -> HDFS -> Spark job -> HDFS -> S3.
#   aws/hdfs_sync.sh s3://bucket/waveforms/raw s3://bucket/waveforms/processed [--key=value ...]
# The extra arguments go to aws/spark_preprocessing.py (e.g. --partitions=512 --min_seconds=2).
# For users who want the job to read HDFS rather than S3; aws/emr.py's steps read S3 directly.
# Environment: WAVEFORMS_CODE (default: this checkout) holds aws/ and local/; STAGING (default /mnt/waveforms)
# is the local disk used on the way; HDFS_ROOT (default /waveforms) the HDFS folder.
set -euo pipefail

SRC="${1:?usage: hdfs_sync.sh s3://.../raw s3://.../processed [--key=value ...]}"
DST="${2:?usage: hdfs_sync.sh s3://.../raw s3://.../processed [--key=value ...]}"
shift 2
CODE="${WAVEFORMS_CODE:-$(cd "$(dirname "$0")/.." && pwd)}"
STAGING="${STAGING:-/mnt/waveforms}"
HDFS_ROOT="${HDFS_ROOT:-/waveforms}"
PYTHON="${PYSPARK_PYTHON:-/home/hadoop/waveforms-venv/bin/python}"

step() { echo "== $*"; }

step "1/5 $SRC -> $STAGING/raw"
mkdir -p "$STAGING/raw"
aws s3 sync --only-show-errors "$SRC" "$STAGING/raw"

step "2/5 $STAGING/raw -> hdfs://$HDFS_ROOT/raw"
hadoop fs -mkdir -p "$HDFS_ROOT"
hadoop fs -put -f "$STAGING/raw" "$HDFS_ROOT/"

step "3/5 spark_preprocessing on HDFS"
"$PYTHON" -c "import sys; sys.path.insert(0, sys.argv[1]); from aws.emr_cluster import code_zip; \
open(sys.argv[2], 'wb').write(code_zip(sys.argv[1]))" "$CODE" "$STAGING/waveforms.zip"
spark-submit --master yarn --deploy-mode client \
  --conf "spark.pyspark.python=$PYTHON" --conf "spark.pyspark.driver.python=$PYTHON" \
  --py-files "$STAGING/waveforms.zip" "$CODE/aws/spark_preprocessing.py" \
  "--raw_dir=hdfs://$HDFS_ROOT/raw" "--out_dir=hdfs://$HDFS_ROOT/processed" "$@"

step "4/5 hdfs://$HDFS_ROOT/processed -> $STAGING/processed"
rm -rf "$STAGING/processed"
hadoop fs -get "$HDFS_ROOT/processed" "$STAGING/processed"

step "5/5 $STAGING/processed -> $DST"
aws s3 sync --only-show-errors "$STAGING/processed" "$DST"
echo "done: $DST"
