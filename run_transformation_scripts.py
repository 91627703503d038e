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

from local.core.config import configure, fail, save_config, stage_main

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

# -----------------------------------------------------------------------------


@stage_main
def main(argv=None):
    """Stage 2: check the config, record it, decode what is new under raw_dir into out_dir, say what happened."""
    config = configure(dict(globals()), argv)  # a copy: the block above keeps its defaults for the next call
    from local.core import locks
    from local.dataset import build
    from local.dataset import settings as dataset_settings
    try:
        dataset_settings.check_config(config)
        dataset_settings.check_raw_dir(config["raw_dir"])
        with locks.acquire_lock(config["out_dir"], "stage 2"):  # before config.json: a refused run writes nothing
            summary = build.preprocess_locked(config["raw_dir"], config["out_dir"], workers=config["workers"],
                                                      rows_per_part=config["rows_per_part"],
                                                      on_checked=lambda: save_config(config, config["out_dir"]),
                                                      **dataset_settings.dataset_keys(config))
    except ValueError as e:  # a ConfigError, a LockHeld, or an out_dir holding a dataset made with other settings
        fail(str(e))
    print("\n".join(build.summary_lines(summary)))


if __name__ == "__main__":
    main()
