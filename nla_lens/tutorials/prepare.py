"""Everything the course caches, made ahead of class: ``nla-lens prepare-course``.

A student's first run of the course otherwise spends its minutes on work that is the same for
everyone: unpacking the embedded model into its fp32 cache (about 20 s), and training the SAEs that
tutorial 6 and research notebook 2 read (about 12 and 5 minutes on two cores). Run once on the
machine (or the shared home directory) the class uses, every notebook then loads them from
``~/.cache/nla_lens``. The SAE settings below are the notebooks' full-mode settings: the SAE cache is
keyed by them and by the texts, so they must stay equal (``tests/notebooks`` compares them with the
notebooks' code).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["COURSE_SAES", "prepare_course"]

COURSE_SAES: dict[str, dict[str, Any]] = {
    "tutorials/06_nla_vs_sae_and_attention": {
        "documents": 400,
        "settings": {"d_sae": 2048, "k": 32, "training_tokens": 200_000, "batch_size_tokens": 256},
    },
    "notebooks/02_nla_vs_sae_over_a_corpus": {"documents": 900, "settings": {}},
}
"""The SAE each notebook trains in full mode: the first ``documents`` of the embedded corpus and the
keyword arguments of :func:`~nla_lens.training.sae.train_embedded_sae` (``{}``: its defaults)."""

SMOKE_SAE = {"d_sae": 64, "k": 4, "training_tokens": 1024, "batch_size_tokens": 64}
"""What ``smoke=True`` trains instead (a check that the path works, not a course cache)."""


def prepare_course(
    *, smoke: bool = False, cache_dir: Any = None, sae_cache_dir: Any = None, log: Callable[[str], None] = print
) -> dict[str, float]:
    """Fill the caches the course reads: the embedded model, the shipped NLA, the notebooks' SAEs.

    Args:
        smoke: Train toy SAEs on 8 documents instead (seconds; for tests).
        cache_dir: Root of the embedded model's cache (default ``~/.cache/nla_lens``).
        sae_cache_dir: Root of the SAE cache (default ``~/.cache/nla_lens/saes``).
        log: Where each step's line goes.

    Returns:
        ``{step: seconds}`` for each step, in order.
    """
    import nla_lens
    from nla_lens.models import NLA
    from nla_lens.training.sae import train_embedded_sae  # it names the sae extra when SAELens is missing

    seconds: dict[str, float] = {}

    def timed(step: str, run: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = run()
        seconds[step] = time.perf_counter() - start
        log(f"{step}: {seconds[step]:.0f} s")
        return result

    subject = timed("embedded model (SmolLM2-135M, fp32 cache)", lambda: nla_lens.load_subject(cache_dir=cache_dir))
    nla = timed("shipped NLA (smollm2-135m-L20)", lambda: NLA.from_pretrained())
    corpus = nla_lens.load_corpus()
    for notebook, sae in COURSE_SAES.items():
        texts = corpus[: 8 if smoke else sae["documents"]]
        settings = SMOKE_SAE if smoke else sae["settings"]

        def train(texts: list[str] = texts, settings: dict[str, Any] = settings) -> Any:
            return train_embedded_sae(subject, texts, hook_name=nla.hook_name, cache_dir=sae_cache_dir, **settings)

        timed(f"SAE of {notebook}", train)
    return seconds
