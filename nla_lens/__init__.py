"""nla_lens: Natural Language Autoencoders for TransformerLens.

Explain a language model's residual-stream activations in plain English, and prove the words
carry the information by rebuilding the activation from them.

Quick start (offline, on the embedded SmolLM2-135M-Instruct)::

    import nla_lens
    bridge = nla_lens.load_subject("smollm2-135m")
    acts = nla_lens.extract_activations(bridge, nla_lens.load_corpus(max_documents=50))
"""

import importlib.metadata

from nla_lens.analysis import explain_prompt, faithfulness_report, layer_sweep, steer
from nla_lens.data.corpus import load_corpus
from nla_lens.data.dataset import ActivationDataset
from nla_lens.data.extraction import extract_activations
from nla_lens.data.teachers import APITeacher, ContextTeacher, HFTeacher
from nla_lens.errors import NLALensError
from nla_lens.hooks import parse_hook_name, resid_post, resolve_hook_name
from nla_lens.models import NLA, ActivationReconstructor, ActivationVerbalizer
from nla_lens.models.registry import list_pretrained, register_pretrained
from nla_lens.subjects.adapters import as_subject
from nla_lens.subjects.embedded import load_embedded_hf
from nla_lens.subjects.loader import list_subjects, load_subject

try:  # the one version number is pyproject.toml's, read from the installed package's metadata
    __version__ = importlib.metadata.version("nla_lens")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "NLA",
    "APITeacher",
    "ActivationDataset",
    "ActivationReconstructor",
    "ActivationVerbalizer",
    "ContextTeacher",
    "HFTeacher",
    "NLALensError",
    "as_subject",
    "explain_prompt",
    "extract_activations",
    "faithfulness_report",
    "layer_sweep",
    "list_pretrained",
    "list_subjects",
    "load_corpus",
    "load_embedded_hf",
    "load_subject",
    "parse_hook_name",
    "register_pretrained",
    "resid_post",
    "resolve_hook_name",
    "steer",
]
