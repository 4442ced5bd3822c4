"""Training data of a unit vocoder: a manifest's audio and one or more ``.km`` unit files of it.

Unit ``i`` of an utterance covers samples ``[320 i, 320 (i + 1))`` (HuBERT's 50 Hz frames; the
speech-resynthesis convention). A ``.km`` must have one line per manifest row and, per line, as many
units as the audio has frames, give or take two (HuBERT gives ``floor((n - 400) / 320) + 1``).
Audio is kept in memory as 16-bit samples (an hour of speech is 115 MB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.errors import LabelMismatchError
from ..core.audio import read_audio
from ..core.io import read_manifest
from ..core.km import read_km_arrays
from ..core.phones import HOP

#: Allowed difference, in units, between a .km line and the audio's length / 320.
LENGTH_TOLERANCE = 2


@dataclass(frozen=True)
class UnitSet:
    """One unit stream of the corpus: a name (e.g. ``base``), its ``.km`` file and its K."""

    name: str
    km: Path
    num_units: int


def read_unit_rows(km: str | os.PathLike, *, num_units: int, expected_rows: int | None = None,
                   manifest: str | os.PathLike | None = None) -> list[np.ndarray]:
    """Units of every line of ``km`` (no empty line, each unit < ``num_units``), checked against
    the manifest's row count; errors name the file and line."""
    rows = read_km_arrays(km, vocab_size=num_units, allow_empty=False)
    if expected_rows is not None and len(rows) != expected_rows:
        raise LabelMismatchError(
            f"{km}: {len(rows)} lines of units but the manifest {manifest} has {expected_rows} rows; "
            "pass the .km made from this manifest (one line per row, same order)")
    return rows


class VocoderCorpus:
    """Audio of a manifest with its unit sets (and speaker ids), sampled as fixed-length segments."""

    def __init__(self, manifest: str | os.PathLike, unit_sets: Sequence[UnitSet], *,
                 speakers: Sequence[str] | None = None) -> None:
        m = read_manifest(manifest, check_files=True)
        if not len(m):
            raise LabelMismatchError(f"{manifest}: no utterances")
        self.manifest = Path(manifest)
        self.utt_ids = m.utt_ids
        self.units = {s.name: read_unit_rows(s.km, num_units=s.num_units, expected_rows=len(m), manifest=manifest)
                      for s in unit_sets}
        self.audio: list[np.ndarray] = []
        for row in m.rows:
            wav = read_audio(m.path(row))
            self.audio.append((np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16))
        for s in unit_sets:
            for lineno, (units, wav) in enumerate(zip(self.units[s.name], self.audio), start=1):
                if abs(len(units) - len(wav) / HOP) > LENGTH_TOLERANCE:
                    raise LabelMismatchError(
                        f"{s.km}:{lineno}: {len(units)} units but {self.utt_ids[lineno - 1]} has {len(wav)} samples "
                        f"(~{len(wav) // HOP} units of {HOP}); are these the units of this manifest, at 50 Hz?")
        self.speakers = list(speakers) if speakers is not None else None
        self.names = [s.name for s in unit_sets]

    def __len__(self) -> int:
        return len(self.audio)

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audio) / 16_000

    def waveform(self, index: int) -> np.ndarray:
        return self.audio[index].astype(np.float32) / 32767

    def segments(self, *, batch: int, segment_units: int, generator: torch.Generator,
                 speaker_index: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
        """A random batch: ``code`` (B, S), ``audio`` (B, 1, S * 320), ``table`` (B,) index of the unit
        set of each segment, and ``spkr`` (B, 1) when ``speaker_index`` is given. Utterances shorter
        than a segment are padded (last unit repeated, silence)."""
        codes, wavs, tables, spkrs = [], [], [], []
        for _ in range(batch):
            i = int(torch.randint(len(self.audio), (1,), generator=generator))
            t = int(torch.randint(len(self.names), (1,), generator=generator))
            units = self.units[self.names[t]][i]
            wav = self.audio[i]
            n = min(len(units), len(wav) // HOP)
            start = int(torch.randint(max(1, n - segment_units + 1), (1,), generator=generator))
            u = units[start:start + segment_units]
            a = wav[start * HOP:(start + segment_units) * HOP].astype(np.float32) / 32767
            if len(u) < segment_units:
                u = np.pad(u, (0, segment_units - len(u)), mode="edge")
            a = np.pad(a, (0, segment_units * HOP - len(a)))
            codes.append(u)
            wavs.append(a)
            tables.append(t)
            if speaker_index is not None and self.speakers is not None:
                spkrs.append(speaker_index[self.speakers[i]])
        out = {"code": torch.from_numpy(np.stack(codes)), "audio": torch.from_numpy(np.stack(wavs))[:, None],
               "table": torch.tensor(tables)}
        if spkrs:
            out["spkr"] = torch.tensor(spkrs)[:, None]
        return out
