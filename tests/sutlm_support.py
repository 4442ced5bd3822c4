"""A small joint speech-text corpus for the SUTLM tests (tests/test_sutlm*.py): the committed corpus's
manifests, transcripts and alignments with its gold phones as units, and a data config sized for it."""

from __future__ import annotations

import shutil
from pathlib import Path

from spokenlm_plugin.sutlm.data import DataConfig
from spokenlm_plugin.units.phone_units import write_phone_units
from tests.conftest import CORPUS

CFG = DataConfig(vocab_size=40, unit_vocab_sizes=(0, 60), text_vocab_size=200, text_max_sentences=150)


def small_corpus(tmp: Path) -> tuple[Path, Path]:
    """``(corpus, km)``: a copy of the committed corpus's text side in ``tmp``, and its gold phone units."""
    corpus = tmp / "corpus"
    for d in ("manifests", "transcripts", "alignments"):
        shutil.copytree(CORPUS / d, corpus / d)
    km = tmp / "km"
    for s in ("train", "valid", "test"):
        write_phone_units(CORPUS / "labels" / f"{s}.phn", CORPUS / "labels" / "dict.phn.txt", km / f"{s}.km")
    return corpus, km
