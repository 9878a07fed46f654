"""``nla-lens prepare-course``: the course's caches made ahead, then read instead of rebuilt."""

from __future__ import annotations

import pytest

from nla_lens.tutorials.prepare import COURSE_SAES, prepare_course

pytestmark = [pytest.mark.embedded, pytest.mark.sae_lens]


def test_a_second_run_finds_every_cache(tmp_path):
    lines: list[str] = []
    first = prepare_course(smoke=True, sae_cache_dir=tmp_path, log=lines.append)
    saes = [step for step in first if step.startswith("SAE of ")]
    assert saes == [f"SAE of {notebook}" for notebook in COURSE_SAES] and len(lines) == len(first)
    assert len(list(tmp_path.iterdir())) == 1  # both notebooks' toy SAEs read the same 8 documents: one cache
    again = prepare_course(smoke=True, sae_cache_dir=tmp_path, log=lambda line: None)
    assert sum(again[s] for s in saes) < sum(first[s] for s in saes)
