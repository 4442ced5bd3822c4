"""Units (``.km``) to a fairseq binarized language-modeling dataset with a fixed dictionary.

``fairseq-preprocess`` builds its dictionary from the training text, sorted by frequency and
padded with ``madeupword`` entries, so the index of a unit would depend on the data. Here the
dictionary is written first, listing units ``0 .. K-1`` in order, and handed to the real
``fairseq-preprocess --only-source --srcdict``: unit ``k`` always has index ``k + 4`` (after
fairseq's ``<s> <pad> </s> <unk>``), in every dataset of the same ``K``. That is what lets an LM
trained on one dataset score or continue units of another, and lets row ``k`` of the embedding
table be initialised from centroid ``k`` (:mod:`spokenlm_plugin.ulm.embedding`).

``spokenlm lm-data --units-dir DIR --splits train valid test --out BIN [--vocab-size K] [--dedup]``
reads ``DIR/{split}.km`` and writes ``BIN/dict.txt``, ``BIN/{split}.bin/.idx`` and
``BIN/lm-data.json`` (what was done, written last: a finished run with the same inputs is
skipped).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from ..core.errors import ConfigError, DictionaryError, FeatureError
from ..core.tools import run_tool
from ..core.io import atomic_write
from ..core.km import deduplicate, read_km

logger = logging.getLogger(__name__)

#: fairseq's Dictionary puts these four symbols first: unit k has index k + NUM_SPECIAL.
NUM_SPECIAL = 4
META_NAME = "lm-data.json"


def write_dictionary(path: str | os.PathLike, vocab_size: int, counts: Counter | None = None) -> None:
    """A fairseq ``dict.txt`` listing units ``0 .. vocab_size-1`` in order (``<unit> <count>``)."""
    counts = counts or Counter()
    with atomic_write(path) as f:
        f.writelines(f"{u} {counts.get(u, 0)}\n" for u in range(vocab_size))


def read_dictionary_size(path: str | os.PathLike) -> int:
    """Number of units K of a fairseq unit ``dict.txt``: its integer symbols must be ``0..K-1``.

    Any order is accepted (a dictionary built by plain fairseq-preprocess is sorted by frequency)
    and other symbols (fairseq's ``madeupword`` padding) are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise DictionaryError(f"{path}: dictionary not found; make it with 'spokenlm lm-data'")
    units = sorted(int(s) for s in (line.split()[0] for line in path.read_text().splitlines() if line.strip())
                   if s.isdigit())
    if not units or units != list(range(len(units))):
        raise DictionaryError(f"{path}: not a unit dictionary (its integer symbols must be 0..K-1)")
    return len(units)


def read_split(path: Path, *, vocab_size: int | None) -> list[list[int]]:
    """Utterances of one split's ``.km``, checked: at least one, none empty (fairseq's
    ``language_modeling`` cannot load a 0-byte ``.bin``, and an empty line would be a silent
    empty utterance, which ``lm-score`` and ``vocoder-synth`` refuse)."""
    rows = read_km(path, vocab_size=vocab_size, allow_empty=False)
    if not rows:
        raise FeatureError(f"{path}: empty split (no utterance); give a .km with one line of units per utterance, "
                           "or leave the split out of --splits")
    return rows


def _fingerprint(units_dir: Path, splits: Sequence[str], vocab_size: int | None, dedup: bool) -> dict:
    files = {}
    for split in splits:
        st = (units_dir / f"{split}.km").stat()
        files[split] = {"path": str((units_dir / f"{split}.km").resolve()), "size": st.st_size, "mtime": st.st_mtime}
    return {"files": files, "vocab_size_arg": vocab_size, "dedup": dedup}


def binarize(
    rows: Mapping[str, Sequence[Sequence[int]]] | Mapping[str, Sequence[Sequence[str]]],
    out: str | os.PathLike,
    *,
    vocab_size: int,
    srcdict: str | os.PathLike | None = None,
    workers: int = 1,
) -> None:
    """Write ``out/dict.txt`` and ``out/{split}.bin/.idx`` with the real
    ``fairseq-preprocess --only-source --srcdict`` (units are assumed already checked).

    :param srcdict: the dictionary to use (e.g. a trained LM's); default: a fixed one of units
        ``0..vocab_size-1``.
    """
    out = Path(out)
    counts = Counter(u for rs in rows.values() for r in rs for u in r)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lm-data.", dir=out) as tmp_dir:
        tmp = Path(tmp_dir)
        if srcdict is None:
            write_dictionary(tmp / "dict.txt", vocab_size, counts)
        else:
            shutil.copyfile(srcdict, tmp / "dict.txt")
        prefixes = []
        for i, split in enumerate(rows):
            prefix = tmp / f"split{i}"
            prefix.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows[split]))
            prefixes.append(str(prefix))
        # Every split goes through --validpref (a comma-separated list: fairseq names the outputs
        # valid, valid1, valid2, ...), so any split name works; they are renamed below.
        args = [
            "--only-source", "--srcdict", str(tmp / "dict.txt"),
            "--validpref", ",".join(prefixes), "--destdir", str(tmp / "bin"),
            "--workers", str(max(1, workers)), "--dataset-impl", "mmap",
        ]
        # On failure the log stays as out/preprocess.log, named by the error; on success
        # fairseq's own preprocess.log replaces it below.
        log_path = out / "preprocess.log"
        log_path.unlink(missing_ok=True)
        run_tool("fairseq-preprocess", args, log_path=log_path, log=logger.info)
        for i, split in enumerate(rows):
            name = "valid" if i == 0 else f"valid{i}"
            for ext in (".bin", ".idx"):
                os.replace(tmp / "bin" / f"{name}{ext}", out / f"{split}{ext}")
        os.replace(tmp / "dict.txt", out / "dict.txt")
        os.replace(tmp / "bin" / "preprocess.log", out / "preprocess.log")


def _read_meta(path: Path) -> dict | None:
    """The ``lm-data.json`` of an earlier run, or ``None`` (none, or not one this module wrote: rebuilt)."""
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):  # damaged by hand: the data is rebuilt, not trusted
        return None
    return meta if isinstance(meta, dict) else None


def make_lm_dataset(
    units_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    splits: Sequence[str] = ("train", "valid", "test"),
    vocab_size: int | None = None,
    dedup: bool = False,
    workers: int = 1,
) -> dict:
    """Binarize ``units_dir/{split}.km`` into ``out`` with a fixed dictionary of ``vocab_size`` units.

    :param vocab_size: K (the k-means' number of clusters); ``None``: 1 + the largest unit seen
        (pass K explicitly so that datasets made from different files share one dictionary).
    :param dedup: collapse runs of a repeated unit (the paper's LMs use raw, non-deduplicated units).
    :return: the metadata also written to ``out/lm-data.json``.
    """
    units_dir, out = Path(units_dir), Path(out)
    if not splits:
        raise ConfigError("no split given; pass --splits train valid test")
    if len(set(splits)) != len(splits):
        raise ConfigError(f"--splits {' '.join(splits)}: a split is named twice")
    for split in splits:
        if not (units_dir / f"{split}.km").is_file():
            raise FeatureError(f"{units_dir / f'{split}.km'}: units file not found (split {split!r})")
    if vocab_size is not None and vocab_size < 1:
        raise ConfigError(f"--vocab-size {vocab_size}: must be >= 1")

    fingerprint = _fingerprint(units_dir, splits, vocab_size, dedup)
    meta_path = out / META_NAME
    meta = _read_meta(meta_path)
    if meta is not None and meta.get("fingerprint") == fingerprint and all((out / f"{s}.bin").is_file() for s in splits):
        logger.info("%s: already built from the same units; nothing to do", out)
        return meta

    rows = {split: read_split(units_dir / f"{split}.km", vocab_size=vocab_size) for split in splits}
    if vocab_size is None:
        vocab_size = 1 + max(max(r) for rs in rows.values() for r in rs)  # read_split: no split, no line empty
        logger.warning("--vocab-size not given: using %d (1 + the largest unit seen); pass K explicitly", vocab_size)
    if dedup:
        rows = {split: [deduplicate(r)[0] for r in rs] for split, rs in rows.items()}

    meta_path.unlink(missing_ok=True)  # outputs are about to change: no stale "done" marker
    binarize(rows, out, vocab_size=vocab_size, workers=workers)
    meta = {
        "vocab_size": vocab_size,
        "dedup": dedup,
        "splits": {s: {"utterances": len(rows[s]), "units": sum(map(len, rows[s]))} for s in splits},
        "fingerprint": fingerprint,
    }
    with atomic_write(meta_path) as f:
        json.dump(meta, f, indent=1)
    return meta


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units-dir", type=Path, required=True, help="folder with {split}.km files")
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"],
                        help="splits to binarize: DIR/{split}.km -> BIN/{split}.bin/.idx (default: train valid test)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (the fairseq-train data folder)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="K, the number of k-means units (dictionary 0..K-1); default: 1 + the largest unit seen")
    parser.add_argument("--dedup", action="store_true", help="collapse runs of repeated units (default: keep them)")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers (default 1)")


def run(args: argparse.Namespace) -> int:
    meta = make_lm_dataset(
        args.units_dir, args.out, splits=args.splits, vocab_size=args.vocab_size,
        dedup=args.dedup, workers=args.workers,
    )
    for split, info in meta["splits"].items():
        print(f"{split}: {info['utterances']} utterances, {info['units']} units -> {args.out / split}.bin")
    dedup = " (deduplicated)" if meta["dedup"] else ""
    print(f"dictionary: {meta['vocab_size']} units{dedup} -> {args.out / 'dict.txt'}")
    return 0
