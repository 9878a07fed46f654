"""Offline helpers for tests and smoke-mode notebooks: tiny tokenizers, tiny models, a tiny SAE.

``TinySAE`` is importable from here (it needs only torch); the model helpers live in
:mod:`nla_lens.testing.models` and the tokenizers in :mod:`nla_lens.testing.tokenizers`.
"""

from nla_lens.testing.sae import TinySAE

__all__ = ["TinySAE"]
