"""Write the research notebooks (notebooks/*.ipynb) from this one readable source.

The committed .ipynb files are the product; edit here, run ``python notebooks/_build.py``, and
commit both. Notebooks are written without outputs. Smoke mode (``NLA_LENS_MODE=smoke``) shrinks
every run to CI size; see ``notebooks/README.md``.
"""

from __future__ import annotations

from pathlib import Path

from nla_lens.tutorials.authoring import build_all, code, md

HERE = Path(__file__).resolve().parent

SETUP = """
import os

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

import nla_lens
from nla_lens import NLA
from nla_lens.tutorials import Mode

# NLA_LENS_MODE: unset (full), "lab" (long runs shortened) or "smoke" (CI: seconds, numbers mean nothing).
mode = Mode(os.environ.get("NLA_LENS_MODE", "full")).setup()
pd.set_option("display.max_colwidth", 160)
mode
"""


def intro(title: str, minutes: int, text: str) -> list:
    return [
        md(f"""
# {title}

> **Research notebook** · about {minutes} minutes on a laptop CPU in full mode · offline

{text.strip()}
"""),
        code(SETUP),
    ]


# ---------------------------------------------------------------------------------------------
def explorer_and_layer_sweep() -> list:
    cells = intro(
        "Hook-point experiments: the explorer and layer sweeps",
        15,
        """
Interactive reading of a prompt with the shipped NLA (`NLAExplorer`), the `layer_sweep` view
from `nla_lens.analysis`, and a hook-point experiment that needs no NLA at all: **how local is
each layer?** For every layer we recompute the residual stream from only the last *n* tokens
and measure how much of the full-context vector it recovers (fve_nrm). Where a short window
recovers the vector, an explanation built on recent context can carry it; where it cannot, an
NLA has to say something about the wider document.
""",
    )
    cells += [
        code("""
bridge = nla_lens.load_subject("smollm2-135m")
nla = NLA.from_pretrained("smollm2-135m-L20")
MAX_NEW = mode.pick(full=96, smoke=12)
"""),
        md("""
## The explorer

Type a prompt in the box; every token but the first is explained and coloured by its gain over
the mean direction (red: no better than predicting the mean direction of the prompt's tokens;
green: perfect; the raw cosine, shown beside it, flatters every token). Click a token to sample alternative explanations of the same activation, each scored.
The widget can also be driven from code (`explore`, `selected`, `frame`, `alternatives`), which
is what we do below so the notebook also reads well without a live kernel.
"""),
        code("""
from nla_lens.widgets import NLAExplorer

prompt = mode.pick(full="The cat sat on the mat because it was tired.", smoke="The cat sat.")
explorer = NLAExplorer(nla, bridge, prompt=prompt, max_new_tokens=MAX_NEW, n_alternatives=mode.pick(3, 2))
explorer
"""),
        code("""
frame = explorer.frame
frame[["position", "token", "explanation", "cosine", "ok"]]
"""),
        code("""
explorer.selected = int(frame["position"].iloc[-1])  # as if the last token were clicked
pd.DataFrame(explorer.alternatives)
"""),
        md("""
## Layer sweep view

`nla_lens.analysis.layer_sweep` explains one token at every hook that has an NLA. Only layer 20
ships with nla_lens; train more with `nla_lens.training.recipe.Recipe(name="L6", layer=6)` and
`run_recipe`, then pass `{6: nla6, 20: nla20}`.
"""),
        code("""
from nla_lens.analysis import layer_sweep

sweep = layer_sweep({nla.hook_name: nla}, bridge, prompt, position=-1, max_new_tokens=MAX_NEW, progress=False)
display(sweep)
sweep.frame[["hook_name", "token", "explanation", "cosine", "norm"]]
"""),
        md("""
## How local is each layer?

Positions come from `extract_activations` (same seed, so the same positions at every hook). For
each position we rerun the subject on only its last *n* tokens and read the last token at every
layer.
"""),
        code("""
from nla_lens.metrics import fve_nrm
from nla_lens.subjects.adapters import as_subject

LAYERS = mode.pick(full=[2, 6, 10, 14, 18, 20, 24, 29], smoke=[2, 20])
WINDOWS = mode.pick(full=[2, 4, 8, 16, 32], smoke=[2, 8])
docs = nla_lens.load_corpus(max_documents=mode.pick(full=40, smoke=4))
full = {layer: nla_lens.extract_activations(bridge, docs, layer=layer, positions_per_doc=mode.pick(3, 2), min_position=40,
                                            max_length=128, progress=False) for layer in LAYERS}
rows = full[LAYERS[0]].frame
subject = as_subject(bridge)
names = [f"blocks.{layer}.hook_resid_post" for layer in LAYERS]

windowed = {n: {layer: [] for layer in LAYERS} for n in WINDOWS}
for doc_id, position in zip(rows["doc_id"], rows["position"]):
    ids = subject.encode(docs[doc_id], 128)
    for n in WINDOWS:
        window = torch.tensor([ids[position - n + 1 : position + 1]])
        _, cache = bridge.run_with_cache(window, names_filter=lambda name: name in names,
                                         stop_at_layer=max(LAYERS) + 1)
        for layer, name in zip(LAYERS, names):
            windowed[n][layer].append(cache[name][0, -1])

table = pd.DataFrame({n: {layer: fve_nrm(torch.stack(windowed[n][layer]), full[layer].vectors) for layer in LAYERS}
                      for n in WINDOWS})
table.index.name, table.columns.name = "layer", "last n tokens"
table.round(2)
"""),
        code("""
fig, ax = plt.subplots(figsize=(7, 4))
for n in WINDOWS:
    ax.plot(LAYERS, table[n], marker="o", label=f"last {n} tokens")
ax.axhline(0, color="black", lw=0.8)
ax.set(xlabel="layer (hook_resid_post)", ylabel="fve_nrm vs the full-context vector",
       title="How much of each layer's vector the recent context recovers")
ax.legend()
plt.show()
"""),
        md("""
**Reading it.** Early layers are nearly a function of the last few tokens; deeper layers mix in
more of the document, so short windows recover less. The value at layer 20 with ~16 tokens is a
ceiling for explanations that only quote recent context; compare it with the NLA's own
held-out fve_nrm (tutorial 2): the gap is what better verbalization could still win. (The first token of
each window is an attention sink, which also perturbs the window's vectors: a small,
conservative bias.)
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def nla_vs_sae() -> list:
    cells = intro(
        "NLA explanations versus SAE features over a corpus",
        20,
        """
Tutorial 6 put an NLA and an SAE side by side on one prompt and introduced the measures. Here we
ask, over many held-out positions: **do the two lenses point at the same things?** The library
does the measuring (`nla_lens.analysis.sae_agreement` and `nla_feature_labels`); this notebook
adds the controls a claim needs: a shuffled pairing for every measure, and a random SAE of the
same width as a second baseline.
""",
    )
    cells += [
        code("""
from nla_lens.analysis import nla_feature_labels, sae_agreement, side_by_side, top_feature_contexts
from nla_lens.testing import TinySAE
from nla_lens.training.sae import train_embedded_sae

bridge = nla_lens.load_subject("smollm2-135m")
nla = NLA.from_pretrained("smollm2-135m-L20")
corpus = nla_lens.load_corpus()
train_docs = corpus[: mode.pick(full=900, smoke=12)]
# The default SAE of scripts/embedded_sae.py (cached after the first run); smoke mode trains a toy one.
sae = train_embedded_sae(bridge, train_docs, hook_name=nla.hook_name,
                         **mode.pick(full={}, smoke=dict(d_sae=128, k=8, training_tokens=2048, batch_size_tokens=256)))
contexts = top_feature_contexts(sae, bridge, corpus[400:mode.pick(full=600, smoke=408)], nla.hook_name, k=5)
print(f"SAE: {sae.cfg.d_sae} features, {len(contexts)} with contexts")
"""),
        md("""
## Per-position agreement

Positions come from the documents neither the NLA nor the SAE read (900 on); the features'
contexts from documents 400-599. For each position: the explanation, the top five features, and
the two measures with their shuffled pairings.
"""),
        code("""
held_out = nla_lens.extract_activations(bridge, corpus[900 : mode.pick(full=len(corpus), smoke=903)], nla.hook_name,
                                        positions_per_doc=2, splits={"eval": 1.0}, progress=False)
agreement = sae_agreement(nla, sae, held_out, feature_contexts=contexts, top_k=5,
                          max_new_tokens=mode.pick(full=64, smoke=12), progress=False)
display(agreement)
agreement.frame[["token", "explanation", "features", "word_overlap", "word_overlap_shuffled",
                 "error_in_features", "error_in_features_shuffled"]].head()
"""),
        md("""
### A second control: a random SAE of the same width

The shuffled pairing keeps the explanations and the features but breaks their match. A random
SAE keeps the pipeline and breaks the features: its directions mean nothing. We reuse the
explanations already made (`explanations=`), so this costs no generation.
"""),
        code("""
random_sae = TinySAE(sae.cfg.d_in, sae.cfg.d_sae, 5, nla.hook_name, seed=0)
random_contexts = top_feature_contexts(random_sae, bridge, corpus[400:mode.pick(full=600, smoke=408)],
                                       nla.hook_name, k=5)
baseline = sae_agreement(nla, random_sae, held_out, feature_contexts=random_contexts, top_k=5,
                         explanations=agreement.frame["explanation"].tolist(), progress=False)
pd.concat({"trained SAE": agreement.table(), "random SAE": baseline.table()}, axis=1).round(3)
"""),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, measure in zip(axes, ["word_overlap", "error_in_features"]):
    frame = agreement.frame
    ax.hist([frame[measure].dropna(), frame[f"{measure}_shuffled"].dropna(), baseline.frame[measure].dropna()],
            bins=[i / 10 for i in range(11)], label=["own features", "another position's features", "random SAE"])
    ax.set(xlabel=measure, ylabel="positions")
axes[0].legend()
plt.tight_layout()
plt.show()
"""),
        md("""
## What does the NLA say about the recurring features?

Features that fire almost everywhere carry position or formatting, not topic; we label the
features most often among the positions' top five, leaving out those active at more than half
of them.
"""),
        code("""
counts = pd.Series([f for fs in agreement.frame["features"] for f in fs]).value_counts()
chosen = counts[counts <= len(agreement.frame) / 2].index[: mode.pick(full=8, smoke=2)].tolist()
labels = nla_feature_labels(nla, sae, corpus[600:mode.pick(full=800, smoke=604)], chosen, subject=bridge,
                            feature_contexts=contexts, top_n=mode.pick(full=8, smoke=2),
                            base_n=mode.pick(full=64, smoke=2), max_new_tokens=mode.pick(full=64, smoke=12),
                            progress=False)
display(labels)
labels.frame[["feature", "n_active", "label", "label_grounding", "label_grounding_shuffled",
              "direction_grounding", "direction_grounding_shuffled"]]
"""),
        md("## One prompt, with the labels in place of bare feature ids"),
        code("""
side_by_side(nla, bridge, "The old sailor told the children a story about the sea.", sae=sae,
             feature_contexts=contexts, feature_labels=labels, positions=mode.pick(full=None, smoke=[5]),
             max_new_tokens=mode.pick(full=64, smoke=12), progress=False, warn=False)
"""),
        md("""
**Reading it.** Agreement means a lift over *both* controls: over the shuffled pairing (the
match between a position's explanation and its own features matters) and over the random SAE
(the trained features matter, not just the pipeline). A label is worth reading when its
grounding in its own feature's contexts beats the shuffled feature's; the direction's
explanation is the stricter test, since it never sees a context. The interesting use is
comparing NLAs (say, before and after GRPO) under the same SAE and the same controls.
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def nnsight_backend() -> list:
    cells = intro(
        "Using an nnsight model (local, and remote on NDIF)",
        10,
        """
nla_lens reads activations through TransformerLens or through **nnsight**. nnsight wraps a plain
Hugging Face model and runs the same code either locally or **remotely on NDIF** (the National
Deep Inference Fabric), which hosts models too large for a laptop. Everything here runs locally
on the embedded model; the NDIF cell is guarded by a flag and does nothing unless you set it.
""",
    )
    cells += [
        code("""
model = nla_lens.load_subject("smollm2-135m", backend="nnsight")
bridge = nla_lens.load_subject("smollm2-135m")
type(model).__name__
"""),
        md("""
## A plain nnsight trace

Decoder layer K's output is `blocks.K.hook_resid_post`. We compare the two backends on one
prompt (they wrap separately loaded copies of the same weights; attention kernels may round
differently, so expect agreement to float precision, not bit for bit).
"""),
        code("""
prompt = "The cat sat on the mat because it was tired."
with model.trace(prompt):
    layer20 = model.model.layers[20].output.save()
nn_resid = layer20[0] if isinstance(layer20, tuple) else layer20
_, cache = bridge.run_with_cache(prompt, names_filter="blocks.20.hook_resid_post", stop_at_layer=21)
tl_resid = cache["blocks.20.hook_resid_post"]
print(tuple(nn_resid.shape), "max |nnsight - TransformerLens| =", (nn_resid.reshape(tl_resid.shape) - tl_resid).abs().max().item())
"""),
        md("""
## The same nla_lens calls, nnsight backend

`extract_activations`, `NLA.explain` and `NLA.round_trip` accept an nnsight model wherever
they accept a `TransformerBridge`; the extraction stops the trace after the hooked layer.
"""),
        code("""
docs = nla_lens.load_corpus(max_documents=mode.pick(full=30, smoke=4))
acts_nn = nla_lens.extract_activations(model, docs, layer=20, positions_per_doc=2, progress=False)
acts_tl = nla_lens.extract_activations(bridge, docs, layer=20, positions_per_doc=2, progress=False)
print("same positions:", acts_nn.frame[["doc_id", "position"]].equals(acts_tl.frame[["doc_id", "position"]]))
print("max |difference| over the dataset:", (acts_nn.vectors - acts_tl.vectors).abs().max().item(),
      "| median norm:", acts_tl.meta["norm_stats"]["median"])
acts_nn
"""),
        code("""
nla = NLA.from_pretrained("smollm2-135m-L20")
nla.explain(text=prompt, subject=model, positions=[5], max_new_tokens=mode.pick(full=96, smoke=12),
            progress=False, warn=False)[["position", "token", "explanation"]]
"""),
        md("""
## Steering through nnsight

nnsight can also *write* to the residual stream. Adding the AR's vector for an explanation at
layer 20 while the model generates is `nla_lens.analysis.steered_generate`, which works on both
backends:
"""),
        code("""
from nla_lens.analysis import explanation_vector, steered_generate

vector = explanation_vector(nla, "The text is about the ocean, waves and sailing ships.")
for coefficient in mode.pick(full=[0.0, 1.0, 2.0], smoke=[1.0]):
    text = steered_generate(model, "My favourite place is", vector, hook_name=nla.hook_name,
                            coefficient=coefficient, max_new_tokens=mode.pick(full=20, smoke=4))
    print(f"coefficient {coefficient}: {text!r}")
"""),
        md("""
## Remote: the same calls on NDIF

With an NDIF API key (https://login.ndif.us) the same extraction runs on a hosted model. The
cell below is guarded by `USE_NDIF` and does nothing unless you set it to `True` (it needs
internet and a key; CI runs offline). Loading a model by name also needs the Hugging Face hub:
change the first cell to `.setup(offline=False)` and restart the kernel. Use an NLA trained for
that model and hook; the shipped one only fits SmolLM2.
"""),
        code("""
USE_NDIF = False  # set True (with internet and an NDIF key) to run remotely

if USE_NDIF:
    from nnsight import CONFIG

    CONFIG.set_default_api_key(os.environ["NDIF_API_KEY"])
    remote_model = nla_lens.load_subject("meta-llama/Llama-3.1-8B", backend="nnsight")
    remote_acts = nla_lens.extract_activations(remote_model, docs, layer=20, remote=True, positions_per_doc=2)
    display(remote_acts)
else:
    print("NDIF disabled: set USE_NDIF = True to extract activations remotely.")
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def steering() -> list:
    cells = intro(
        "Steering from explanations",
        15,
        """
An NLA's reconstructor turns **words into a residual-stream direction**. That makes explanations
editable handles: take what the NLA says about a token, edit the words, let the AR turn the
edited text into a vector, and add it to the subject while it generates. If the model's output
moves toward the edited content, and a random vector of the same norm does not move it, the AR
has learned a direction the subject itself uses.

This notebook uses `nla_lens.analysis.steer`, which runs each prompt three ways (no steering,
the explanation's vector, a random vector of equal norm) and measures the log-probability of the
explanation's topic words along each continuation.
""",
    )
    cells += [
        code("""
from nla_lens.analysis import steer, steering_sweep

bridge = nla_lens.load_subject("smollm2-135m")
nla = NLA.from_pretrained("smollm2-135m-L20")
MAX_NEW = mode.pick(full=24, smoke=4)
"""),
        md("## What the NLA says about a token"),
        code("""
text = "The sailors pulled the boat onto the beach as the waves grew higher."
explained = nla.explain(text=text, subject=bridge, positions=[8], max_new_tokens=mode.pick(full=96, smoke=12),
                        progress=False, warn=False)
original = explained["explanation"].iloc[0] or "The text is about sailors, a boat and waves."
print(original)
"""),
        md("""
## Steer with the explanation, and with an edited one

We keep the format and swap the topic: the edited explanation talks about a kitchen instead of
the sea. Each is scored on its own topic words (passing `topic_words` explicitly; by default
`steer` uses the explanation's content words).
"""),
        code("""
prompts = mode.pick(full=["My favourite place is", "Yesterday I went to", "The story begins in"],
                    smoke=["My favourite place is"])
edited = "Recent context: the cook stirred the soup in the kitchen. Likely next: pot, stove, bread."
SEA = ["sea", "boat", "waves", "beach", "sailors", "ship"]
KITCHEN = ["kitchen", "soup", "cook", "bread", "pot", "stove"]
results = {
    "original explanation (sea words)": steer(nla, bridge, prompts, original, topic_words=SEA,
                                              max_new_tokens=MAX_NEW, progress=False),
    "edited explanation (kitchen words)": steer(nla, bridge, prompts, edited, topic_words=KITCHEN,
                                                max_new_tokens=MAX_NEW, progress=False),
}
summary = pd.DataFrame({name: r.summary for name, r in results.items()}).T
summary[["topic_logprob_none", "topic_logprob_explanation", "topic_logprob_random", "gain_vs_none", "gain_vs_random"]]
"""),
        code("""
results["edited explanation (kitchen words)"].frame[["prompt", "condition", "continuation", "topic_logprob"]]
"""),
        md("""
## How strong a push? A coefficient sweep

`steering_sweep` runs the same experiment at several strengths (the unsteered text is generated
once) and puts the **fluency** of the steered text beside each gain: `logprob_drop`, how many
nats/token less likely the *unsteered* subject finds the steered text than its own, and
`repetition_explanation`, the fraction of repeated token trigrams. A row is `fluent` when the drop
is at most 1.5 nats/token and the repetition at most 0.5; `steer` warns (`FluencyWarning`) when
its text is not. A large push raises the topic words while turning the text into ", of, of, of":
read the gains only where the text is still fluent.
"""),
        code("""
from nla_lens.analysis.fluency import MAX_LOGPROB_DROP

coefficients = mode.pick(full=[0.1, 0.2, 0.3, 0.5, 1.0, 2.0], smoke=[0.3, 2.0])
sweep = steering_sweep(nla, bridge, prompts, edited, coefficients=coefficients, topic_words=KITCHEN,
                       max_new_tokens=MAX_NEW, progress=False)

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
ax.plot(sweep["coefficient"], sweep["gain_vs_none"], marker="o", label="vs none")
ax.plot(sweep["coefficient"], sweep["gain_vs_random"], marker="s", label="vs random")
ax.axhline(0, color="black", lw=0.8)
ax.set(xscale="log", xlabel="coefficient (1 = one typical activation norm)",
       ylabel="gain in topic log-prob (nats)", title="Pull toward the edited explanation")
ax.legend()
ax2.plot(sweep["coefficient"], sweep["logprob_drop"], marker="o", label="explanation vector")
ax2.plot(sweep["coefficient"], sweep["logprob_drop_random"], marker="s", label="random vector")
ax2.axhline(MAX_LOGPROB_DROP, color="tab:red", ls="--", lw=0.8, label="not fluent above")
ax2.set(xscale="log", xlabel="coefficient", ylabel="nats/token below the unsteered text",
        title="Fluency lost")
ax2.legend()
plt.tight_layout()
plt.show()
sweep[["coefficient", "gain_vs_none", "gain_vs_random", "logprob_drop", "repetition_explanation", "fluent",
       "example"]]
"""),
        md("""
**Reading it.** A gain over the random vector at a coefficient where the text is still `fluent`
says the AR's direction is one the subject reads. A gain only where `fluent` is False says
nothing: the vector broke the text, and the topic words' log-probability moved with everything
else. No fluent gain means the AR has learned to reconstruct *targets* without learning the
subject's own directions for those words: an honest negative result for a small NLA.
"""),
    ]
    return cells


# ---------------------------------------------------------------------------------------------
def released_nla_on_a_gpu() -> list:
    cells = intro(
        "A released NLA on a GPU",
        20,
        """
The paper's authors released NLAs for Qwen2.5-7B, Gemma-3-12B/27B and Llama-3.3-70B. This
notebook picks one from nla_lens's registry, loads the subject and the NLA onto the GPU with
`dtype` and `device_map`, explains a prompt, puts the explanations beside an SAE at the same hook,
and runs the faithfulness report.

Running a released pair needs a GPU, the Hugging Face hub and, for Gemma and Llama, an accepted
licence. The cell that loads them is guarded by `USE_RELEASED = False`: until you set it, the
notebook builds an **offline stand-in**, a tiny random pair of the same architecture written in
the published layout into a local hub cache, and runs the same calls on it. The numbers then mean
nothing; the code path is the one a GPU run takes.
""",
    )
    cells += [
        md("""
## The registry

`nla_lens.list_pretrained()` lists every NLA that `NLA.from_pretrained(name)` knows: where its
two halves live, the subject model and hook it explains, and whether the hub asks for a licence.
"""),
        code("""
nla_lens.list_pretrained()[["av", "ar", "subject_model", "hook_name", "d_model", "gated"]]
"""),
        md("""
## Load the subject and the NLA

`device_map="auto"` lets accelerate place the weights on the GPU (several GPUs for the 70B), in
`dtype`, without building the model in CPU memory first; the AR loads only the blocks it keeps.
Set `USE_RELEASED = True` (and `mode.setup(offline=False)` in the first cell, then restart) on a
machine with a GPU and the hub.
"""),
        code("""
USE_RELEASED = False  # True: a real released pair (GPU, hub, licence); False: the offline stand-in
NAME = "qwen2.5-7b-L20"  # any name of the table above

if USE_RELEASED:
    entry = nla_lens.list_pretrained().loc[NAME]
    subject = nla_lens.load_subject(entry.subject_model, dtype=torch.bfloat16, device_map="auto")
    nla = NLA.from_pretrained(NAME, dtype=torch.bfloat16, device_map="auto")
else:
    import tempfile

    from nla_lens.testing.models import tiny_subject
    from nla_lens.testing.released import stand_in_for_release

    cache = tempfile.mkdtemp(prefix="hub-")
    NAME = stand_in_for_release("qwen2", cache)  # same architecture as Qwen2.5, random weights
    nla = NLA.from_pretrained(NAME, cache_dir=cache)
    subject = tiny_subject(nla.av.tokenizer, n_layers=2, d_model=nla.d_model)
nla
"""),
        md("""
## Explain a prompt

Each token's vector at the NLA's hook is explained by the AV and rebuilt by the AR from the
words alone; `mse` is the normalised reconstruction error (0 is perfect, 2 is orthogonal).
"""),
        code("""
prompt = "The old sailor tied the rope to the mast before the storm"
frame = nla.round_trip(text=prompt, subject=subject, max_new_tokens=mode.pick(full=150, smoke=8),
                       progress=False, warn=False)
frame[["position", "token", "explanation", "mse", "cosine"]]
"""),
        md("""
## Beside an SAE at the same hook

With SAELens (TransformerLens 3.9) load an SAE trained at `nla.hook_name`, e.g.
`sae_lens.SAE.from_pretrained(release, sae_id)`. Any object with `encode`, `W_dec`, `cfg.d_in`
and `cfg.hook_name` works too (`nla_lens.sae`); the stand-in uses a random one of that interface.
"""),
        code("""
from nla_lens.analysis import side_by_side
from nla_lens.testing import TinySAE

sae = TinySAE(nla.d_model, 64, 4, nla.hook_name)  # replace with your SAE at nla.hook_name
view = side_by_side(nla, subject, prompt, sae=sae, positions=[3, 6], max_new_tokens=mode.pick(full=150, smoke=8),
                    progress=False, warn=False)
view
"""),
        md("""
## Faithfulness on held-out text

Activations of a few documents at the NLA's hook, then every check of the faithfulness report
(fve_nrm beside its controls, paraphrase, ablation, grounding, the context oracle).
"""),
        code("""
from nla_lens.analysis import faithfulness_report

docs = nla_lens.load_corpus(max_documents=mode.pick(full=60, smoke=4))
held = nla_lens.extract_activations(subject, docs, nla.hook_name, positions_per_doc=2,
                                    max_length=mode.pick(full=256, smoke=64), splits={"eval": 1.0}, progress=False)
report = faithfulness_report(nla, held, n=mode.pick(full=64, smoke=4), n_random=mode.pick(full=16, smoke=2),
                             max_new_tokens=mode.pick(full=150, smoke=8), progress=False)
pd.Series(report.summary)
"""),
        md("""
**On a GPU:** set `USE_RELEASED = True`; the 7B pair needs about 2 × 16 GB in bfloat16, the 70B
pair several GPUs (`device_map="auto"` spreads it). `nla-lens export` writes any NLA nla_lens
trained in this same published layout.
"""),
    ]
    return cells


def across_architectures() -> list:
    cells = intro(
        "NLAs across architectures: must the NLA share its subject's architecture?",
        5,
        """
The paper starts both halves of an NLA, the verbalizer (AV) and the reconstructor (AR), from the
subject model itself, and never tries another LM. So: **does an NLA need its subject's
architecture?** Perhaps an LM reads another model's activations as easily as its own once a
learned map fits the widths; perhaps sharing the subject's weights is what makes the injected
vector legible at all.

nla_lens answers it with a 2 × 2 on a laptop: subjects {SmolLM2-135M at layer 20, Gemma-3-270M at
layer 12, both about 70 % deep} × NLA bases {SmolLM2-135M, Gemma-3-270M}, every cell trained by the
same reduced recipe from the same activations and teacher texts of its subject
(`python scripts/cross_architecture.py`, hours on a CPU; its rows are kept in
`results/cross_architecture/rows.json`). This notebook looks at one cross-architecture NLA up
close, then reads the kept table. Needs `nla_lens[gemma]` (Gemma Terms of Use).
""",
    )
    cells += [
        md("""
## Predict first

Write down, before you read on: which cell reads its subject best? Does a Gemma NLA reading
SmolLM2 do worse than SmolLM2 reading itself, and by how much? Is the answer the same for both
subjects? What would it mean if the *bigger* base won off the diagonal?
"""),
        md("""
## One cross-architecture NLA, untrained

`NLA.untrained(subject, layer, av_base=..., ar_base=...)` starts both halves from another LM. The
subject's vectors are 576 wide (SmolLM2) and Gemma's embeddings 640: the AV gets a learned input
map from the subject's width to its own, and the AR a head from its width back to the subject's.
Both start semi-orthogonal (norms and angles kept) and train with the adapters.
"""),
        code("""
from nla_lens.training.cross_architecture import BUDGET, cell_recipe
from nla_lens.training.recipe import injection_scale_for

subject = nla_lens.load_subject("smollm2-135m")
# The norm the AV injects at: Gemma's own median residual norm at the same relative depth (the recipe's rule).
scale = injection_scale_for(cell_recipe("smollm2-135m", "gemma3-270m", seed=0, budget=BUDGET))
cross = NLA.untrained("smollm2-135m", layer=20, av_base="gemma3-270m", ar_base="gemma3-270m", injection_scale=scale)
pd.Series({
    "subject width (d_model)": cross.d_model,
    "AV width (Gemma)": cross.av.cfg.lm_d_model,
    "AV input map (in, out)": tuple(cross.av.input_map.weight.shape[::-1]),
    "AR width (Gemma)": cross.ar.cfg.lm_d_model,
    "AR blocks kept (of Gemma's 18)": cross.ar.cfg.kept_blocks,
    "injection scale (Gemma's own residual norm)": round(cross.av.cfg.injection_scale, 1),
})
"""),
        md("""
The mapped vector is injected at Gemma's own residual norm at the same relative depth (thousands),
not SmolLM2's (about 240): each LM reads a vector at the size its own layers produce. Untrained,
the round trip is noise; the point is the path a SmolLM2 vector takes through Gemma.
"""),
        code("""
frame = cross.round_trip(text="The cat sat on the mat.", subject=subject, positions=[3],
                         max_new_tokens=mode.pick(full=32, smoke=6), progress=False, warn=False)
frame[["token", "explanation", "mse", "cosine"]]
"""),
        md("""
## The 2 × 2

Each row is one trained cell: held-out fve_nrm on its subject's eval split beside the controls
that say what the words add (shuffled pairing, predict-the-mean, the current-token baseline: an AR
that only knows which token it is), `over_current_token` (fve_nrm minus that baseline), paraphrase
retention, explanation length, readability (perplexity under the embedded SmolLM2, one judge for
every cell) and CPU minutes. `fve_nrm_low`/`fve_nrm_high` are a 90 % bootstrap interval over the
held-out vectors; with two seeds, `fve_nrm_spread` is the spread across them.
"""),
        code("""
import json
from pathlib import Path

from nla_lens.training.cross_architecture import BASES, SUBJECT_LAYERS, cross_architecture_table

kept = Path("../results/cross_architecture/rows.json")
rows = json.loads(kept.read_text())
table = cross_architecture_table(rows)
missing = [(s, b) for s in SUBJECT_LAYERS for b in BASES if not ((table["subject"] == s) & (table["base"] == b)).any()]
print(f"{len(table)} of 4 cells measured" + (f"; still to run: {missing}" if missing else ""))
columns = ["subject", "base", "same_architecture", "fve_nrm", "fve_nrm_low", "fve_nrm_high", "current_token_control",
           "over_current_token", "fve_nrm_shuffled", "paraphrase_retention", "words", "perplexity", "cpu_minutes", "seeds"]
table[[c for c in columns if c in table.columns]].round(3)
"""),
        md("""
The same numbers as a picture: each bar is a cell's fve_nrm with its bootstrap interval, the
black tick its current-token baseline. A bar that does not clear its tick says the words carry
little beyond the token's identity.
"""),
        code("""
fig, ax = plt.subplots(figsize=(7, 3.2))
labels = [f"{s} read by\\n{b}" for s, b in zip(table["subject"], table["base"])]
colours = ["tab:blue" if same else "tab:orange" for same in table["same_architecture"]]
err = [table["fve_nrm"] - table.get("fve_nrm_low", table["fve_nrm"]), table.get("fve_nrm_high", table["fve_nrm"]) - table["fve_nrm"]]
ax.bar(labels, table["fve_nrm"], yerr=err, color=colours, capsize=4)
ax.scatter(labels, table["current_token_control"], marker="_", s=900, color="black", zorder=3, label="current-token baseline")
ax.axhline(0, color="grey", lw=0.8)
ax.set_ylabel("held-out fve_nrm")
ax.set_title("blue: same architecture, orange: across architectures")
ax.legend(loc="lower right", fontsize=8)
plt.tight_layout()
"""),
        md("""
## Reading it

Compare within a subject, never across: the two subjects' vectors differ in how predictable they
are, and so do their current-token baselines. For each subject, the question is whether the
off-diagonal cell's `over_current_token` falls below the diagonal one's by more than the intervals
allow. The README states what the measured cells say and the size of the budget they were trained
on (a reduced recipe: conclusions are about NLAs trained that briefly).

## Run a cell yourself

`run_cell` trains (or resumes, or reads) one cell into a run folder and scores it. The smoke
budget below takes minutes and its numbers mean nothing; `BUDGET` is the experiment's (about an
hour per cell on 2 CPU cores). Guarded, because it trains.
"""),
        code("""
RUN_CELL = False  # True: train one cell (smoke budget: minutes; BUDGET: about an hour)

if RUN_CELL:
    from nla_lens.training.cross_architecture import SMOKE, run_cell

    row = run_cell("runs/cross-notebook", "smollm2-135m", "gemma3-270m", seed=0, budget=SMOKE)
    display(pd.Series(row))
"""),
    ]
    return cells


NOTEBOOKS = {
    "01_explorer_and_layer_sweep": explorer_and_layer_sweep,
    "02_nla_vs_sae_over_a_corpus": nla_vs_sae,
    "03_nnsight_backend": nnsight_backend,
    "04_steering_from_explanations": steering,
    "05_a_released_nla_on_a_gpu": released_nla_on_a_gpu,
    "06_nlas_across_architectures": across_architectures,
}


def main() -> None:
    build_all(NOTEBOOKS, HERE)


if __name__ == "__main__":
    main()
