"""``spokenlm baseline-features``: log-mel, MFCC and gold-phone features, dumped like HuBERT features.

The trivial baselines and the topline that give the model's ABX, PNMI and phone-recognition numbers
their meaning, written in exactly the format of ``spokenlm dump-features`` (the shard
``{split}_{rank}_{nshard}.npy`` + ``.len`` and, with ``per_utterance``, ``<utt_id>.npy``), so that
``spokenlm kmeans fit/assign``, ``spokenlm abx`` and ``spokenlm unit-quality`` take them unchanged:

``logmel``
    40 log mel filterbank energies (Kaldi ``fbank`` as computed by ``torchaudio.compliance.kaldi``:
    25 ms = 400-sample Povey window, 512-point FFT, pre-emphasis 0.97, no dither) with a 20 ms =
    320-sample shift and ``snip_edges``: frame ``i`` covers samples ``[320 i, 320 i + 400)``, exactly
    HuBERT's CNN receptive field, so an utterance of ``n`` samples has ``floor((n - 400) / 320) + 1``
    frames (:func:`~spokenlm_plugin.core.phones.num_frames`, the rule the 50 Hz labels follow).
``mfcc``
    13 Kaldi MFCCs without energy (23 mel bins, lifter 22), same window and 50 Hz frames, plus
    deltas and delta-deltas (``torchaudio.functional.compute_deltas``, window 5): 39 dims. The
    features of :mod:`spokenlm_plugin.pretrain.mfcc` (HuBERT's first-iteration targets) at 50 Hz
    instead of 100 Hz.
``phones``
    one-hot vectors of the gold 50 Hz frame labels (``.phn`` + ``dict.phn.txt``; dimension = the
    dictionary's size, dimension ``c`` = its ``c``-th phone): the ABX / PNMI topline. One frame per
    label, i.e. exactly the label line (labels are checked to be within one frame of HuBERT's count).

Normalisation (``cmvn``, on by default for ``logmel`` and ``mfcc``): per-utterance mean and variance
normalisation of every dimension (``(x - mean) / max(std, 1e-5)`` over the utterance's frames). It
removes the recording's gain and channel, which would otherwise dominate the angular distance of ABX
and the k-means clusters; it is the usual setting of spectral ABX baselines (ZeroSpeech's MFCC
baseline is mean-normalised too).

The audio features go through :func:`~.features.dump_features` itself (:class:`SpectralFeatures`
has :class:`~.encoder.DenseModel`'s dumping interface), so they are resumable and written by the same
code; the phone features are written atomically by :func:`dump_phone_features`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from ..core.errors import ConfigError
from ..core.io import Manifest, atomic_path, atomic_write, read_manifest
from ..core.phones import HOP, RECEPTIVE_FIELD, SAMPLE_RATE, num_frames
from .shards import ShardWriter, shard_paths, shard_range

if TYPE_CHECKING:  # imported where used: `spokenlm <command> --help` must not wait seconds for torch
    import torch

SpectralKind = Literal["logmel", "mfcc"]
Kind = Literal["logmel", "mfcc", "phones"]
KINDS: tuple[str, ...] = ("logmel", "mfcc", "phones")

#: Mel bins of the log-mel baseline; MFCC coefficients (before deltas).
N_MELS = 40
N_CEPS = 13
#: Kaldi window and shift in ms: 400 and 320 samples at 16 kHz, HuBERT's frames.
WINDOW_MS = 1000 * RECEPTIVE_FIELD / SAMPLE_RATE
SHIFT_MS = 1000 * HOP / SAMPLE_RATE
CMVN_FLOOR = 1e-5


def cmvn(x: np.ndarray) -> np.ndarray:
    """Per-utterance mean and variance normalisation of every column (float32)."""
    if len(x) == 0:
        return x
    x = x.astype(np.float64)
    return ((x - x.mean(axis=0)) / np.maximum(x.std(axis=0), CMVN_FLOOR)).astype(np.float32)


def spectral_features(wav: np.ndarray | torch.Tensor, kind: SpectralKind, *, normalize: bool = True) -> np.ndarray:
    """``logmel`` (40) or ``mfcc`` (39) features of a 16 kHz mono waveform: ``(num_frames(n), dims)`` float32."""
    import torch

    x = torch.as_tensor(wav, dtype=torch.float32).reshape(1, -1)
    dim = N_MELS if kind == "logmel" else 3 * N_CEPS
    n = num_frames(x.shape[1])
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32)
    import torchaudio
    import torchaudio.compliance.kaldi as kaldi

    common = dict(sample_frequency=SAMPLE_RATE, frame_length=WINDOW_MS, frame_shift=SHIFT_MS, dither=0.0,
                  snip_edges=True)
    with torch.no_grad():
        if kind == "logmel":
            feats = kaldi.fbank(x, num_mel_bins=N_MELS, **common)  # (T, 40)
        elif kind == "mfcc":
            mfcc = kaldi.mfcc(x, num_ceps=N_CEPS, use_energy=False, **common).transpose(0, 1)  # (13, T)
            delta = torchaudio.functional.compute_deltas(mfcc)
            delta2 = torchaudio.functional.compute_deltas(delta)
            feats = torch.cat([mfcc, delta, delta2], dim=0).transpose(0, 1)
        else:
            raise ConfigError(f"spectral features: unknown kind {kind!r}; choose logmel or mfcc")
    out = np.ascontiguousarray(feats.numpy(), dtype=np.float32)
    assert out.shape == (n, dim), (out.shape, n, dim)  # the Kaldi framing is HuBERT's
    return cmvn(out) if normalize else out


class SpectralFeatures:
    """Log-mel or MFCC frames with :class:`~.encoder.DenseModel`'s dumping interface
    (``name``, ``fingerprint``, ``layer``, ``dim``, ``device``, ``batch``), for :func:`~.features.dump_features`."""

    def __init__(self, kind: SpectralKind, *, normalize: bool = True) -> None:
        import torch

        if kind not in ("logmel", "mfcc"):
            raise ConfigError(f"spectral features: unknown kind {kind!r}; choose logmel or mfcc")
        import torchaudio

        self.kind, self.normalize = kind, normalize
        self.name = kind
        self.layer = kind
        self.dim = N_MELS if kind == "logmel" else 3 * N_CEPS
        self.fingerprint = (f"{kind}:{self.dim}:{WINDOW_MS}ms/{SHIFT_MS}ms:cmvn={normalize}:"
                            f"torchaudio {torchaudio.__version__}")
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def num_frames(self, num_samples: int) -> int:
        return num_frames(num_samples)

    def __call__(self, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
        import torch

        return torch.from_numpy(spectral_features(waveform, self.kind, normalize=self.normalize))

    def batch(self, waveforms: Sequence[np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
        return [self(w) for w in waveforms]


def read_phone_labels(manifest: str | os.PathLike, labels: str | os.PathLike,
                      dict_path: str | os.PathLike) -> tuple[list[str], list[np.ndarray]]:
    """``(phones, class ids per manifest row)`` of frame labels, checked against the manifest
    (one line per row, within one frame of HuBERT's count, every phone in the dictionary)."""
    from ..data.frame_labels import read_frame_labels
    from .quality import read_phone_dict

    phones = read_phone_dict(dict_path)
    ids = read_frame_labels(manifest, labels, phones=phones, dict_path=dict_path)
    return phones, [i.astype(np.int64) for i in ids]


def dump_phone_features(
    manifest: str | os.PathLike,
    labels: str | os.PathLike,
    dict_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str | None = None,
    nshard: int = 1,
    rank: int = 0,
    per_utterance: bool = False,
) -> tuple[Path, Path, int]:
    """One-hot gold-phone features of shard ``rank``/``nshard`` of ``manifest``; ``(npy, len, frames)``."""
    split = split or Path(manifest).stem
    rows: Manifest = read_manifest(manifest)
    phones, ids = read_phone_labels(manifest, labels, dict_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    npy, len_path = shard_paths(out_dir, split, nshard, rank)
    start, end = shard_range(len(rows), nshard, rank)
    eye = np.eye(len(phones), dtype=np.float32)
    st = Path(labels).stat()
    state = {"model": "phones", "fingerprint": f"{Path(labels).resolve()}:{st.st_size}:{st.st_mtime_ns}",
             "layer": "phones", "dim": len(phones), "split": split, "rows": [start, end],
             "per_utterance": per_utterance}
    frames = 0
    with atomic_path(npy) as tmp_npy, atomic_write(len_path) as len_file:
        with ShardWriter(tmp_npy, dim=len(phones)) as feats:
            for row, y in zip(rows.rows[start:end], ids[start:end]):
                x = eye[y]
                if per_utterance:
                    with atomic_path(out_dir / f"{row.utt_id}.npy") as tmp:
                        np.save(tmp, x)
                feats.append(x)
                len_file.write(f"{len(x)}\n")
                frames += len(x)
    # The sidecar of dump-features: a later dump-features into this folder refuses to mix models.
    with atomic_write(out_dir / f".{npy.stem}.dump.json") as f:
        json.dump(state, f, indent=1)
    return npy, len_path, frames


def dump_baseline_features(
    kind: Kind,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    dict_path: str | os.PathLike | None = None,
    split: str | None = None,
    nshard: int = 1,
    rank: int = 0,
    per_utterance: bool = False,
    normalize: bool = True,
    progress: bool = False,
    downmix: bool = False,
) -> tuple[Path, Path, int]:
    """Dump ``kind`` features of ``manifest`` into ``out_dir`` (the format of ``dump-features``);
    ``(npy, len, frames in the shard)``. ``phones`` needs ``labels`` and ``dict_path``."""
    split = split or Path(manifest).stem
    if kind == "phones":
        if labels is None or dict_path is None:
            raise ConfigError("phone features need the frame labels (--labels X.phn) and the dictionary "
                              "(--dict dict.phn.txt)")
        return dump_phone_features(manifest, labels, dict_path, out_dir, split=split, nshard=nshard, rank=rank,
                                   per_utterance=per_utterance)
    if kind not in ("logmel", "mfcc"):
        raise ConfigError(f"unknown feature kind {kind!r}; choose one of {', '.join(KINDS)}")
    from .features import dump_features

    extractor = SpectralFeatures(kind, normalize=normalize)
    # arg-type: SpectralFeatures has the DenseModel interface dump_features uses (duck-typed), not its class
    res = dump_features(extractor, manifest, out_dir, split=split,  # type: ignore[arg-type]
                        nshard=nshard, rank=rank, per_utterance=per_utterance, progress=progress,
                        downmix=downmix)
    return res.npy, res.len, int(sum(int(t) for t in res.len.read_text().split()))


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=KINDS,
                        help="logmel (40 log mel energies), mfcc (13 + deltas + delta-deltas), or phones "
                             "(one-hot gold frame labels: the topline); all at HuBERT's 50 Hz frames")
    parser.add_argument("--manifest", required=True, type=Path, help="fairseq manifest X.tsv (split name = X)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--labels", type=Path, help="--kind phones: 50 Hz frame labels X.phn (one line per row)")
    parser.add_argument("--dict", type=Path, help="--kind phones: phone dictionary dict.phn.txt (its order = dims)")
    parser.add_argument("--per-utterance", action="store_true",
                        help="also write OUT/<utt_id>.npy (frames x dims) per utterance, for ABX")
    parser.add_argument("--no-cmvn", action="store_true",
                        help="logmel / mfcc: no per-utterance mean and variance normalisation")
    parser.add_argument("--nshard", type=int, default=1, help="number of shards (default 1)")
    parser.add_argument("--rank", type=int, default=0, help="shard to dump, 0..nshard-1 (default 0)")
    parser.add_argument("--downmix", action="store_true",
                        help="logmel / mfcc: average the channels of multi-channel audio (default: refuse it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.kind != "phones" and (args.labels is not None or args.dict is not None):
        raise ConfigError("--labels / --dict are for --kind phones only")
    if args.kind == "phones" and args.no_cmvn:
        raise ConfigError("--no-cmvn applies to logmel / mfcc only")
    t0 = time.perf_counter()
    npy, _, frames = dump_baseline_features(
        args.kind, args.manifest, args.out, labels=args.labels, dict_path=args.dict, split=args.manifest.stem,
        nshard=args.nshard, rank=args.rank, per_utterance=args.per_utterance, normalize=not args.no_cmvn,
        progress=not args.no_progress, downmix=args.downmix,
    )
    dim = np.load(npy, mmap_mode="r").shape[1]
    print(f"{npy}: {args.kind} features, {frames} frames x {dim} dims in {time.perf_counter() - t0:.1f} s")
    return 0
