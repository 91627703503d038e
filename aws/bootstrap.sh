#!/bin/bash
# EMR bootstrap action (aws/emr.py adds it): runs on every node before Spark starts.
#   bootstrap.sh s3://bucket/prefix/code/requirements.txt [/home/hadoop/waveforms-venv]
# Installs ffmpeg (the distribution's when it has one; else the static one imageio-ffmpeg brings with
# requirements.txt) and a Python 3.11 venv with requirements.txt, WITHOUT pyspark: the cluster's own Spark
# provides pyspark (spark-submit puts it on the path), and a pip-installed one would not match its JVM side.
# elephas is installed with --no-deps for that reason, then its other dependencies one by one.
set -euo pipefail

REQUIREMENTS_URI="${1:?usage: bootstrap.sh s3://.../requirements.txt [venv_dir]}"
VENV="${2:-/home/hadoop/waveforms-venv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log() { echo "waveforms bootstrap: $*"; }

PYTHON="$(command -v python3.11 || true)"
if [ -z "$PYTHON" ]; then
  log "installing python3.11"
  sudo dnf install -y -q python3.11 python3.11-pip >/dev/null 2>&1 || sudo yum install -y -q python3.11 >/dev/null
  PYTHON="$(command -v python3.11)"
fi
if ! command -v ffmpeg >/dev/null 2>&1; then
  sudo dnf install -y -q ffmpeg >/dev/null 2>&1 || log "no ffmpeg package here: using imageio-ffmpeg's static ffmpeg"
fi

case "$REQUIREMENTS_URI" in
  s3://*) aws s3 cp --only-show-errors "$REQUIREMENTS_URI" "$WORK/requirements.txt" ;;
  *) cp "$REQUIREMENTS_URI" "$WORK/requirements.txt" ;;
esac
# pyspark comes from the cluster; elephas would pull pyspark in, so it goes in without dependencies
grep -viE '^[[:space:]]*(pyspark|elephas)([^A-Za-z0-9_.-]|$)' "$WORK/requirements.txt" > "$WORK/without-spark.txt"
ELEPHAS="$(grep -iE '^[[:space:]]*elephas([^A-Za-z0-9_.-]|$)' "$WORK/requirements.txt" | head -1 | tr -d '[:space:]')"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$WORK/without-spark.txt"
if [ -n "$ELEPHAS" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$ELEPHAS"
  "$VENV/bin/pip" install -q --disable-pip-version-check "flask>=2.3,<3" "h5py>=3.10" "cython<3"
fi
if "$VENV/bin/pip" show pyspark >/dev/null 2>&1; then
  echo "waveforms bootstrap: pip installed its own pyspark into $VENV; refusing (it would shadow the cluster's)" >&2
  exit 1
fi
"$VENV/bin/python" -c "import numpy, pyarrow, librosa, keras, boto3"
log "ready: $VENV/bin/python ($("$VENV/bin/python" --version 2>&1)), ffmpeg: $(command -v ffmpeg || echo imageio-ffmpeg)"
