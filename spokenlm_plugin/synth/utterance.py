"""Writing a synthesized utterance: ``<utt_id>.flac`` and its alignment ``<utt_id>.json``.

The flac is written first and the JSON last, each atomically, so a JSON on disk means a complete
pair: an interrupted run leaves at most a flac without its JSON, which the next run redoes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import soundfile as sf

from ..core.io import atomic_path, atomic_write
from ..core.phones import SAMPLE_RATE
from .flite import Synthesis


def _seconds(t: float) -> float:
    # Times are whole samples (multiples of 62.5 us): 7 decimals keep them exact.
    return round(t, 7)


def alignment_record(synthesis: Synthesis, *, utt_id: str, speaker: str, text: str) -> dict:
    """The alignment JSON of the corpus contract."""
    return {
        "utt_id": utt_id,
        "speaker": speaker,
        "text": text,
        "sample_rate": SAMPLE_RATE,
        "num_samples": synthesis.num_samples,
        "words": [[_seconds(s), _seconds(e), w] for s, e, w in synthesis.words],
        "phones": [[_seconds(s), _seconds(e), p] for s, e, p in synthesis.phones],
    }


def save_utterance(
    synthesis: Synthesis, *, audio_path: str | os.PathLike, alignment_path: str | os.PathLike, utt_id: str, speaker: str, text: str
) -> None:
    """Write the flac (16 kHz mono, 16 bit), then the alignment JSON, both atomically."""
    with atomic_path(audio_path) as tmp:
        sf.write(tmp, synthesis.samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    record = alignment_record(synthesis, utt_id=utt_id, speaker=speaker, text=text)
    with atomic_write(alignment_path) as f:
        json.dump(record, f, separators=(",", ":"))
        f.write("\n")


def completed_num_samples(audio_path: Path, alignment_path: Path) -> int | None:
    """``num_samples`` of an utterance already written completely, else None."""
    if not (alignment_path.is_file() and audio_path.is_file()):
        return None
    try:
        return int(json.loads(alignment_path.read_text())["num_samples"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # unreadable: redo it
