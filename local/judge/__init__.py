"""Figures about models and their audio: test-set bits/sample (evaluation), audio figures (figures), the demo's
tagger and the pretrained MagnaTagATune ear (tagging, tagger_features, pretrained, pretrained_tags, external),
real excerpts to compare with (excerpts), the verdict on a set of clips (verdict) and the tag and similar-
track commands (commands).

May import: core, store, audio, collect, dataset, model, generate. Never a package after it in
local/__init__.py's order, nor aws/ or a run_ script.

``__all__`` lists its modules and public names, each imported on first use (``from local.judge import name``
or ``local.judge.name``: :func:`local.lazy_package`), so importing the package costs nothing.
"""
from local import lazy_package

__getattr__, __dir__ = lazy_package(__name__)
