"""``spokenlm phone-units``: gold 50 Hz phone labels as units (``.km``), for the phoneme-LM topline.

Each ``.phn`` line (one phone per 50 Hz frame) becomes a ``.km`` line of the same length whose unit
``c`` is the ``c``-th phone of ``dict.phn.txt`` (``SIL`` included: it is what the speech units
see too). Written in the format of ``spokenlm kmeans assign`` (``--dedup`` adds ``X.dedup.km`` and
``X.dur``), so ``spokenlm lm-data --vocab-size <phones in the dictionary>``, ``fairseq-train`` and
``spokenlm lm-score`` train and score an LM on gold phones exactly as on k-means units: the
paper's phoneme topline. Give every split (train / valid / test) and every pair set the same
dictionary, so that unit ``c`` is the same phone everywhere.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import ConfigError, DictionaryError, FeatureError
from ..core.io import read_lines
from ..core.km import dedup_paths, write_km
from .quality import read_phone_dict


def phone_units(labels: str | os.PathLike, phones: Sequence[str]) -> list[np.ndarray]:
    """Unit ids (indices into ``phones``) of every frame of every line of a ``.phn`` file."""
    index = {p: i for i, p in enumerate(phones)}
    rows = []
    for lineno, line in enumerate(read_lines(labels), start=1):
        try:
            rows.append(np.fromiter((index[p] for p in line.split()), dtype=np.int64))
        except KeyError as e:
            raise DictionaryError(
                f"{labels}:{lineno}: phone {e.args[0]!r} is not in the phone dictionary; "
                "use the dict.phn.txt the labels were made with"
            ) from None
    if not rows:
        raise FeatureError(f"{labels}: no utterance (empty file); give the .phn written by 'spokenlm labels'")
    return rows


def write_phone_units(
    labels: str | os.PathLike, dict_path: str | os.PathLike, out: str | os.PathLike, *, dedup: bool = False
) -> int:
    """Write ``out`` (``.km``) from the frame labels ``labels``; return the number of lines."""
    return write_km(out, phone_units(labels, read_phone_dict(dict_path)), dedup=dedup)


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", required=True, nargs="+", type=Path,
                        help="50 Hz frame label files X.phn (one line per utterance); each gives OUT_DIR/X.km")
    parser.add_argument("--dict", required=True, type=Path,
                        help="phone dictionary dict.phn.txt: unit c = its c-th phone (use the same for every set)")
    parser.add_argument("--out-dir", required=True, type=Path, help="output folder of the .km files")
    parser.add_argument("--dedup", action="store_true",
                        help="also write X.dedup.km (runs collapsed: the phone sequence) and X.dur")


def run(args: argparse.Namespace) -> int:
    stems = [p.name.removesuffix(".phn") for p in args.labels]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"--labels: two files share a name ({', '.join(stems)}); their .km would collide")
    k = len(read_phone_dict(args.dict))
    for labels in args.labels:  # every input before the first output: a failed run writes nothing
        read_lines(labels)
    for labels, stem in zip(args.labels, stems):
        out = args.out_dir / f"{stem}.km"
        n = write_phone_units(labels, args.dict, out, dedup=args.dedup)
        extra = " (+ {}, {})".format(*(p.name for p in dedup_paths(out))) if args.dedup else ""
        print(f"{out}: gold-phone units of {n} utterances{extra}")
    print(f"vocabulary: {k} phones of {args.dict} (spokenlm lm-data --vocab-size {k})")
    return 0
