"""Waveforms: what the four stages do (collect, prepare, train, generate), in packages by layer.

Lowest first; a package imports only packages before it in this list (test_repository checks it):

- ``core``: config, checks, atomic files, locks, quiet start-up, plots; knows no music.
- ``store``: the files on disk and their names: manifest, dataset folder, run directory, clip folders.
- ``audio``: decoding, waveforms and mu-law codes, writing audio.
- ``collect``: stage 1's sources (demo corpus, FMA website and archive, a music folder).
- ``dataset``: stage 2 (settings, inputs, splits, the build) and the window reader training reads.
- ``model``: the models, each described once (WaveNet, genre tagger).
- ``generate``: fast and reference generation, clips and training-time samples.
- ``judge``: bits/sample, audio figures, the taggers that listen, the verdict on clips.
- ``report``: the run's page and a sweep's table.
- ``train``: stage 3's loop, ``train_one(kind)``, each kind's task, sweeps.

``aws/`` imports these; nothing here imports ``aws/`` or a ``run_`` script.
"""
PACKAGES = ("core", "store", "audio", "collect", "dataset", "model", "generate", "judge", "report", "train")
