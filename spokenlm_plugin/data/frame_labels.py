"""Reading phone label files for fine-tuning, checked against their manifest before any training.

Frame labels (``{split}.phn``, 50 Hz) must have one line per manifest row with
``num_frames(num_samples)`` labels (within a tolerance); sequence labels (``{split}.phnseq``, for
CTC) one line per row. Every phone must be in the dictionary. Mistakes raise a
:class:`SpokenLMError` naming the file, the line and the utterance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import DictionaryError, LabelMismatchError
from ..core.io import Manifest, read_lines, read_manifest
from ..core.phones import num_frames


def _lines_for(manifest: Manifest, manifest_path: Path, label_path: Path) -> list[str]:
    lines = read_lines(label_path)
    if len(lines) != len(manifest):
        raise LabelMismatchError(
            f"{label_path}: {len(lines)} lines for the {len(manifest)} utterances of {manifest_path}; "
            "the labels were made for another manifest: regenerate them with `spokenlm labels` from this manifest"
        )
    return lines


def _encode(symbols: Sequence[str], index: dict[str, int], *, where: str, dict_path: Path) -> np.ndarray:
    try:
        return np.fromiter((index[s] for s in symbols), dtype=np.int16, count=len(symbols))
    except KeyError as e:
        raise DictionaryError(
            f"{where}: phone {e.args[0]!r} is not in {dict_path}; add it to the dictionary "
            "or regenerate the labels with the same phone set"
        ) from None


def read_frame_labels(
    manifest_path: str | os.PathLike,
    label_path: str | os.PathLike,
    *,
    phones: Sequence[str],
    dict_path: str | os.PathLike,
    tolerance: int = 1,
) -> list[np.ndarray]:
    """Frame labels of every manifest row as class indices into ``phones``.

    ``tolerance``: largest accepted difference between a line's length and the number of CNN
    frames of its audio (forced alignments often end one frame early or late).
    """
    manifest_path, label_path, dict_path = Path(manifest_path), Path(label_path), Path(dict_path)
    manifest = read_manifest(manifest_path)
    lines = _lines_for(manifest, manifest_path, label_path)
    index = {p: i for i, p in enumerate(phones)}
    encoded = []
    for lineno, (row, line) in enumerate(zip(manifest.rows, lines), start=1):
        symbols = line.split()
        expected = num_frames(row.num_samples)
        if abs(len(symbols) - expected) > tolerance:
            raise LabelMismatchError(
                f"{label_path}:{lineno}: utterance {row.utt_id} has {len(symbols)} label frames but its "
                f"{row.num_samples} samples give {expected} frames; the labels were made for another "
                "manifest or other audio: regenerate them with `spokenlm labels`"
            )
        encoded.append(_encode(symbols, index, where=f"{label_path}:{lineno} ({row.utt_id})", dict_path=dict_path))
    return encoded


def check_sequence_labels(
    manifest_path: str | Path,
    label_path: str | Path,
    *,
    phones: Sequence[str],
    dict_path: str | Path,
) -> None:
    """Check phone-sequence labels (CTC targets): one line per manifest row, known phones."""
    manifest_path, label_path, dict_path = Path(manifest_path), Path(label_path), Path(dict_path)
    manifest = read_manifest(manifest_path)
    lines = _lines_for(manifest, manifest_path, label_path)
    index = {p: i for i, p in enumerate(phones)}
    for lineno, (row, line) in enumerate(zip(manifest.rows, lines), start=1):
        _encode(line.split(), index, where=f"{label_path}:{lineno} ({row.utt_id})", dict_path=dict_path)


def load_dictionary(path: str | Path):
    """A fairseq ``Dictionary`` from ``dict.<labels>.txt``, or a :class:`DictionaryError`."""
    from fairseq.data import Dictionary

    path = Path(path)
    if not path.is_file():
        raise DictionaryError(f"{path}: dictionary not found; `spokenlm labels` writes dict.phn.txt beside the labels")
    try:
        return Dictionary.load(str(path))
    except ValueError as e:
        raise DictionaryError(f"{path}: not a fairseq dictionary ({e}); expected 'SYMBOL COUNT' per line") from e
