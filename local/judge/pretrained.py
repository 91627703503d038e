"""Music taggers pretrained on a large body of real music: musicnn's MagnaTagATune and Million Song Dataset models.

The ``musicnn`` package (ISC licence, Music Technology Group, Universitat Pompeu Fabra) ships the TensorFlow 1
checkpoints of four taggers inside its wheel: ``MTT_musicnn`` and ``MTT_vgg`` (MagnaTagATune, 50 tags),
``MSD_musicnn`` and ``MSD_vgg`` (Million Song Dataset, 50 tags). Its own Python code needs TensorFlow 1, so
``make setup`` installs only its files (requirements-pretrained.txt, ``pip install --no-deps``) and this module
loads the checkpoints itself:

- the ``.meta`` graph is imported into its own ``tf.Graph`` and run by a ``tf.compat.v1.Session`` on that graph,
  so TensorFlow's global mode is untouched (the process stays eager for Keras); the nodes' ``_output_shapes``
  attributes are removed first (the training-gradient nodes carry them inconsistently and the import refuses
  them). Each model is loaded once per process (:func:`load`).
- the front end is the one the models were trained with (musicnn's ``config.json``): 16 kHz mono, a 512-point
  FFT with hop 256, 96 mel bands (librosa's Slaney mel, power), stored as float16, then ``log10(10000 x + 1)``;
  cut into non-overlapping 187-frame (3 s) patches. A clip shorter than a patch is repeat-padded (musicnn's
  training ``pad_short: repeat-pad``).

Outputs per patch: the 50 tag probabilities (sigmoid) and the embedding of the penultimate layer
(musicnn: the 200-unit dense layer after its batch normalization; vgg: the flattened last pooling layer).
"""
import importlib.util
import os
import threading

import numpy as np

from local.audio.waveform import resample
from local.core.config import StageError
from local.core.quiet import quiet_stderr

SAMPLE_RATE = 16000  # Hz: the rate the models were trained at
N_FFT = 512  # samples per FFT frame
HOP_LENGTH = 256  # samples between frames
N_MELS = 96  # mel bands
PATCH_FRAMES = 187  # frames per patch: 3 s (librosa.time_to_frames(3, 16000, 256, 512) + 1)
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP_LENGTH  # samples that make one patch of frames (centered frames)
BATCH_PATCHES = 64  # patches per session call (bounds memory)

MTT_LABELS = ['guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano',
              'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing',
              'vocals', 'no vocals', 'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal',
              'pop', 'soft', 'sitar', 'solo', 'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice',
              'female vocal', 'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice',
              'choral']
MSD_LABELS = ['rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s',
              'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul',
              'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies',
              'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop',
              '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal',
              'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy']

# short name -> musicnn's checkpoint folder; the folder names are accepted too
MODELS = {"mtt": "MTT_musicnn", "msd": "MSD_musicnn", "mtt_vgg": "MTT_vgg", "msd_vgg": "MSD_vgg"}
INPUT_TENSOR = "model/Placeholder:0"  # (batch, 187, 96) float32 log-mel patches
TRAINING_TENSOR = "model/Placeholder_2:0"  # bool: batch normalization and dropout in training mode
PROBABILITIES_TENSOR = "model/Sigmoid:0"  # (batch, 50)
EMBEDDING_TENSORS = {"musicnn": "model/batch_normalization_10/batchnorm/add_1:0",  # (batch, 200)
                     "vgg": "model/Flatten/flatten/Reshape:0"}  # (batch, 1152)


def model_name(name):
    """musicnn's folder name of a pretrained tagger given as ``mtt``, ``msd``, ``mtt_vgg``, ``msd_vgg`` or the folder
    name itself; "" when ``name`` is none of them (e.g. a tagger run directory)."""
    if name in MODELS:
        return MODELS[name]
    return name if name in MODELS.values() else ""


def is_pretrained(name):
    """True when ``name`` names a pretrained tagger (see :func:`model_name`)."""
    return bool(model_name(name)) and not os.path.isdir(name)


def checkpoint_folder(name):
    """The installed checkpoint folder of the pretrained tagger ``name``; StageError (one line) when musicnn's
    files are not installed."""
    spec = importlib.util.find_spec("musicnn")  # finds the package without running its code (it needs TF 1)
    folder = os.path.join(list(spec.submodule_search_locations)[0], model_name(name)) if spec else ""
    if not folder or not os.path.isfile(os.path.join(folder, ".meta")):
        raise StageError(f"the pretrained tagger {name} is not installed: run make setup (it installs musicnn's "
                         f"files: pip install --no-deps -r requirements-pretrained.txt)")
    return folder


# --- the front end -------------------------------------------------------------------------------------

def log_mel(y):
    """The models' input representation of mono float audio ``y`` (n_samples,) at 16 kHz: (n_frames, 96) float32,
    ``log10(10000 x + 1)`` of the float16 mel power spectrogram (centered frames, reflect-padded as librosa
    did when the models were trained)."""
    import librosa
    y = np.asarray(y, dtype=np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
                                         pad_mode="reflect").T
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1).astype(np.float32)


def patches(y, max_patches=0):
    """Non-overlapping 187-frame patches of mono float audio ``y`` at 16 kHz: (n_patches, 187, 96) float32, at
    least one. A clip shorter than one patch is repeated until it fills one (musicnn's repeat-pad); the frames
    after the last whole patch are dropped. ``max_patches`` > 0 keeps that many, evenly spread."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if len(y) == 0:
        raise ValueError("no audio to tag: the clip is empty")
    if len(y) < PATCH_SAMPLES:
        y = np.tile(y, -(-PATCH_SAMPLES // len(y)))[:PATCH_SAMPLES]
    frames = log_mel(y)
    n = max(1, len(frames) // PATCH_FRAMES)
    starts = np.arange(n) * PATCH_FRAMES
    if max_patches and n > max_patches:
        starts = starts[np.unique(np.linspace(0, n - 1, num=max_patches).round().astype(int))]
    return np.stack([frames[s:s + PATCH_FRAMES] for s in starts])


def to_model_rate(y, sample_rate):
    """Mono float audio ``y`` at ``sample_rate`` Hz, resampled to the models' 16 kHz."""
    return resample(np.asarray(y, dtype=np.float32), sample_rate, SAMPLE_RATE)


# --- the models ----------------------------------------------------------------------------------------

def read_meta_graph(folder):
    """The checkpoint's MetaGraphDef with every node's ``_output_shapes`` attribute removed."""
    from tensorflow.core.protobuf import meta_graph_pb2
    meta = meta_graph_pb2.MetaGraphDef()
    with open(os.path.join(folder, ".meta"), "rb") as f:
        meta.ParseFromString(f.read())
    for node in meta.graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    return meta


def restored_session(folder):
    """(graph, session): the checkpoint as trained, imported into its own ``tf.Graph`` (TensorFlow's global
    mode untouched) with its variables restored; the training placeholders are still there."""
    import tensorflow as tf
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(read_meta_graph(folder), clear_devices=True)
        session = tf.compat.v1.Session(graph=graph)
        saver.restore(session, os.path.join(folder, ""))
    return graph, session


def frozen_graph_def(folder, outputs):
    """The inference part of a checkpoint's graph as a GraphDef: variables turned into constants, the
    ``is_training`` placeholder into the constant False (so the batch-normalization and dropout switches fold
    away: about 2x faster than feeding False), everything the ``outputs`` (tensor names) do not need removed."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants
    from tensorflow.python.util import deprecation
    with deprecation.silence():  # TensorFlow 1 tools, on purpose
        graph, session = restored_session(folder)
    nodes = [name.split(":")[0] for name in outputs]
    with session, deprecation.silence():
        graph_def = convert_to_constants.convert_variables_to_constants_from_session_graph(
            session, graph.as_graph_def(), nodes)  # keeps only what the outputs need
    for node in graph_def.node:
        if node.name == TRAINING_TENSOR.split(":")[0]:
            node.op = "Const"
            node.attr.clear()
            node.attr["dtype"].type = tf.bool.as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(False))
    return graph_def


class PretrainedTagger:
    """One of musicnn's pretrained taggers, loaded for use (see :func:`load`): ``name`` (its folder name),
    ``labels`` (the 50 tags, in the order of the outputs), ``embedding_size``; :meth:`run` on log-mel patches,
    :meth:`analyze` on waveforms."""

    def __init__(self, name, threads=0):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        self.name = model_name(name)
        if not self.name:
            raise StageError(f"{name!r} is no pretrained tagger: pass one of {', '.join(MODELS)}")
        folder = checkpoint_folder(self.name)
        self.labels = list(MTT_LABELS if self.name.startswith("MTT") else MSD_LABELS)
        outputs = [PROBABILITIES_TENSOR, EMBEDDING_TENSORS["vgg" if "vgg" in self.name else "musicnn"]]
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(frozen_graph_def(folder, outputs), name="")
        self.graph.finalize()
        # one op at a time on as many threads as cores: TensorFlow's default pools spin on a busy machine
        # (measured on 2 shared cores: 57x real time per CPU second by default, 75-80x so)
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads or os.cpu_count() or 1,
                                          inter_op_parallelism_threads=1)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self._input = self.graph.get_tensor_by_name(INPUT_TENSOR)
        self._outputs = [self.graph.get_tensor_by_name(name) for name in outputs]
        self.embedding_size = int(self._outputs[1].shape[-1])
        self._lock = threading.Lock()

    def run(self, batch):
        """(probabilities (n, 50), embeddings (n, embedding_size)) float32 of log-mel patches ``batch``
        (n, 187, 96), in inference mode (batch normalization's moving statistics, no dropout)."""
        batch = np.asarray(batch, np.float32)
        probabilities, embeddings = [], []
        with self._lock:
            for first in range(0, len(batch), BATCH_PATCHES):
                p, e = self.session.run(self._outputs, {self._input: batch[first:first + BATCH_PATCHES]})
                probabilities.append(p)
                embeddings.append(e)
        if not probabilities:
            return np.zeros((0, len(self.labels)), np.float32), np.zeros((0, self.embedding_size), np.float32)
        return np.concatenate(probabilities), np.concatenate(embeddings)

    def analyze(self, waveforms, sample_rate=SAMPLE_RATE, max_patches=0):
        """Per waveform (mono float (n,) at ``sample_rate`` Hz) its patches' (embeddings (k, embedding_size),
        probabilities (k, 50)), the order of local.judge.tagging.Tagger.analyze; all patches run in one batch."""
        cut = [patches(to_model_rate(y, sample_rate), max_patches) for y in waveforms]
        if not cut:
            return []
        probabilities, embeddings = self.run(np.concatenate(cut))
        out, first = [], 0
        for c in cut:
            out.append((embeddings[first:first + len(c)], probabilities[first:first + len(c)]))
            first += len(c)
        return out

    def top_tags(self, probabilities, k=3):
        """The ``k`` most probable tags of one tag vector (50,): a list of (tag, probability), best first."""
        order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
        return [(self.labels[i], float(probabilities[i])) for i in order]


_LOADED = {}  # model folder name -> PretrainedTagger: each loaded once per process
_LOADING = threading.Lock()


def load(name):
    """The pretrained tagger ``name`` (mtt, msd, mtt_vgg, msd_vgg or a folder name), loaded once per process."""
    key = model_name(name) or name
    with _LOADING:
        if key not in _LOADED:
            # TensorFlow's runtime logs its first graph optimization straight to file descriptor 2 ("All log
            # messages before absl::InitializeLog()...", MLIR): loaded and run once with that descriptor aside
            with quiet_stderr():
                tagger = PretrainedTagger(name)
                tagger.run(np.zeros((1, PATCH_FRAMES, N_MELS), np.float32))
            _LOADED[key] = tagger
        return _LOADED[key]
