"""Reading and checking audio files: 16 kHz mono is what HuBERT expects.

Checks read the header (``soundfile``) and the last block of samples, so a truncated or corrupt
file is caught without decoding it whole. A WAV cut short is found by its RIFF ``data`` chunk, which
claims more bytes than the file holds (libsndfile silently reads what is there); a FLAC cut short
fails when its end is read. :func:`read_audio` is the one way a stage reads samples: strict by
default (it also refuses NaN / inf samples); conversion (resampling, down-mixing) only happens when
the caller asks for it.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioFormatError, ManifestError
from .io import atomic_path
from .phones import RECEPTIVE_FIELD, SAMPLE_RATE

#: Samples read at the end of a file to prove that its body is really there.
_TAIL = 1024
#: Bytes per sample of the WAV encodings whose data size maps to a sample count (compressed ones do not).
_WAV_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1}
#: Encodings of integer samples (FLAC's too): they cannot hold NaN / inf, their reads skip that check.
_INTEGER_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"})
#: ``data`` chunk sizes that writers use for "unknown length" (streamed WAVs): not a claim to check.
_STREAMED_SIZES = (0, 0xFFFFFFFF)
#: Bytes read at the start of a WAV: its chunks before ``data`` are usually well within them.
_HEADER_READ = 4096
#: Chunks looked at before ``data`` at most (``fmt``, ``LIST``, ``fact``, ...): a bound on a corrupt header.
_MAX_CHUNKS = 64


def _wav_data_chunk(path: Path) -> tuple[int, int] | None:
    """``(bytes the RIFF data chunk claims, bytes after its header)`` of a WAV; None when it has no
    such chunk within the first :data:`_MAX_CHUNKS` chunks or is not RIFF / RIFX (e.g. RF64)."""
    # pread on a descriptor: a few microseconds (Python's buffered open() costs 3x as much).
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, _HEADER_READ, 0)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        for _ in range(_MAX_CHUNKS):
            header = head[pos : pos + 8] if pos + 8 <= len(head) else os.pread(fd, 8, pos)
            if len(header) < 8:
                return None
            (length,) = struct.unpack(f"{endian}I", header[4:])
            if header[:4] == b"data":
                return length, size - pos - 8
            pos += 8 + length + (length & 1)  # chunks are padded to an even size
    finally:
        os.close(fd)
    return None


def _truncated_wav(path: Path, f: sf.SoundFile) -> str | None:
    """"header says N samples, file holds M: truncated" when ``f`` (open on ``path``) is a WAV cut short.

    libsndfile reads a short WAV without a word (its length is what is present), so the claim of
    the RIFF ``data`` chunk is compared with the bytes that follow it: one small read of the header.
    """
    width = _WAV_SAMPLE_BYTES.get(f.subtype)
    if f.format not in ("WAV", "WAVEX") or width is None:
        return None
    chunk = _wav_data_chunk(path)
    if chunk is None or chunk[0] in _STREAMED_SIZES or chunk[0] <= chunk[1]:
        return None
    return f"header says {chunk[0] // (width * f.channels)} samples, file holds {f.frames}: truncated"


def _cut_short(path: Path, claim: str, *, skip_bad: bool) -> AudioFormatError:
    """The one message of a file that holds less audio than its header says."""
    hint = ", or pass --skip-bad" if skip_bad else ""
    return AudioFormatError(f"{path}: {claim}; re-encode or remove the file{hint}")


def _first_non_finite(wav: np.ndarray) -> int | None:
    """Index of the first frame of ``wav`` (frames x channels) holding a NaN or inf; None if none."""
    flat = wav.reshape(-1)
    # One BLAS pass, half np.isfinite's cost: a NaN / inf makes the sum of squares non-finite (finite
    # audio overflows it only with samples above ~1e15, which the exact check below then clears).
    if np.isfinite(np.dot(flat, flat)):
        return None
    bad = ~np.isfinite(wav).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def _open_error(path: Path, e: Exception) -> str:
    """libsndfile's reason, without the path it repeats."""
    return str(e).replace(f"Error opening {str(path)!r}: ", "").removeprefix("Error : ").strip().rstrip(".")


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


def audio_info(path: str | os.PathLike, *, skip_bad: bool = True) -> AudioInfo:
    """Header of a readable, non-empty, complete audio file; :class:`AudioFormatError` otherwise.

    :param skip_bad: whether the messages offer ``--skip-bad`` (the commands that have it).
    """
    path = Path(path)
    hint = ", or pass --skip-bad" if skip_bad else ""
    if not path.is_file():
        raise AudioFormatError(f"{path}: audio file not found; check the path or the manifest root")
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: empty file (0 bytes); remove it{hint}")
    try:
        f = sf.SoundFile(path)
    except sf.SoundFileError as e:
        raise AudioFormatError(
            f"{path}: unreadable or corrupt audio ({_open_error(path, e)}); re-encode or remove the file{hint}"
        ) from None
    with f:
        info = AudioInfo(path, f.samplerate, f.channels, f.frames)
        claim = _truncated_wav(path, f)
        if claim is not None:
            raise _cut_short(path, claim, skip_bad=skip_bad)
        if info.num_samples > 0:
            # A truncated FLAC keeps its header's length: reading the tail is what fails.
            try:
                f.seek(max(0, info.num_samples - _TAIL))
                f.read(_TAIL, dtype="float32")
            except sf.SoundFileError as e:
                claim = (f"header says {info.num_samples} samples, reading the last ones fails "
                         f"({_open_error(path, e)}): truncated or corrupt")
                raise _cut_short(path, claim, skip_bad=skip_bad) from None
    if info.num_samples == 0:
        raise AudioFormatError(f"{path}: empty audio (0 samples); remove the file{hint}")
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
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        if not path.is_file():
            raise ManifestError(f"{path}: audio file not found; check the manifest's root line") from None
        raise AudioFormatError(f"{path}: unreadable audio ({e}); re-encode or remove the file") from None
    with f:
        sr, subtype = f.samplerate, f.subtype
        claim = _truncated_wav(path, f)
        if claim is not None:
            raise _cut_short(path, claim, skip_bad=False)
        try:
            wav = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:  # a FLAC cut short fails to decode its end
            claim = f"header says {f.frames} samples, decoding fails ({_open_error(path, e)}): truncated or corrupt"
            raise _cut_short(path, claim, skip_bad=False) from None
    if sr != SAMPLE_RATE and not resample:
        raise AudioFormatError(f"{path}: sample rate {sr} Hz; HuBERT needs {SAMPLE_RATE} Hz (resample it first)")
    if len(wav) == 0:
        raise AudioFormatError(f"{path}: empty audio (0 samples); remove it from the manifest")
    if wav.shape[1] != 1 and not downmix:
        raise AudioFormatError(
            f"{path}: {wav.shape[1]} channels, expected mono; pass --downmix to average the channels, "
            "or write mono copies with 'spokenlm manifest --resample-to-dir DIR'"
        )
    # NaN / inf would pass through features (blamed on the model) and int16 casts (noise) unseen.
    first = None if subtype in _INTEGER_SUBTYPES else _first_non_finite(wav)
    if first is not None:
        raise AudioFormatError(
            f"{path}: NaN/inf samples at sample {first} (of {len(wav)}); re-encode the file without them or remove it"
        )
    if expected_samples is not None and len(wav) != expected_samples:
        raise ManifestError(
            f"{path}: {len(wav)} samples but the manifest says {expected_samples}; "
            "the file changed since the manifest was made: make the manifest again"
        )
    if not resample:
        # One channel: the column itself (a view; the mean of one value is that value, bit for bit),
        # which saves a pass over the samples that costs more than the checks above.
        return wav[:, 0] if wav.shape[1] == 1 else wav.mean(axis=1)
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
