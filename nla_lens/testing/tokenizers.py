"""Offline tiny tokenizers for tests and smoke-mode notebooks (no network, milliseconds).

:func:`tiny_tokenizer` trains a small byte-level BPE in memory and wraps it as a
``transformers.PreTrainedTokenizerFast`` with SmolLM2-like special tokens (``<|endoftext|>``,
``<|im_start|>``, ``<|im_end|>``), a ChatML chat template, no BOS, and a couple of rare added
tokens (``<empty_output>``, ``<file_sep>``) usable as injection markers. No character of
U+3200-U+33FF is a single token, as with SmolLM2, so marker choice falls back to an added
token. :func:`tiny_tokenizer_with_cjk_marker` trains one CJK character (default ``㈎``) into
the vocabulary as a single token, exercising the published marker path.
"""

from __future__ import annotations

import functools

__all__ = [
    "CHATML_TEMPLATE",
    "TINY_CORPUS",
    "tiny_tokenizer",
    "tiny_tokenizer_with_bos",
    "tiny_tokenizer_with_cjk_marker",
]

#: ChatML template (the SmolLM2 / Qwen format), no system prompt injected.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: A few sentences covering the words the NLA prompts use, so prompts stay short.
TINY_CORPUS: tuple[str, ...] = (
    "The cat sat on the mat. The dog ran in the park and the bird sang in the tree.",
    "A language model reads the text and predicts the next word from the context.",
    "Here is a vector from a language model's residual stream, shown as one token.",
    "Explain in English what the model is representing at this point.",
    "Write the explanation inside <explanation> and </explanation> tags.",
    "<concept> </concept> <text> </text> <summary> <explanation>",
    "Summary of the following text: <text>the topic is cats</text> <summary>",
    "user assistant system: the features it would use to predict what comes next.",
    "The last one is about the current token, a noun, a verb or a name in a list.",
    "Devil's dictionary: a cynic is a blackguard whose faulty vision sees things as they are.",
    "0 1 2 3 4 5 6 7 8 9 10 100 - , . ; : ! ? ' \" ( ) [ ] { } \n",
)


@functools.lru_cache(maxsize=8)
def _trained_json(vocab_size: int, marker_tokens: tuple[str, ...], cjk_char: str | None) -> str:
    """Train the byte-level BPE once per configuration; return its JSON (cheap to rebuild from)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_CHAT_TOKENS) + list(marker_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(TINY_CORPUS) * 4
    if cjk_char is not None:
        # Standalone and frequent, so its UTF-8 bytes merge into one token but never merge with
        # the punctuation around it in a prompt.
        corpus += [" ".join([cjk_char] * 50)] * 4
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(
    *,
    vocab_size: int = 512,
    marker_tokens: tuple[str, ...] = ("<empty_output>", "<file_sep>"),
    cjk_char: str | None = None,
):
    """Build a fresh tiny ``PreTrainedTokenizerFast`` (offline, a few milliseconds).

    Ids: 0 ``<|endoftext|>`` (pad), 1 ``<|im_start|>``, 2 ``<|im_end|>`` (eos), then the
    ``marker_tokens`` as added special tokens, then the BPE vocabulary. No BOS is prepended.

    Args:
        vocab_size: Target vocabulary size of the BPE (including special tokens).
        marker_tokens: Rare added special tokens usable as markers; ``()`` for none (then
            :func:`~nla_lens.injection.choose_marker` finds no marker).
        cjk_char: A character to train into the vocabulary as one token, or ``None``.

    Returns:
        A new ``transformers.PreTrainedTokenizerFast`` (safe to mutate; each call builds one).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_trained_json(vocab_size, tuple(marker_tokens), cjk_char))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(marker_tokens),
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_tokenizer_with_cjk_marker(char: str = "\u320e", **kwargs):
    """A :func:`tiny_tokenizer` in which ``char`` (default ``㈎``, U+320E) is a single token.

    Args:
        char: A character from U+3200-U+33FF; earlier characters of that range stay
            multi-token, so :func:`~nla_lens.injection.choose_marker` returns this one.
        **kwargs: Passed to :func:`tiny_tokenizer`.
    """
    return tiny_tokenizer(cjk_char=char, **kwargs)


def tiny_tokenizer_with_bos(**kwargs):
    """A :func:`tiny_tokenizer` that adds a BOS (``<bos>``) as Gemma and Llama tokenizers do.

    Encoding with special tokens prepends ``<bos>``; the chat template starts with it too, as
    Gemma's and Llama's templates do, so a correct prompt holds it exactly once.

    Args:
        **kwargs: Passed to :func:`tiny_tokenizer` (``marker_tokens`` gains ``<bos>``).
    """
    from tokenizers import processors

    markers = tuple(kwargs.pop("marker_tokens", ("<empty_output>", "<file_sep>")))
    tokenizer = tiny_tokenizer(marker_tokens=(*markers, "<bos>"), **kwargs)
    bos_id = tokenizer.convert_tokens_to_ids("<bos>")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos_id)]
    )
    tokenizer.bos_token = "<bos>"
    tokenizer.chat_template = "{{ bos_token }}" + CHATML_TEMPLATE
    return tokenizer
