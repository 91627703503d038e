"""Figures about models and their audio: test-set bits/sample (evaluation), audio figures (figures), the demo's
tagger and the pretrained MagnaTagATune ear (tagging, tagger_features, pretrained, pretrained_tags, external),
real excerpts to compare with (excerpts), the verdict on a set of clips (verdict) and the tag and similar-
track commands (commands).

May import: core, store, audio, collect, dataset, model, generate. Never a package after it in
local/__init__.py's order, nor aws/ or a run_ script.

Names are imported on first use (``from local.judge import name`` or ``local.judge.name``), so importing
the package costs nothing.
"""
import importlib

_MODULES = ('commands', 'evaluation', 'excerpts', 'external', 'figures', 'pretrained', 'pretrained_tags', 'tagger_features', 'tagging', 'verdict')
_OWNERS = {'BATCH_PATCHES': 'pretrained',
           'EMBEDDING_TENSORS': 'pretrained',
           'EXTERNAL_MODEL': 'external',
           'ExternalJudge': 'external',
           'FEATURE_BATCH_TRACKS': 'tagger_features',
           'FEATURE_FUNCTIONS': 'tagger_features',
           'HOP_LENGTH': 'pretrained',
           'INPUT_TENSOR': 'pretrained',
           'Judge': 'verdict',
           'Judges': 'external',
           'MAX_PATCHES': 'tagger_features',
           'MAX_REFERENCE_EXCERPTS': 'excerpts',
           'MODELS': 'pretrained',
           'MSD_LABELS': 'pretrained',
           'MTT_LABELS': 'pretrained',
           'N_FFT': 'pretrained',
           'N_MELS': 'pretrained',
           'ONSET_FLOOR_DB': 'figures',
           'PATCH_FRAMES': 'pretrained',
           'PATCH_SAMPLES': 'pretrained',
           'PROBABILITIES_TENSOR': 'pretrained',
           'PretrainedTagger': 'pretrained',
           'SAMPLE_RATE': 'pretrained',
           'TRACK_PATCHES': 'pretrained_tags',
           'TRACK_WINDOWS': 'tagging',
           'TRAINING_TENSOR': 'pretrained',
           'Tagger': 'tagging',
           'analyze_features': 'tagger_features',
           'audio_files': 'tagging',
           'checkpoint_folder': 'pretrained',
           'clip_codes': 'excerpts',
           'clip_line': 'verdict',
           'code_features': 'tagger_features',
           'cosine_similarities': 'figures',
           'dataset_features': 'tagger_features',
           'dataset_fingerprint': 'tagging',
           'decode_files': 'tagging',
           'decode_for_tagging': 'pretrained_tags',
           'embeddings_path': 'tagging',
           'evaluate_run': 'evaluation',
           'evaluate_test_tracks': 'evaluation',
           'evaluation_table': 'evaluation',
           'feature_function': 'tagger_features',
           'frechet_distance': 'figures',
           'frozen_graph_def': 'pretrained',
           'full_scale_mel_power': 'figures',
           'is_pretrained': 'pretrained',
           'judge_clips': 'verdict',
           'judge_generation': 'verdict',
           'load': 'pretrained',
           'log2_softmax': 'evaluation',
           'log_mel': 'pretrained',
           'mean_cosine': 'external',
           'mismatch': 'tagging',
           'model_name': 'pretrained',
           'nearest': 'tagging',
           'onset_rate': 'figures',
           'onset_rates_by_genre': 'figures',
           'patches': 'pretrained',
           'per_genre_line': 'verdict',
           'pick_excerpts': 'excerpts',
           'pretrained_features': 'tagger_features',
           'read_meta_graph': 'pretrained',
           'real_excerpts': 'excerpts',
           'restored_session': 'pretrained',
           'score_tracks': 'evaluation',
           'spectral_flatness': 'figures',
           'spread': 'tagger_features',
           'spread_rows': 'excerpts',
           'summary_line': 'verdict',
           'test_rows_of': 'evaluation',
           'to_model_rate': 'pretrained',
           'top_tag_columns': 'pretrained_tags',
           'top_tag_rows': 'pretrained_tags',
           'top_tags_text': 'external',
           'trace_sqrt_product': 'figures',
           'track_windows': 'evaluation',
           'wavenet_judges': 'external',
           'write_csv': 'tagging',
           'write_similar': 'commands'}
__all__ = sorted(_MODULES + tuple(_OWNERS))


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _OWNERS:
        return getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
