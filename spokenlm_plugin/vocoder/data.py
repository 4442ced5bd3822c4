"""Training data of a unit vocoder: a manifest's audio and one or more ``.km`` unit files of it.

Unit ``i`` of an utterance covers samples ``[320 i, 320 (i + 1))`` (HuBERT's 50 Hz frames; the
speech-resynthesis convention). A ``.km`` must have one line per manifest row and, per line, as many
units as the audio has frames, give or take two (HuBERT gives ``floor((n - 400) / 320) + 1``).
Audio is kept in memory as 16-bit samples (an hour of speech is 115 MB).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.errors import DictionaryError, LabelMismatchError
from ..core.audio import read_audio
from ..core.io import read_manifest
from ..core.km import read_km_arrays
from ..core.phones import HOP
from .config import LENGTH_TOLERANCE


@dataclass(frozen=True)
class UnitSet:
    """One unit stream of the corpus: a name (e.g. ``base``), its ``.km`` file and its K."""

    name: str
    km: Path
    num_units: int


#: What to do about a unit outside the vocoder's table, when synthesising.
SYNTH_FIX = "use the units of the k-means this vocoder was trained on"


def read_unit_rows(km: str | os.PathLike, *, num_units: int, expected_rows: int | None = None,
                   manifest: str | os.PathLike | None = None, fix: str = SYNTH_FIX) -> list[np.ndarray]:
    """Units of every line of ``km`` (no empty line, each unit < ``num_units``), checked against
    the manifest's row count; errors name the file and line. ``fix`` ends the message of a unit
    outside ``0 .. num_units - 1`` (``{needed}``: the file's largest unit + 1)."""
    rows = read_km_arrays(km, allow_empty=False)
    for lineno, r in enumerate(rows, start=1):
        if r.max() >= num_units:
            # Checked here rather than by read_km, whose hint names the LM commands' --vocab-size.
            raise DictionaryError(
                f"{km}:{lineno}: unit {int(r[r >= num_units][0])} is outside the vocoder's units 0..{num_units - 1}; "
                + fix.format(needed=max(int(x.max()) for x in rows) + 1))
    if expected_rows is not None and len(rows) != expected_rows:
        raise LabelMismatchError(
            f"{km}: {len(rows)} lines of units but the manifest {manifest} has {expected_rows} rows; "
            "pass the .km made from this manifest (one line per row, same order)")
    return rows


def _digest(arrays: Sequence[np.ndarray]) -> str:
    """A hash of a list of 1-D arrays (values, lengths and order)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(len(a).to_bytes(8, "little"))
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class VocoderCorpus:
    """Audio of a manifest with its unit sets (and speaker ids), sampled as fixed-length segments."""

    def __init__(self, manifest: str | os.PathLike, unit_sets: Sequence[UnitSet], *,
                 speakers: Sequence[str] | None = None, downmix: bool = False) -> None:
        m = read_manifest(manifest, check_files=True)
        if not len(m):
            raise LabelMismatchError(f"{manifest}: no utterances")
        self.manifest = Path(manifest)
        self.utt_ids = m.utt_ids
        fix = "pass the k-means K as --num-units (at least {needed}), or the units of that k-means"
        self.units = {s.name: read_unit_rows(s.km, num_units=s.num_units, expected_rows=len(m), manifest=manifest,
                                             fix=fix) for s in unit_sets}
        self.audio: list[np.ndarray] = []
        for row in m.rows:
            # The manifest's count is checked, as dump-features does: a file that changed since the manifest
            # was made is named here rather than blamed on its units below.
            wav = read_audio(m.path(row), expected_samples=row.num_samples, downmix=downmix)
            self.audio.append((np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16))
        for s in unit_sets:
            for lineno, (units, wav) in enumerate(zip(self.units[s.name], self.audio), start=1):
                if abs(len(units) - len(wav) / HOP) > LENGTH_TOLERANCE:
                    raise LabelMismatchError(
                        f"{s.km}:{lineno}: {len(units)} units but its audio {m.path(m.rows[lineno - 1])} has "
                        f"{len(wav)} samples (~{len(wav) // HOP} units of {HOP}); either the audio was cut short "
                        "or these are not the 50 Hz units of this manifest (one line per row, same order)")
        self.speakers = list(speakers) if speakers is not None else None
        self.names = [s.name for s in unit_sets]

    def fingerprint(self) -> dict[str, str]:
        """Hashes of what training reads (the samples as kept, each unit set's rows, the speakers): a
        resumed run must train on the same data. Content, not file times: a copied corpus still matches."""
        out = {"audio": _digest(self.audio)}
        out |= {f"units:{n}": _digest(rows) for n, rows in self.units.items()}
        if self.speakers is not None:
            out["speakers"] = hashlib.blake2b("\n".join(self.speakers).encode(), digest_size=16).hexdigest()
        return out

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
