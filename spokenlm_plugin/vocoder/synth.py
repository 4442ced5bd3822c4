"""``spokenlm vocoder-synth``: units (one line per utterance) -> 16 kHz wavs.

The input is what ``spokenlm kmeans assign`` / ``lm-generate`` write and what fairseq's
``examples/speech_to_speech/generate_waveform_from_code.py`` reads: space-separated unit ids, one
utterance per line. Without the duration predictor every unit gives 320 samples; with
``--durations`` the line holds deduplicated units and the predictor sets each one's run length.
Files are ``WAVDIR/<utt_id>.wav`` (ids from ``--manifest``, else the line number ``000001``...).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..core.errors import AudioFormatError, ConfigError, FeatureError
from ..core.io import atomic_path, read_manifest
from ..core.runtime import positive_int, torch_threads
from .config import GeneratorConfig

if TYPE_CHECKING:  # imported where used: `spokenlm vocoder-synth --help` must not wait seconds for torch
    import torch


class Vocoder:
    """A loaded unit vocoder: ``vocoder(units)`` -> float32 waveform at 16 kHz."""

    def __init__(self, generator: torch.nn.Module, cfg: GeneratorConfig, *, name: str = "vocoder") -> None:
        self.generator, self.cfg, self.name = generator, cfg, name
        if cfg.sampling_rate != 16_000:
            raise AudioFormatError(
                f"{name}: the vocoder outputs {cfg.sampling_rate} Hz; units here are 16 kHz HuBERT frames "
                "(retrain it at 16 kHz)")

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, config: str | os.PathLike) -> Vocoder:
        from .checkpoint import load_generator

        generator, cfg = load_generator(checkpoint, config)
        return cls(generator, cfg, name=str(checkpoint))

    @property
    def predicts_durations(self) -> bool:
        """Whether it has fairseq's duration predictor, so it can voice deduplicated units."""
        return self.generator.dur_predictor is not None

    def speaker_index(self, speaker: str | int | None) -> int | None:
        """Row of the speaker embedding for a name or an index; None for a single-speaker vocoder."""
        if not self.cfg.multispkr:
            if speaker is not None:
                raise ConfigError(f"--speaker {speaker}: {self.name} is a single-speaker vocoder; drop --speaker")
            return None
        if speaker is None:
            raise ConfigError(f"{self.name} is a multi-speaker vocoder; pass --speaker "
                              f"(one of {', '.join(self.cfg.speakers) or f'0..{self.cfg.num_speakers - 1}'})")
        if str(speaker) in self.cfg.speakers:
            return self.cfg.speakers.index(str(speaker))
        if str(speaker).isdigit() and int(speaker) < self.cfg.num_speakers:
            return int(speaker)
        known = ", ".join(self.cfg.speakers) if self.cfg.speakers else f"indices 0..{self.cfg.num_speakers - 1}"
        raise ConfigError(f"--speaker {speaker}: unknown to {self.name} (it knows {known})")

    def __call__(self, units: Sequence[int] | np.ndarray, *, speaker: int | None = None,
                 durations: bool = False) -> np.ndarray:
        import torch

        if durations and not self.predicts_durations:
            raise ConfigError(f"--durations: {self.name} has no duration predictor (train with --duration-predictor)")
        code = torch.as_tensor(np.asarray(units, dtype=np.int64))[None]
        kwargs: dict = {"code": code, "dur_prediction": durations}
        if speaker is not None:
            kwargs["spkr"] = torch.tensor([[speaker]])
        with torch.inference_mode():
            return self.generator(**kwargs).squeeze().numpy().astype(np.float32)


def write_wav(path: Path, wav: np.ndarray, sample_rate: int = 16_000) -> None:
    """16-bit PCM wav, written atomically."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(wav, -1.0, 1.0 - 2.0**-15), sample_rate, subtype="PCM_16", format="WAV")


def synthesize(vocoder: Vocoder, units_km: str | os.PathLike, out: str | os.PathLike, *,
               manifest: str | os.PathLike | None = None, speaker: str | int | None = None,
               durations: bool = False, progress: bool = True) -> dict[str, float]:
    """Write one wav per line of ``units_km``; return audio seconds, wall seconds and x real time."""
    from tqdm import tqdm

    from .data import read_unit_rows

    ids: list[str] | None = None
    if manifest is not None:
        ids = read_manifest(manifest).utt_ids
    rows = read_unit_rows(units_km, num_units=vocoder.cfg.num_embeddings,
                          expected_rows=None if ids is None else len(ids), manifest=manifest)
    if not rows:
        raise FeatureError(f"{units_km}: no units (empty file); give a .km with one line of unit ids per utterance "
                           "(what 'spokenlm kmeans assign' or 'lm-generate' write)")
    if ids is None:
        ids = [f"{i:06d}" for i in range(1, len(rows) + 1)]
    spk = vocoder.speaker_index(speaker)
    out = Path(out)
    audio_s = wall_s = 0.0
    for utt, units in tqdm(list(zip(ids, rows)), desc="vocoder-synth", unit="utt", disable=not progress):
        t0 = time.perf_counter()
        wav = vocoder(units, speaker=spk, durations=durations)
        wall_s += time.perf_counter() - t0
        audio_s += len(wav) / vocoder.cfg.sampling_rate
        write_wav(out / f"{utt}.wav", wav, vocoder.cfg.sampling_rate)
    return {"utterances": len(rows), "audio_seconds": audio_s, "synthesis_seconds": wall_s,
            "x_real_time": audio_s / wall_s if wall_s else float("inf")}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vocoder", required=True, type=Path, help="vocoder.pt ({'generator': state_dict})")
    parser.add_argument("--config", required=True, type=Path, help="its config.json")
    parser.add_argument("--units", required=True, type=Path, help=".km file: one line of unit ids per utterance")
    parser.add_argument("--out", required=True, type=Path, help="output folder for <utt_id>.wav")
    parser.add_argument("--manifest", type=Path, help="manifest giving the utterance ids (else line numbers)")
    parser.add_argument("--speaker", help="speaker name or index (multi-speaker vocoders)")
    parser.add_argument("--durations", action="store_true",
                        help="lines hold deduplicated units; the duration predictor sets their lengths")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    vocoder = Vocoder.load(args.vocoder, args.config)
    stats = synthesize(vocoder, args.units, args.out, manifest=args.manifest, speaker=args.speaker,
                       durations=args.durations, progress=not args.no_progress)
    print(f"{stats['utterances']} utterances, {stats['audio_seconds']:.1f} s of audio in "
          f"{stats['synthesis_seconds']:.2f} s: {stats['x_real_time']:.1f}x real time "
          f"({args.threads} thread(s)) -> {args.out}")
    return 0
