"""The two TransformerLens lines and the optional packages: what works where, and the errors elsewhere.

Each test runs on both lines and checks what that line must do: on 3.9 the classes load; on 4.x the
same calls raise a ``MissingDependencyError`` whose message names the route that works. The checks
that build a tiny subject are in ``tests/integration/test_optional_subjects.py``.
"""

from __future__ import annotations

import re
import sys

import pytest

import nla_lens
from nla_lens.errors import MissingDependencyError, NLALensError
from nla_lens.optional import has_hooked_transformer, has_sae_lens, hooked_transformer, transformer_lens_version


def test_the_installed_line_is_one_we_support():
    major = int(transformer_lens_version().split(".")[0])
    assert major in (3, 4)
    assert has_hooked_transformer() == (major == 3)
    assert not (major == 4 and has_sae_lens())  # SAELens cannot import beside 4.x


def test_hooked_transformer_loads_on_3_9_and_names_the_bridge_on_4():
    if has_hooked_transformer():
        HookedTransformer, HookedTransformerConfig = hooked_transformer()
        assert HookedTransformer.__name__ == "HookedTransformer"
        return
    with pytest.raises(MissingDependencyError) as info:
        hooked_transformer("load_subject(..., backend='hooked')")
    message = str(info.value)
    assert "backend='bridge'" in message and "TransformerBridge.boot_transformers" in message
    assert transformer_lens_version() in message and isinstance(info.value, (ImportError, NLALensError))


def test_load_subject_hooked_on_4_is_refused_before_any_download():
    if has_hooked_transformer():
        # 3.9: the hooked route exists; the offline hub refuses the name with our load error instead.
        with pytest.raises(nla_lens.errors.SubjectLoadError, match="backend 'hooked'"):
            nla_lens.load_subject("gpt2", backend="hooked")
        return
    with pytest.raises(MissingDependencyError, match="backend='bridge'"):
        nla_lens.load_subject("gpt2", backend="hooked")


@pytest.mark.parametrize(
    ("module", "extra"),
    [("accelerate.utils", "train"), ("anywidget", "widgets"), ("circuitsvis", "widgets"), ("nnsight", "nnsight")],
)
def test_a_missing_optional_package_names_the_extra_that_installs_it(monkeypatch, module, extra):
    from nla_lens.optional import require

    for name in [m for m in sys.modules if m.startswith(f"{module.split('.')[0]}.")]:
        monkeypatch.delitem(sys.modules, name)  # submodules imported before would still be found
    monkeypatch.setitem(sys.modules, module.split(".")[0], None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=re.escape(f"pip install 'nla_lens[{extra}]'")) as info:
        require(module, "This view")
    assert "This view needs" in str(info.value) and isinstance(info.value, ImportError)


def test_a_trainer_without_accelerate_says_which_extra(monkeypatch):
    from nla_lens.training.base import Trainer

    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(MissingDependencyError, match=r"Trainer needs accelerate.*nla_lens\[train\]"):
        Trainer()  # the module imports without accelerate; building a trainer needs it


def test_only_optional_packages_are_required():
    from nla_lens.optional import require

    with pytest.raises(KeyError, match="not one of nla_lens's optional packages"):
        require("numpy")
