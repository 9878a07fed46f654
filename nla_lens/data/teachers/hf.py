"""``HFTeacher``: a local Hugging Face instruct model writes the warm-start explanations.

The teacher prompt (``DEFAULT_TEACHER_PROMPT`` by default) is wrapped in the model's chat
template and answered with batched, left-padded generation. Small models ramble: the reply is
cut to its numbered snippets (or its first paragraph).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from nla_lens.data.teachers.base import DEFAULT_TEACHER_PROMPT, check_records, format_prompt
from nla_lens.errors import InputError

_PARAGRAPH = re.compile(r"\n\s*\n")
_NUMBERED = re.compile(r"^\s*\d+[.)]")


def clean_explanation(text: str) -> str:
    """Trim a generated explanation to its useful part.

    Paragraphs are separated by blank lines. If some paragraph starts a numbered list, keep the
    run of numbered paragraphs from the first one (so ``"Sure!\\n\\n1. ...\\n\\n2. ..."`` keeps
    both snippets); otherwise keep the first paragraph.
    """
    paragraphs = [p.strip() for p in _PARAGRAPH.split(text.strip()) if p.strip()]
    if not paragraphs:
        return ""
    numbered = [i for i, p in enumerate(paragraphs) if _NUMBERED.match(p)]
    if not numbered:
        return paragraphs[0]
    kept = []
    for paragraph in paragraphs[numbered[0] :]:
        if not _NUMBERED.match(paragraph):
            break
        kept.append(paragraph)
    return "\n".join(kept)


class HFTeacher:
    """Explanations written by a local HF instruct model (e.g. ``nla_lens.load_embedded_hf()``).

    Given the teacher prompt, SmolLM2-135M-Instruct writes generic, verbose, often unfinished
    lists (seen while nla_lens was built): a weak warm start. A larger local
    instruct model or ``APITeacher`` makes a better warm start, ``ContextTeacher`` a cheaper one.

    Args:
        model: An HF causal LM with ``generate``.
        tokenizer: Its tokenizer (its chat template is used when it has one). Not modified.
        prompt: Format string with ``{prefix}`` and ``{token}``.
        max_new_tokens: Generation cap per explanation.
        batch_size: Prompts per ``generate`` call.
        temperature: 0 means greedy decoding (deterministic); above 0 samples.
        progress: Show a ``tqdm`` progress bar.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        prompt: str = DEFAULT_TEACHER_PROMPT,
        max_new_tokens: int = 100,
        batch_size: int = 8,
        temperature: float = 0.0,
        progress: bool = True,
    ):
        if not hasattr(model, "generate"):
            raise InputError(f"HFTeacher needs a Hugging Face causal LM with .generate, got {type(model).__name__}.")
        if tokenizer is None:
            raise InputError("HFTeacher needs the model's tokenizer.")
        for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an int >= 1, got {value!r}.")
        if temperature < 0:
            raise InputError(f"temperature must be >= 0, got {temperature}.")
        format_prompt(prompt, "", "")  # fail now on a malformed prompt
        self.model, self.tokenizer, self.prompt = model, tokenizer, prompt
        self.max_new_tokens, self.batch_size, self.temperature = max_new_tokens, batch_size, temperature
        self.progress = progress

    def __repr__(self) -> str:
        name = getattr(getattr(self.model, "config", None), "_name_or_path", type(self.model).__name__)
        return f"HFTeacher(model={name!r}, max_new_tokens={self.max_new_tokens}, temperature={self.temperature})"

    def chat_text(self, prefix: str, token: str) -> str:
        """The full model input for one record: the filled prompt in the chat template."""
        content = format_prompt(self.prompt, prefix, token)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        return content

    @torch.no_grad()
    def __call__(self, records: pd.DataFrame) -> list[str]:
        """One generated explanation per row of ``records`` (columns ``prefix``, ``token``)."""
        records = check_records(records)
        texts = [self.chat_text(p, t) for p, t in zip(records["prefix"], records["token"])]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch well
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        device = next(self.model.parameters()).device
        sampling = (
            {"do_sample": True, "temperature": float(self.temperature)}
            if self.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        results: list[str] = [""] * len(texts)
        bar = tqdm(total=len(texts), desc="HF teacher", unit="row", disable=not self.progress)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = [tok(texts[i], add_special_tokens=False)["input_ids"] for i in batch]
            width = max(len(ids) for ids in encoded)
            # Left padding: every prompt ends at the same column, where generation starts.
            input_ids = torch.full((len(batch), width), pad_id if pad_id is not None else 0, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(encoded):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad_id,
                **sampling,
            )
            for row, i in enumerate(batch):
                results[i] = clean_explanation(tok.decode(out[row, width:], skip_special_tokens=True))
            bar.update(len(batch))
        bar.close()
        return results
