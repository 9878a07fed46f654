"""Write exports plus nla_lens's own outputs on them, for the transformers 4.57 tier to compare against.

    python scripts/export_reference.py OUT     # then: NLA_LENS_EXPORT_REFERENCE=OUT pytest tests/published_stack

Run in the main environment (transformers 5.x). For two NLAs, the shipped embedded one
(``smollm2``) and a tiny random Gemma-3 pair (``gemma3``: the multimodal wrapper AV and a
Gemma-3 text AR, as released), it writes:

- ``OUT/<name>/av`` and ``OUT/<name>/ar``: the export (``NLA.save_pretrained(path, merged=True)``);
- ``OUT/<name>/reference.safetensors``: ``reconstructions`` [8, d] (the live NLA's AR on the 8
  explanations), ``vector`` [d] (a vector to inject) and ``av_logits`` [V] (the live AV's next-token
  logits at the end of its prompt with ``vector`` injected);
- ``OUT/reference.json``: per NLA, the explanations, nla_lens's AR prompt ids and AV prompt ids,
  and the numerics-relevant config of each exported folder as transformers 5.x reads it
  (:func:`config_numerics`).

The tier (tests/published_stack) reads the exports with plain transformers 4.57 and compares.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

EXPLANATIONS = [
    "The text is a recipe: flour, sugar and two eggs are mixed before baking.",
    "A Python function that returns the sum of a list; the next token closes the bracket.",
    "Legal contract language about liability; the current word is 'shall'.",
    "A children's story about a fox in a forest, written in simple past tense.",
    "Numbers in a table of quarterly revenue, 2019 to 2023, in millions of dollars.",
    "French: a sentence about the weather in Paris (il fait beau aujourd'hui).",
    "An email signature with a phone number +1 (555) 010-9999 and an address.",
    "Short.",
]
"""Eight varied explanations: prose, code, numbers, another language, punctuation, one word."""

NUMERIC_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "hidden_activation",
    "rms_norm_eps",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "sliding_window",
    "use_sliding_window",
    "max_window_layers",
    "layer_types",
    "query_pre_attn_scalar",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "use_bidirectional_attention",
    "partial_rotary_factor",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)
"""Text-config fields that change what a forward pass computes (or which tokens it starts and ends with)."""


def config_numerics(config: Any) -> dict[str, Any]:
    """The numerics-relevant fields of a (text) config as transformers 5.x reads them, with the
    rotary settings per layer kind (``"full"``, and ``"sliding"`` for Gemma-3) from ``rope_parameters``."""
    text = config.get_text_config()
    out = {name: getattr(text, name, None) for name in NUMERIC_FIELDS}
    params = dict(text.rope_parameters or {})
    if "full_attention" in params:
        out["rope"] = {"full": params["full_attention"], "sliding": params.get("sliding_attention")}
    else:
        params.pop("partial_rotary_factor", None)
        out["rope"] = {"full": params}
    return json.loads(json.dumps(out))


def _reference(nla: Any, folder: Path) -> dict[str, Any]:
    """nla_lens's outputs on the live ``nla`` (tensors into ``folder/reference.safetensors``)."""
    from transformers import AutoConfig

    reconstructions = nla.ar.reconstruct(EXPLANATIONS)
    ar_ids = [nla.ar.encode([text])[0][0].tolist() for text in EXPLANATIONS]
    vector = torch.randn(nla.d_model, generator=torch.Generator().manual_seed(0))
    prompt = nla.av.prompt_ids()
    with torch.no_grad(), nla.av.injecting(vector[None]):
        logits = nla.av.model(input_ids=prompt[None].to(nla.av.device)).logits[0, -1].float().cpu()
    save_file(
        {"reconstructions": reconstructions.contiguous(), "vector": vector, "av_logits": logits.contiguous()},
        str(folder / "reference.safetensors"),
    )
    return {
        "explanations": EXPLANATIONS,
        "ar_prompt_ids": ar_ids,
        "av_prompt_ids": prompt.tolist(),
        "config": {half: config_numerics(AutoConfig.from_pretrained(folder / half)) for half in ("av", "ar")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced)")
    args = parser.parse_args(argv)

    from nla_lens import NLA
    from nla_lens.testing.released import tiny_released_pair

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    references = {}
    for name, nla in (("smollm2", NLA.from_pretrained("smollm2-135m-L20")), ("gemma3", tiny_released_pair("gemma3"))):
        folder = nla.save_pretrained(args.out / name, merged=True)
        references[name] = _reference(nla, folder)
        print(f"{name}: exported to {folder}; references written")
    (args.out / "reference.json").write_text(json.dumps(references, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
