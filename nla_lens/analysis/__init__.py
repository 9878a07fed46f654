"""Analyses of a trained NLA: faithfulness checks, controls, layer sweeps, steering, prompt tables.

Owns the public names of the analysis layer:

* :func:`faithfulness_report` (fve_nrm with its controls, paraphrase robustness, ablation by
  snippet, grounding, gibberish rate, the context oracle) and its parts
  :func:`context_oracle`, :func:`snippet_ablation`, and the offline paraphrasers
  :class:`RuleParaphraser`, :class:`StyleParaphraser` (one surface style of
  :mod:`nla_lens.rewrites`) and :class:`ProseParaphraser` (the content as plain sentences);
* :func:`explain_prompt`: every token of a prompt explained and scored, exportable;
* :func:`side_by_side`: a prompt's explanations beside its attention and SAE features (the
  table; :class:`~nla_lens.vis.side_by_side.SideBySide` renders it), and
  :func:`top_feature_contexts`, the corpus contexts shown under each SAE feature;
* :func:`sae_agreement`: per-position agreement between an NLA and an SAE (shared words, and
  the NLA's error in the span of the position's features), each beside a shuffled pairing, and
  :func:`nla_feature_labels`: SAE features labelled by the NLA (recurring words where they
  fire, their direction explained), grounded in their top contexts against a shuffled feature;
* :func:`layer_sweep`: one token explained at several hooks by NLAs trained there;
* :func:`explanation_vector` and :func:`steer`: turn an explanation into a residual-stream
  direction with the AR and add it to the subject while it generates, each topic gain beside the
  fluency of the steered text; :func:`steering_sweep` does it at several strengths;
* :func:`explain_direction` and ``difference.compare`` (also ``NLA.explain_direction`` and
  ``NLA.compare``; module :mod:`nla_lens.analysis.difference`, as :mod:`nla_lens.analysis.compare`
  is the side-by-side table): two explanations side by side, the words that change, and a control,
  as a :class:`Comparison`.

Imports no widget code; the views are self-contained HTML from :mod:`nla_lens.vis`, which only
renders the tables computed here.
"""

from __future__ import annotations

from nla_lens.analysis.ablation import snippet_ablation
from nla_lens.analysis.compare import side_by_side
from nla_lens.analysis.difference import Comparison, explain_direction
from nla_lens.analysis.faithfulness import FaithfulnessReport, context_oracle, faithfulness_report
from nla_lens.analysis.feature_labels import FeatureLabels, nla_feature_labels
from nla_lens.analysis.layer_sweep import LayerSweep, layer_sweep
from nla_lens.analysis.paraphrase import ProseParaphraser, RuleParaphraser, StyleParaphraser
from nla_lens.analysis.prompt_table import PromptExplanation, explain_prompt
from nla_lens.analysis.sae_agreement import SAEAgreement, sae_agreement
from nla_lens.analysis.sae_features import dataset_feature_contexts, top_feature_contexts
from nla_lens.analysis.steering import (
    SteeringResult,
    explanation_vector,
    steer,
    steered_generate,
    steering_sweep,
    topic_logprob,
)
from nla_lens.analysis.text import content_words, grounding, split_snippets
from nla_lens.subjects.hook_check import check_subject

__all__ = [
    "Comparison",
    "FaithfulnessReport",
    "FeatureLabels",
    "LayerSweep",
    "PromptExplanation",
    "ProseParaphraser",
    "RuleParaphraser",
    "SAEAgreement",
    "SteeringResult",
    "StyleParaphraser",
    "check_subject",
    "content_words",
    "context_oracle",
    "dataset_feature_contexts",
    "explain_direction",
    "explain_prompt",
    "explanation_vector",
    "faithfulness_report",
    "grounding",
    "layer_sweep",
    "nla_feature_labels",
    "sae_agreement",
    "side_by_side",
    "snippet_ablation",
    "split_snippets",
    "steer",
    "steered_generate",
    "steering_sweep",
    "top_feature_contexts",
    "topic_logprob",
]
