# Waveforms: `make demo` (install, then all four stages on the offline demo corpus, and a genre tagger that
# judges the generated clips) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := data/demo

.PHONY: setup system demo cluster-demo test test-fast bench clean-demo

setup: system $(STAMP)

# ffmpeg decodes audio; Java runs Spark; Chromium checks the report page in the tests.
# Installed with apt-get when missing and we are root.
system:
	@missing=""; browser=""; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  test -n "$$WAVEFORMS_CHROMIUM" || browser="chromium"; \
	if [ -n "$$missing$$browser" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing $$browser with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing $$browser >/dev/null || exit 1; \
	elif [ -n "$$missing" ]; then \
	  echo "error: please install$$missing $$browser (e.g. sudo apt-get install$$missing $$browser), then rerun make"; exit 1; \
	elif [ -n "$$browser" ]; then \
	  echo "note: the report page tests need chromium (sudo apt-get install chromium, or WAVEFORMS_CHROMIUM=/path/to/chrome)"; \
	fi

$(STAMP): requirements.txt requirements-dev.txt requirements-pretrained.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-pretrained.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	$(PY) -m local.judge.numba_caches
	@touch $(STAMP)

# TensorFlow's start-up chatter (no GPU here) would bury the demo's results
demo: export TF_CPP_MIN_LOG_LEVEL=3
demo: setup
	$(PY) run_webscraper.py --out_dir=$(DEMO)/raw
	$(PY) run_transformation_scripts.py --raw_dir=$(DEMO)/raw --out_dir=$(DEMO)/processed
	$(PY) run_model_training.py --model=tagger --data_dir=$(DEMO)/processed --run_dir=$(DEMO)/tagger \
	  --tagger_steps=200 --eval_every=50
	$(PY) run_model_training.py --data_dir=$(DEMO)/processed --run_dir=$(DEMO)/run --layers_per_stack=10 \
	  --stacks=1 --skip_channels=64 --batch_size=4 --window=2000 --steps=1800 --learning_rate=3e-3 \
	  --lr_schedule=cosine --warmup_steps=50 --min_learning_rate=1e-4 --max_minutes=4.5 --eval_every=300 \
	  --checkpoint_every=900 --valid_windows=32 --genre_conditioning=true --plan_bands=80 --plan_width=3 \
	  --pre_emphasis=0.85
	$(PY) run_model_training.py --model=prior --data_dir=$(DEMO)/processed --run_dir=$(DEMO)/run/prior \
	  --renderer_dir=$(DEMO)/run --learning_rate=2e-3 --eval_every=100 --checkpoint_every=500 --max_minutes=2
	$(PY) run_model_predictions.py --run_dir=$(DEMO)/run --out_dir=$(DEMO)/resynthesized --plan=heldout \
	  --seconds=4 --streams=30 --temperature=0.8 --evaluate=true --judge=$(DEMO)/tagger
	$(PY) run_model_predictions.py --run_dir=$(DEMO)/run --out_dir=$(DEMO)/generated --plan=prior \
	  --seconds=4 --streams=30 --temperature=0.8 --plan_temperature=0.6 --judge=$(DEMO)/tagger
	@$(PY) -m local.report.demo_summary $(DEMO)
	@echo "the run's page (listen and look): $(DEMO)/run/report.html"

# Stages 2 and 3 on a real Spark standalone cluster (a master and two workers on 127.0.0.1, pyspark's own
# launch classes), then stage 4; the cluster stops also on a failure or Ctrl-C (aws/cluster_demo.py).
cluster-demo: export TF_CPP_MIN_LOG_LEVEL=3
cluster-demo: setup
	$(PY) aws/cluster_demo.py --raw_dir=$(DEMO)/raw --out_dir=$(DEMO)/cluster

# The whole suite (what CI runs), and the fast tier for the person editing: everything but the tests that start
# Spark, a standalone cluster, an S3 server or Chromium, or train for long (markers in pytest.ini).
test: setup
	$(PY) -m pytest -q test

test-fast: setup
	$(PY) -m pytest -q test -m "not spark and not cluster and not s3 and not browser and not slow"

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-demo:
	rm -rf $(DEMO)
