"""Stage 3: train the WaveNet on the processed dataset, streaming windows of codes from its Parquet parts.

The loss is the cross-entropy of the next code at each of the last `window` positions of every example
(the positions that see a full receptive field), reported in bits per sample: 8 bits = knows nothing
(uniform over 256 codes); the unigram baseline (the codes histogram's entropy) is printed at the start.

Writes into run_dir: config.json, model.json, model.keras (latest complete model), checkpoints/,
metrics.csv, loss.png, tensorboard/, samples/step-<step>/<Genre>.wav + .png (clips sampled every sample_every
steps and at the end) and report.html (the run's page: settings, loss curves, clips; rewritten at every
evaluation and at the end).
With --model=tagger it trains the genre tagger instead (local/model/tagger.py: genre cross-entropy in bits per
window) into the same files up to tensorboard/ (no samples, no page), plus evaluation.json (track-level genre
accuracy against the majority baseline).
With --model=prior it trains the plan prior (local/model/prior.py: an autoregressive model over plan frames,
NLL in bits per frame) into the same files as the tagger; evaluation.json holds the valid and test NLL per
frame (nats) of the best-valid model next to a per-genre baseline without context.

Run:
  python run_model_training.py                                   # data/processed -> data/runs/default
  python run_model_training.py --data_dir=data/demo/processed --run_dir=data/demo/run --layers_per_stack=10 \
      --stacks=1 --skip_channels=64 --batch_size=4 --window=2000 --steps=1200 --learning_rate=3e-3 \
      --lr_schedule=cosine --warmup_steps=50 --min_learning_rate=1e-4 --max_minutes=7 --eval_every=200 \
      --checkpoint_every=600 --valid_windows=32 --genre_conditioning=true --sample_every=400 \
      --judge=data/demo/tagger                   # make demo's (README: The demo recipe; the tagger first)
  (the same command again with --steps=2000 resumes that run from its latest checkpoint up to step 2000)
  python run_model_training.py --model=tagger --data_dir=data/demo/processed --run_dir=data/demo/tagger \
      --tagger_steps=200 --eval_every=50      # the genre tagger that judges generated clips (make demo's, ~1 min)
  python run_model_training.py --model=tagger --tagger_features=mtt --data_dir=data/processed \
      --run_dir=data/runs/tagger_mtt      # a small library: a head on pretrained embeddings (docs/tagger-on-real-libraries.md)
  python run_model_training.py --model=prior --plan_bands=80 --data_dir=data/demo/processed \
      --run_dir=data/demo/prior --learning_rate=2e-3 --eval_every=100 --max_minutes=2   # a plan prior
  python run_model_training.py --data_dir=data/demo/processed --run_dir=data/demo/sweep --sweep=sweep.toml  # a sweep
  python run_model_training.py --help
  tensorboard --logdir data/runs

Rerunning with the same run_dir continues from its latest checkpoint; the model keys must not change.
"""

from local.core.config import stage_main

# --- I/O ---
data_dir = "data/processed"  # stage 2's output (tracks/part-*.parquet + dataset.json)
run_dir = "data/runs/default"  # where model, checkpoints and metrics go; an existing run is resumed
# --- which model ---
model = "wavenet"  # wavenet (generates audio) | tagger (a genre classifier on raw waveforms; judges the WaveNet)
#                   | prior (writes plans: an autoregressive model over plan frames, local/model/prior.py)
# --- model ---
dilations = [2 ** i for i in range(10)] * 2  # dilation of each layer (two stacks of 1..512)
layers_per_stack = 0  # when > 0: dilations = 1, 2, ... 2**(layers_per_stack-1), repeated `stacks` times
stacks = 2  # stacks of dilations (used with layers_per_stack)
filter_width = 2  # taps of each dilated convolution
residual_channels = 32  # channels of the residual path
dilation_channels = 32  # channels of the gated units
skip_channels = 128  # channels of the skip path and the head
quantization_channels = 256  # number of codes; must match the dataset
genre_conditioning = False  # add a learned genre embedding into every layer (generate by genre)
genre_channels = 16  # size of that genre embedding
context_rate = 0  # samples per frame of a context stack that hears seconds and conditions every layer (0 = none)
#                   (a smaller stack on frames; 256 = 16 ms frames at 16 kHz)
context_layers = 0  # when > 0: context_dilations = 1, 2, ... 2**(context_layers-1) (6 = 64 frames)
context_dilations = [1, 2, 4, 8, 16, 32]  # context layers' dilations, frames; whole model: 17,661 samples = 1.10 s
#   with rate 256 and the demo's 1,024-sample stack ((frames + 1) x rate - 3 + that; model.json: total_receptive_field)
context_channels = 32  # channels of the context stack
# --- the plan (docs/plan.md): log-mel frames of the audio that a renderer plays and a prior writes ---
plan_bands = 0  # mel bands per plan frame; > 0 makes the WaveNet a renderer, locally conditioned on the plan
plan_hop = 256  # samples per plan frame (62.5 frames/s at 16 kHz)
plan_n_fft = 1024  # samples of each frame's FFT window (Hann)
plan_fmin = 30.0  # lowest mel band edge, Hz
plan_fmax = 0.0  # highest mel band edge, Hz (0 = half the sample rate)
plan_channels = 64  # channels of the renderer's conditioning network on plan frames
pre_emphasis = 0.0  # a renderer models the codes of (y[n] - a y[n-1]) / (1 + a), de-emphasized when it plays: its
#             errors come out low-passed, so quiet passages get less hiss (LPCNet's noise shaping; 0 = off)
plan_width = 2  # plan frames the conditioning network reads on each side of a sample's frame (its look-ahead)
# --- data ---
batch_size = 8  # examples per step
window = 4000  # output samples per example (each example reads receptive_field + window - 1 codes)
cache_tracks = 8  # tracks held in memory and shuffled together (bounds peak memory)
prefetch_batches = 8  # batches prepared ahead of the training step
valid_windows = 64  # fixed validation windows drawn from the valid split
code_noise = 0.0  # std, in codes, of the jitter added to the training windows' input codes (targets stay clean):
#             the net cannot trust its past exactly, as when it hears its own samples, and leans on its plan (0 = none)
start_from_silence = False  # windows may also start at a track's first sample, after the silence generation
#             starts from (train and valid tracks get receptive_field + context_past codes of silence in front)
# --- optimizer ---
steps = 20000  # total training steps (a resumed run continues up to this)
max_minutes = 0.0  # also stop after this many minutes of training, counted across resumes (0 = no limit)
learning_rate = 1e-3  # Adam step size (peak, after warmup)
lr_schedule = "constant"  # constant | cosine (decays to min_learning_rate at `steps`, or at max_minutes if sooner)
warmup_steps = 0  # linear learning-rate warmup, steps
min_learning_rate = 1e-5  # the cosine schedule's final value
grad_clip = 1.0  # clip the global gradient norm to this (0 = off)
# --- logging and checkpoints ---
eval_every = 250  # steps between validation losses, metrics.csv rows and loss.png
checkpoint_every = 1000  # steps between checkpoints (one is also written at the end)
keep_checkpoints = 3  # newest checkpoints kept
sample_every = 1000  # steps between clips to listen to, one per genre, and at the end (0 = off; ~ x eval_every)
sample_seconds = 2.0  # length of each sampled clip, seconds (0 = no clips)
judge = ""  # a tagger run (model=tagger): judge each step's clips; metrics.csv gains judge_genre_accuracy,
#             judge_flatness_ratio and judge_onset_rate_ratio (empty = no judging)
stuck_check_step = 1000  # warn if the train loss is still ~log2(quantization_channels) at this step (0 = off)
# --- system ---
seed = 1234  # makes a run reproducible (weights, window order)
threads = 0  # CPU cores the train step uses (0 = all): the batch is split into one part per core, each on one
#             thread (on 2 cores 1.3x faster than TensorFlow's own threading, demo model)
jit_compile = False  # compile the train step with XLA (measured 2x slower on a 2-core CPU; try it on GPU)
# --- tagger (model=tagger, local/model/tagger.py; it shares data_dir, run_dir, the optimizer, eval and checkpoint keys) ---
tagger_input_samples = 3 ** 9  # samples per window (19,683 = 1.23 s at 16 kHz); at least 3^len(tagger_channels)
tagger_channels = [16, 16, 32, 32, 64, 64, 128, 128, 128]  # channels of the stride-3 conv, then of each block
tagger_embedding_size = 64  # size of the embedding judge.py compares (similar tracks, Frechet distance)
tagger_dropout = 0.3  # dropout before the embedding and before the logits
tagger_steps = 300  # a tagger run's training steps (the WaveNet's are `steps`)
tagger_batch_size = 16  # windows per tagger step (the WaveNet's are `batch_size`)
tagger_eval_windows = 16  # windows per track averaged for the track-level accuracy in evaluation.json
tagger_balanced = True  # draw training windows so every genre is seen equally often, however many or long its
#             tracks (false: each track in proportion to its length, so the largest genre dominates)
tagger_features = "waveform"  # waveform: train the whole network on samples | mtt: train only a small head (one
#             hidden layer of tagger_embedding_size) on musicnn's pretrained MagnaTagATune embeddings (for small libraries)
# --- plan prior (model=prior, local/model/prior.py; it shares data_dir, run_dir, the optimizer, eval and checkpoint keys) ---
renderer_dir = ""  # a renderer's run (a WaveNet with plan_bands > 0): the prior takes its plan_* keys (empty = this
#             config's plan_* keys, then plan_bands must be > 0: the demo's is 80)
prior_steps = 3000  # a prior run's training steps (model.keras keeps the best-valid weights)
prior_batch_size = 16  # windows per prior step
prior_window = 64  # plan frames scored per window (each reads 2**prior_layers - 1 frames before them)
prior_channels = 64  # channels of the prior's dilated stack
prior_layers = 8  # dilations 1 .. 2**(prior_layers-1), width 2: receptive field 2**prior_layers frames (256 = 4.1 s)
prior_mixtures = 3  # discretized logistics per band of the frame's likelihood
prior_frame_mixture = False  # the mixture's components are whole frames (one weight per component, shared by the
#             bands: a drawn frame takes every band from one component) instead of one mixture per band
prior_genre_channels = 16  # size of the genre embedding that conditions every layer
prior_dropout = 0.1  # dropout on each layer's output while training
prior_input_noise = 4.0  # std of Gaussian noise added to the frames the prior reads while training, dB (against
#             exposure bias; demo, 2 min: test NLL 119.0 at 0 dB, 117.8 at 2, 114.9 at 4 nats/frame)
prior_eval_frames = 16384  # valid plan frames scored at each evaluation (evaluation.json scores every frame)
# --- sweeps ---
sweep = ""  # a TOML/JSON file: base keys + a [sweep] table of lists; one run per point in run_dir/<name>/

# -----------------------------------------------------------------------------


@stage_main
def main(argv=None):
    from local.train import kinds
    config = kinds.resolve_config(globals(), argv)
    if config["sweep"]:
        from local.train import sweep
        return sweep.run_sweep_file(config, argv, defaults=globals(), train_one=kinds.train_config)
    return kinds.train_config(config)


if __name__ == "__main__":
    main()
