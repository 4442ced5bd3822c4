"""``spokenlm sutlm-data``: paired units + transcripts + a text-only corpus -> binarized joint-LM subsets.

Reads a corpus in ``spokenlm synth-corpus`` layout (``manifests/``, ``transcripts/``, ``alignments/``;
or MFA TextGrids with a ``words`` tier instead of ``alignments/``, transcripts then optional) and its
units (``UNITS/{split}.km``, 50 Hz, from ``spokenlm kmeans assign``), deduplicates the units
and maps each word onto unit positions (:mod:`.align`), trains a text SentencePiece model and a unit
SentencePiece model per requested vocabulary size (0 = none: one token per unit; :mod:`.tokens`),
renders the sequence kinds (:mod:`.sequences`) and binarizes them with the real
``fairseq-preprocess`` and one fixed joint dictionary per unit vocabulary. Layout of ``OUT``::

    text.model, text.vocab              text SentencePiece (trained on the text-only corpus + train transcripts)
    text_corpus.txt                     the text-only corpus (one sentence of words per line)
    aligned/{split}.jsonl               {"utt_id", "words", "units" (deduplicated), "cuts"} per utterance
    units-raw/ | units-sp{N}/           one joint-LM data folder per unit vocabulary (fairseq-train DATA):
        dict.txt                        [SPEECH] [TEXT], unit tokens, text pieces (fixed order)
        unit.model                      unit SentencePiece (units-sp{N} only)
        {split}_{kind}.bin/.idx         kind in speech, text, cst, tsc, ast (train_text = text corpus)
    textlm/dict.txt, train.bin, valid.bin   the external text LM's data (text corpus; valid transcripts)
    sutlm-data.json                     what was built (written last)

The text-only corpus is WordNet 3.0's example sentences (:mod:`spokenlm_plugin.synth.text`) minus every
sentence of the corpus' transcripts (any split) and of the aligned utterances, so neither LM ever reads an evaluation transcript as
text-only data. Everything is built in a temporary folder beside ``OUT`` and moved into place at the
end: a refused input leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

from ..core.errors import ConfigError, ManifestError
from ..core.io import atomic_write, read_lines
from ..ulm.data import binarize
from .align import AlignedUtterance, WordAlignments, WordFormat, load_split
from .sequences import KINDS, AstConfig, Renderer, render
from .tokens import MARKERS, MAX_UNITS, Tokenizer, train_sentencepiece, unit_char, units_to_string

logger = logging.getLogger(__name__)
META_NAME = "sutlm-data.json"


@dataclass(frozen=True)
class DataConfig:
    """Options of ``spokenlm sutlm-data``."""

    splits: tuple[str, ...] = field(default=("train", "valid", "test"),
                                    metadata={"help": "splits; the first trains the SentencePiece models"})
    vocab_size: int | None = field(default=None, metadata={"help": "K, the k-means' number of units"})
    unit_vocab_sizes: tuple[int, ...] = field(default=(0, 1000), metadata={"help": "unit SentencePiece sizes (0: none)"})
    text_vocab_size: int = field(default=1000, metadata={"help": "text SentencePiece vocabulary size"})
    text_max_sentences: int | None = field(default=None, metadata={"help": "cap on the text-only corpus"})
    ast: AstConfig = field(default_factory=AstConfig, metadata={"help": "AST span options"})
    seed: int = field(default=0, metadata={"help": "seed (text corpus order, SentencePiece)"})


def variant_name(unit_vocab_size: int) -> str:
    return "units-raw" if unit_vocab_size == 0 else f"units-sp{unit_vocab_size}"


def text_corpus(*, corpus: Path, text_file: Path | None, max_sentences: int | None, seed: int,
                exclude: Iterable[Sequence[str]] = ()) -> list[list[str]]:
    """The text-only corpus: ``text_file`` (one sentence per line); else a story corpus's own
    ``text_only.txt`` (the same world, no sentence of its speech); else WordNet examples not in the
    corpus (its ``transcripts/*.wrd``, and ``exclude``: the aligned utterances' words, transcripts or not)."""
    if text_file is None and (corpus / "text_only.txt").is_file():
        text_file = corpus / "text_only.txt"
    if text_file is not None:
        rows = [line.lower().split() for line in read_lines(text_file) if line.split()]
    else:
        from ..synth.text import load_sentences

        used = {tuple(line.split()) for wrd in sorted((corpus / "transcripts").glob("*.wrd"))
                for line in read_lines(wrd) if line.split()} | {tuple(ws) for ws in exclude}
        rows = [list(s.words) for s in load_sentences() if tuple(s.words) not in used]
        random.Random(seed).shuffle(rows)
    if max_sentences is not None:
        rows = rows[:max_sentences]
    if not rows:
        raise ManifestError(f"{text_file or 'WordNet'}: the text-only corpus is empty")
    return rows


def write_aligned(path: Path, utts: Sequence[AlignedUtterance]) -> None:
    with atomic_write(path) as f:
        for u in utts:
            f.write(json.dumps({"utt_id": u.utt_id, "words": list(u.words), "units": list(u.units),
                                "cuts": list(u.cuts)}) + "\n")


def read_aligned(path: str | os.PathLike) -> list[AlignedUtterance]:
    """Utterances of an ``aligned/{split}.jsonl`` written by :func:`write_aligned`."""
    out = []
    for lineno, line in enumerate(read_lines(path), start=1):
        try:
            d = json.loads(line)
            out.append(AlignedUtterance(d["utt_id"], tuple(d["words"]), tuple(d["units"]), tuple(d["cuts"])))
        except (ValueError, KeyError, TypeError):
            raise ManifestError(f"{path}:{lineno}: not an aligned-utterance record; rebuild with 'spokenlm sutlm-data'") from None
    return out


def joint_dictionary(unit_tokens: Sequence[str], text_tokens: Sequence[str], counts: Counter) -> list[tuple[str, int]]:
    """Markers, unit tokens, text pieces: a fixed order, so an index never depends on frequencies."""
    seen: set[str] = set()
    out = []
    for tok in [*MARKERS, *unit_tokens, *text_tokens]:
        if tok not in seen:
            seen.add(tok)
            out.append((tok, counts.get(tok, 0)))
    return out


def binarize_tokens(rows: dict[str, list[list[str]]], out: Path, *, dictionary: Sequence[tuple[str, int]]) -> None:
    """``out/dict.txt`` (``dictionary``, in order) and ``out/{subset}.bin/.idx`` with the real fairseq-preprocess."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dict.", dir=out) as d:
        path = Path(d) / "dict.txt"
        path.write_text("".join(f"{tok} {n}\n" for tok, n in dictionary))
        binarize(rows, out, vocab_size=len(dictionary), srcdict=path)


def _sequences(utts: dict[str, list[AlignedUtterance]], text_rows: list[list[str]], renderer: Renderer,
               *, splits: Sequence[str], ast: AstConfig, units_dir: Path) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for split in splits:
        where = str(units_dir / f"{split}.km")
        for kind in KINDS:
            rows: list[list[str]] = []
            if kind == "text" and split == splits[0]:
                rows = [render([("text", renderer.text.encode_words(ws, where="text corpus"))]) for ws in text_rows]
            elif kind == "ast":
                n = ast.per_utterance if split == splits[0] else 1
                rows = [renderer.kind(u, "ast", ast=ast, index=i, where=f"{where}:{j + 1}")
                        for j, u in enumerate(utts[split]) for i in range(n)]
            else:
                rows = [renderer.kind(u, kind, where=f"{where}:{j + 1}") for j, u in enumerate(utts[split])]
            out[f"{split}_{kind}"] = [r for r in rows if r]
    return out


def build(corpus: str | os.PathLike, units_dir: str | os.PathLike, out: str | os.PathLike, *,
          cfg: DataConfig = DataConfig(), text_file: str | os.PathLike | None = None, workers: int = 1,
          alignments: str | os.PathLike | None = None, alignment_format: WordFormat = "json") -> dict:
    """Build ``out`` (see the module docstring); return the metadata written to ``out/sutlm-data.json``.

    Word alignments: ``alignments`` (default ``corpus/alignments``) in ``alignment_format``: corpus
    JSONs, or MFA TextGrids whose ``words`` tier is also the transcript where ``transcripts/`` lacks one."""
    corpus, units_dir, out = Path(corpus), Path(units_dir), Path(out)
    cfg.ast.check()
    if not cfg.splits or len(set(cfg.splits)) != len(cfg.splits):
        raise ConfigError(f"--splits {' '.join(cfg.splits)}: give distinct split names, the training split first")
    if any(v < 0 for v in cfg.unit_vocab_sizes) or len(set(cfg.unit_vocab_sizes)) != len(cfg.unit_vocab_sizes):
        raise ConfigError(f"--unit-vocab-sizes {cfg.unit_vocab_sizes}: distinct sizes >= 0 (0: no SentencePiece)")
    if cfg.vocab_size is not None and not 1 <= cfg.vocab_size <= MAX_UNITS:
        raise ConfigError(f"--vocab-size {cfg.vocab_size}: must be within 1..{MAX_UNITS}")
    if cfg.text_max_sentences is not None and cfg.text_max_sentences < 1:
        raise ConfigError(f"--text-max-sentences {cfg.text_max_sentences}: must be >= 1 (the text-only share needs text)")
    if out.exists() and any(out.iterdir()) and not (out / META_NAME).is_file():
        raise ConfigError(f"{out}: exists and was not made by 'spokenlm sutlm-data'; give a new or empty folder")
    # 1. read and check everything before anything is written
    words = WordAlignments(corpus / "alignments" if alignments is None else alignments, alignment_format)
    utts = {s: load_split(corpus=corpus, units_dir=units_dir, split=s, vocab_size=cfg.vocab_size, alignments=words)
            for s in cfg.splits}
    k = cfg.vocab_size or 1 + max(u for us in utts.values() for x in us for u in x.units)
    text_rows = text_corpus(corpus=corpus, text_file=Path(text_file) if text_file else None,
                            max_sentences=cfg.text_max_sentences, seed=cfg.seed,
                            exclude=[u.words for us in utts.values() for u in us])
    train = utts[cfg.splits[0]]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        meta = _build_into(tmp, utts=utts, train=train, text_rows=text_rows, k=k, cfg=cfg, units_dir=units_dir,
                           corpus=corpus, workers=workers, alignments=words)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _build_into(tmp: Path, *, utts: dict[str, list[AlignedUtterance]], train: list[AlignedUtterance],
                text_rows: list[list[str]], k: int, cfg: DataConfig, units_dir: Path, corpus: Path,
                workers: int, alignments: WordAlignments) -> dict:
    for split, us in utts.items():
        write_aligned(tmp / "aligned" / f"{split}.jsonl", us)
    (tmp / "text_corpus.txt").write_text("".join(" ".join(ws) + "\n" for ws in text_rows))
    text_model = train_sentencepiece([" ".join(ws) for ws in text_rows] + [" ".join(u.words) for u in train],
                                     tmp / "text", vocab_size=cfg.text_vocab_size, kind="text")
    text_tok = Tokenizer(text_model, kind="text")
    jobs: dict[str, tuple[dict[str, list[list[str]]], list[tuple[str, int]]]] = {}
    meta_variants = {}
    for size in cfg.unit_vocab_sizes:
        name = variant_name(size)
        if size:
            # one line of every unit 0..K-1: each stays encodable even if absent from train (as raw units)
            model = train_sentencepiece([units_to_string(u.units) for u in train] + [units_to_string(range(k))],
                                        tmp / name / "unit",
                                        vocab_size=size, kind="units")
            (tmp / name / "unit.vocab").unlink(missing_ok=True)
            unit_tok = Tokenizer(model, kind="units")
            unit_tokens = unit_tok.pieces()
        else:
            unit_tok = Tokenizer(None, kind="units")
            unit_tokens = [unit_char(u) for u in range(k)]
        seqs = _sequences(utts, text_rows, Renderer(units=unit_tok, text=text_tok), splits=cfg.splits,
                          ast=cfg.ast, units_dir=units_dir)
        counts = Counter(t for name_, rows in seqs.items() if name_.startswith(f"{cfg.splits[0]}_")
                         for r in rows for t in r)
        jobs[name] = (seqs, joint_dictionary(unit_tokens, text_tok.pieces(), counts))
        meta_variants[name] = {
            "unit_vocab_size": size, "unit_tokens": len(unit_tokens), "dictionary": len(jobs[name][1]),
            "subsets": {s: {"sequences": len(r), "tokens": sum(map(len, r))} for s, r in seqs.items()},
        }
    # the external text LM: text pieces only
    text_dict = [(t, 0) for t in text_tok.pieces()]
    valid = cfg.splits[1] if len(cfg.splits) > 1 else cfg.splits[0]
    textlm = {"train": [text_tok.encode_words(ws) for ws in text_rows],
              "valid": [text_tok.encode_words(u.words) for u in utts[valid]]}
    jobs["textlm"] = (textlm, text_dict)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(lambda item: binarize_tokens(item[1][0], tmp / item[0], dictionary=item[1][1]), jobs.items()))
    meta = {
        "corpus": str(corpus.resolve()), "units_dir": str(units_dir.resolve()), "vocab_size": k,
        "alignments": {"path": str(alignments.path.resolve()), "format": alignments.fmt},
        "config": {**asdict(cfg), "splits": list(cfg.splits), "unit_vocab_sizes": list(cfg.unit_vocab_sizes)},
        "utterances": {s: len(us) for s, us in utts.items()}, "text_corpus_sentences": len(text_rows),
        "text_vocab": len(text_dict), "variants": meta_variants,
    }
    with atomic_write(tmp / META_NAME) as f:
        json.dump(meta, f, indent=1)
    return meta


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    help_of = {f.name: f.metadata["help"] for f in fields(AstConfig)}
    parser.add_argument("--corpus", type=Path, required=True,
                        help="corpus folder (manifests/, transcripts/, alignments/ as written by synth-corpus)")
    parser.add_argument("--alignments", type=Path, default=None,
                        help="word alignments (default CORPUS/alignments): <utt_id>.json, or MFA <utt_id>.TextGrid "
                             "files at any depth with --format textgrid")
    parser.add_argument("--format", choices=["json", "textgrid"], default="json",
                        help="json: corpus alignments (default); textgrid: MFA 'words' tier, which is also the "
                             "transcript of a split without CORPUS/transcripts/{split}.wrd")
    parser.add_argument("--units-dir", type=Path, required=True, help="folder with {split}.km (50 Hz, kmeans assign)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (see the module docstring)")
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"],
                        help="splits (default train valid test); the first trains the models")
    parser.add_argument("--vocab-size", type=int, default=None, help="K, the k-means' units (default: 1 + largest seen)")
    parser.add_argument("--unit-vocab-sizes", type=int, nargs="+", default=[0, 1000],
                        help="unit SentencePiece vocabulary sizes, 0 = none (default 0 1000); one folder each")
    parser.add_argument("--text-vocab-size", type=int, default=1000, help="text SentencePiece size (default 1000)")
    parser.add_argument("--text-corpus", type=Path, default=None,
                        help="text-only corpus file (default: WordNet example sentences not in the corpus)")
    parser.add_argument("--text-max-sentences", type=int, default=None, help="use at most this many text sentences")
    parser.add_argument("--ast-min-span", type=int, default=AstConfig.min_span, help=help_of["min_span"] + " (default 2)")
    parser.add_argument("--ast-max-span", type=int, default=AstConfig.max_span, help=help_of["max_span"] + " (default 5)")
    parser.add_argument("--ast-switch-prob", type=float, default=AstConfig.switch_prob,
                        help=help_of["switch_prob"] + " (default 1.0)")
    parser.add_argument("--ast-per-utterance", type=int, default=AstConfig.per_utterance,
                        help=help_of["per_utterance"] + " (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel fairseq-preprocess runs (default 1)")


def run(args: argparse.Namespace) -> int:
    cfg = DataConfig(
        splits=tuple(args.splits), vocab_size=args.vocab_size, unit_vocab_sizes=tuple(args.unit_vocab_sizes),
        text_vocab_size=args.text_vocab_size, text_max_sentences=args.text_max_sentences, seed=args.seed,
        ast=AstConfig(min_span=args.ast_min_span, max_span=args.ast_max_span, switch_prob=args.ast_switch_prob,
                      per_utterance=args.ast_per_utterance, seed=args.seed),
    )
    meta = build(args.corpus, args.units_dir, args.out, cfg=cfg, text_file=args.text_corpus, workers=args.workers,
                 alignments=args.alignments, alignment_format=args.format)
    print(f"utterances {meta['utterances']}; text-only corpus {meta['text_corpus_sentences']} sentences; "
          f"text pieces {meta['text_vocab']}")
    for name, v in meta["variants"].items():
        train = {s.split("_", 1)[1]: x["sequences"] for s, x in v["subsets"].items() if s.startswith(f"{cfg.splits[0]}_")}
        print(f"{args.out / name}: {v['unit_tokens']} unit tokens, dictionary {v['dictionary']}; train sequences {train}")
    return 0
