"""Reading and checking audio files: 16 kHz mono is what HuBERT expects.

Checks read the header (``soundfile``) and the last block of samples, so a truncated or corrupt
file is caught without decoding it whole. :func:`read_audio` is the one way a stage reads samples:
strict by default; conversion (resampling, down-mixing) only happens when the caller asks for it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioFormatError, ManifestError
from .io import atomic_path
from .phones import RECEPTIVE_FIELD, SAMPLE_RATE

#: Samples read at the end of a file to prove that its body is really there.
_TAIL = 1024


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says (after a check that its samples can be read)."""

    path: Path
    sample_rate: int
    channels: int
    num_samples: int

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header of a readable, non-empty audio file; :class:`AudioFormatError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise AudioFormatError(f"{path}: audio file not found; check the path or the manifest root")
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: empty file (0 bytes); remove it or pass --skip-bad")
    try:
        with sf.SoundFile(path) as f:
            info = AudioInfo(path, f.samplerate, f.channels, f.frames)
            if info.num_samples > 0:
                # A truncated FLAC keeps its header's length: reading the tail is what fails.
                f.seek(max(0, info.num_samples - _TAIL))
                f.read(_TAIL, dtype="float32")
    except sf.SoundFileError as e:
        reason = str(e).replace(f"Error opening {str(path)!r}: ", "").strip().rstrip(".")
        raise AudioFormatError(
            f"{path}: unreadable or corrupt audio ({reason}); re-encode or remove the file, or pass --skip-bad"
        ) from None
    if info.num_samples == 0:
        raise AudioFormatError(f"{path}: empty audio (0 samples); remove the file or pass --skip-bad")
    return info


def check_audio(path: str | os.PathLike) -> AudioInfo:
    """:func:`audio_info`, plus the checks HuBERT needs: 16 kHz, mono, at least one frame long."""
    info = audio_info(path)
    if info.sample_rate != SAMPLE_RATE:
        raise AudioFormatError(
            f"{info.path}: sample rate {info.sample_rate} Hz, expected {SAMPLE_RATE} Hz; "
            "write 16 kHz copies with 'spokenlm manifest --resample-to-dir DIR', or pass --skip-bad"
        )
    if info.channels != 1:
        raise AudioFormatError(
            f"{info.path}: {info.channels} channels, expected mono; "
            "write down-mixed copies with 'spokenlm manifest --resample-to-dir DIR', or pass --skip-bad"
        )
    if info.num_samples < RECEPTIVE_FIELD:
        raise AudioFormatError(
            f"{info.path}: only {info.num_samples} samples, shorter than one HuBERT frame "
            f"({RECEPTIVE_FIELD} samples); remove the file or pass --skip-bad"
        )
    return info


def read_audio(
    path: str | os.PathLike, *, expected_samples: int | None = None, downmix: bool = False, resample: bool = False,
) -> np.ndarray:
    """A 16 kHz mono waveform as float32; :class:`AudioFormatError` naming the file otherwise.

    :param expected_samples: the manifest's sample count; a file of another length is refused (the
        manifest no longer describes it, and frame counts computed from it would be off).
    :param downmix: average the channels of multi-channel audio (as fairseq does) instead of
        refusing it.
    :param resample: resample another rate to 16 kHz (``torchaudio.functional.resample``,
        band-limited sinc) instead of refusing it.
    """
    path = Path(path)
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        if not path.is_file():
            raise ManifestError(f"{path}: audio file not found; check the manifest's root line") from None
        raise AudioFormatError(f"{path}: unreadable audio ({e}); re-encode or remove the file") from None
    if sr != SAMPLE_RATE and not resample:
        raise AudioFormatError(f"{path}: sample rate {sr} Hz; HuBERT needs {SAMPLE_RATE} Hz (resample it first)")
    if len(wav) == 0:
        raise AudioFormatError(f"{path}: empty audio (0 samples); remove it from the manifest")
    if wav.shape[1] != 1 and not downmix:
        raise AudioFormatError(
            f"{path}: {wav.shape[1]} channels, expected mono; pass --downmix to average the channels, "
            "or write mono copies with 'spokenlm manifest --resample-to-dir DIR'"
        )
    if expected_samples is not None and len(wav) != expected_samples:
        raise ManifestError(
            f"{path}: {len(wav)} samples but the manifest says {expected_samples}; "
            "the file changed since the manifest was made: make the manifest again"
        )
    if not resample:
        return wav.mean(axis=1)
    # Imported here: torch is slow to load and only conversion needs it.
    import torch
    import torchaudio.functional as AF

    # The conversion path averages in torch, as `manifest --resample-to-dir` always has: with 6 or
    # more channels numpy's mean differs from torch's in the last bit.
    mono = torch.from_numpy(wav).mean(dim=1)
    if sr != SAMPLE_RATE:
        mono = AF.resample(mono, orig_freq=sr, new_freq=SAMPLE_RATE)
    return mono.numpy()


def convert_audio(src: str | os.PathLike, dst: str | os.PathLike) -> AudioInfo:
    """Write a 16 kHz mono copy of ``src`` at ``dst`` (atomically) and return its checked info.

    A file that is already 16 kHz mono is copied byte for byte; others are down-mixed by the
    channel mean and resampled with ``torchaudio.functional.resample`` (band-limited sinc).
    An existing valid ``dst`` newer than ``src`` is kept, so an interrupted run resumes.
    """
    src, dst = Path(src), Path(dst)
    info = audio_info(src)
    if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
        try:
            return check_audio(dst)
        except AudioFormatError:
            pass  # a stale or foreign file: rewrite it below
    if info.sample_rate == SAMPLE_RATE and info.channels == 1:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return check_audio(dst)
    mono = read_audio(src, downmix=True, resample=True)
    # Resampling can overshoot full scale a little; PCM-16 would wrap around instead of clipping.
    out = np.clip(mono, -1.0, 1.0 - 2.0**-15)
    fmt = sf.info(src).format
    with atomic_path(dst) as tmp:
        sf.write(tmp, out, SAMPLE_RATE, format=fmt, subtype="PCM_16")
    return check_audio(dst)
