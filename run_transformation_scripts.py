"""Stage 2: decode the collected audio into 8-bit mu-law codes in a Parquet dataset with train/valid/test splits.

Every format ffmpeg reads -> mono (the channels averaged) -> resampled to sample_rate (soxr HQ) ->
leading/trailing silence trimmed -> mu-law codes 0..255 -> data/processed/tracks/part-*.parquet, plus
dataset.json (genres, counts) and failures.csv (every file it could not use, and why).

Run:
  python run_transformation_scripts.py                          # data/raw -> data/processed
  python run_transformation_scripts.py --raw_dir=data/demo/raw --out_dir=data/demo/processed --workers=2
  python run_transformation_scripts.py --help

A rerun processes only new or changed files; a killed run is completed by the next one.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local.config import configure, fail, save_config  # noqa: E402

# --- I/O ---
raw_dir = "data/raw"  # stage 1's output: uses its manifest.csv, else every audio file (genre = folder name)
out_dir = "data/processed"  # where tracks/part-*.parquet, dataset.json and failures.csv go
# --- audio ---
sample_rate = 16000  # Hz, the rate the model hears
quantization_channels = 256  # mu-law levels (codes 0..255)
trim_silence = True  # cut leading and trailing silence
silence_threshold = 60.0  # dB below the track's peak that counts as silence when trimming
min_seconds = 1.0  # shorter tracks (after trimming) are reported and skipped, seconds
# --- splits ---
valid_fraction = 0.1  # share of tracks for validation (when the source gives no split)
test_fraction = 0.1  # share of tracks for the test set
split_seed = 0  # the split is a stable hash of track_id and this seed
# --- system ---
workers = 2  # decoding processes
rows_per_part = 64  # tracks per Parquet part file (a killed run loses at most the part in progress)

config = configure(globals())
# -----------------------------------------------------------------------------

from local import checks  # noqa: E402
if checks.input_folder_problem(raw_dir, "raw_dir"):
    fail(checks.input_folder_problem(raw_dir, "raw_dir"))
if not os.path.isdir(raw_dir):
    fail(f"raw_dir={raw_dir!r} does not exist: run run_webscraper.py first or pass --raw_dir=FOLDER")
if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1 or valid_fraction + test_fraction >= 1:
    fail(f"valid_fraction={valid_fraction} and test_fraction={test_fraction} must be >= 0 and sum below 1")
if not 2 <= quantization_channels <= 256:
    fail(f"quantization_channels={quantization_channels} must be between 2 and 256 (codes are one byte)")
if sample_rate <= 0 or workers < 1:
    fail(f"sample_rate={sample_rate} and workers={workers} must be positive")

from local import preprocessing  # noqa: E402  (imports numpy and friends: only once the config is good)

if preprocessing.settings_problem(sample_rate, silence_threshold, min_seconds):
    fail(preprocessing.settings_problem(sample_rate, silence_threshold, min_seconds))

if not preprocessing.list_inputs(raw_dir):
    fail(f"raw_dir={raw_dir!r} holds no audio files: run run_webscraper.py first or pass --raw_dir=FOLDER")

if checks.output_folder_problem(out_dir, "out_dir"):
    fail(checks.output_folder_problem(out_dir, "out_dir"))
os.makedirs(out_dir, exist_ok=True)
save_config(config, out_dir)
try:
    summary = preprocessing.preprocess(raw_dir, out_dir, sample_rate, quantization_channels, trim_silence,
                                       silence_threshold, min_seconds, valid_fraction, test_fraction,
                                       split_seed, workers, rows_per_part)
except ValueError as e:
    fail(str(e))

for path, text in summary["warnings"]:
    print(f"warning: {path}: {text}")
for path, reason in summary["failed"]:
    print(f"skipped: {path}: {reason}")
dataset = summary["dataset"]
print(f"{summary['processed']} tracks processed, {summary['skipped']} already done, "
      f"{len(summary['failed'])} failed (see {os.path.join(out_dir, 'failures.csv')})")
if summary.get("decoded_with_libsndfile"):
    print(f"{summary['decoded_with_libsndfile']} of them refused by ffmpeg and decoded with libsndfile")
print(f"dataset: {out_dir}  {dataset['n_tracks']} tracks, {dataset['n_samples'] / sample_rate / 60:.1f} min; "
      f"train/valid/test tracks = {dataset['tracks']['train']}/{dataset['tracks']['valid']}/"
      f"{dataset['tracks']['test']}; genres: {', '.join(dataset['genres'])}")
