"""Every fix that makes fairseq 0.12 run on the modern stack, in one place.

Applied once, when :mod:`spokenlm_plugin` is imported (directly, or through
``fairseq-train --user-dir spokenlm_plugin``). Each patch is narrow: it touches only the fairseq
function that breaks and leaves the rest of torch / torchaudio untouched.

1. torch >= 2.6 ``torch.load`` defaults to ``weights_only=True``; fairseq checkpoints pickle an
   ``argparse.Namespace`` and omegaconf objects, so every reload (resume, ``fairseq-generate``,
   ``load_model_ensemble_and_task``) fails with "Unsupported global". fairseq's checkpoint module
   gets a ``torch`` whose ``load`` defaults to ``weights_only=False`` (a fairseq checkpoint is a
   trusted file the user points at, exactly as before torch 2.6).
2. torchaudio >= 2.9 removed ``sox_effects``, which ``fairseq.data.audio.audio_utils.convert_waveform``
   imports on every call (so ``get_waveform`` always fails). It is replaced by an equivalent built on
   ``torchaudio.functional`` (resampling, channel averaging, peak normalisation).
3. fairseq-fixed 0.12.3.1's ``data_utils.batch_by_size`` drops the last batch when its size is not a
   multiple of ``required_batch_size_multiple`` (default 8): up to 7 utterances of every split, the
   validation and test sets included, silently vanish (a split of fewer than 8 becomes "empty"). The
   remainder is put back as a final batch, as fairseq 0.12.2 did.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import numpy as np
import torch

_APPLIED = False


class _TorchWithTrustedLoad(types.ModuleType):
    """A stand-in for the ``torch`` module inside fairseq's checkpoint code."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return torch.load(f, *args, **kwargs)


def convert_waveform(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    normalize_volume: bool = False,
    to_mono: bool = False,
    to_sample_rate: int | None = None,
) -> tuple[np.ndarray | torch.Tensor, int]:
    """Drop-in for fairseq's ``convert_waveform`` (channels x length in, same type out)."""
    import torchaudio.functional as F

    is_np = isinstance(waveform, np.ndarray)
    wav = torch.from_numpy(waveform) if isinstance(waveform, np.ndarray) else waveform
    changed = False
    if normalize_volume:
        peak = wav.abs().max()
        if peak > 0:
            wav = wav / peak
        changed = True
    if to_sample_rate is not None and to_sample_rate != sample_rate:
        wav = F.resample(wav.float(), sample_rate, to_sample_rate)
        sample_rate = to_sample_rate
        changed = True
    if to_mono and wav.shape[0] > 1:
        wav = wav.mean(dim=0, keepdim=True)
        changed = True
    if not changed:
        return waveform, sample_rate
    return (wav.numpy() if is_np else wav), sample_rate


def _keep_remainder(batch_by_size: Any) -> Any:
    signature = inspect.signature(batch_by_size)

    def batch_by_size_keeping_remainder(indices: Any, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        batches = list(batch_by_size(indices, *args, **kwargs))
        if signature.bind(indices, *args, **kwargs).arguments.get("fixed_shapes") is not None:
            return batches  # that path packs by shape and never had the drop
        indices = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), dtype=np.int64)
        covered = sum(len(b) for b in batches)
        if covered < len(indices):
            # batch_by_size walks the indices in order, so the dropped ones are the tail.
            batches.append(indices[covered:])
        return batches

    # attr-defined: typeshed's functions declare no __wrapped__ (functools.wraps sets it the same way)
    batch_by_size_keeping_remainder.__wrapped__ = batch_by_size  # type: ignore[attr-defined]
    return batch_by_size_keeping_remainder


def apply() -> None:
    """Apply the patches (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    import fairseq.checkpoint_utils
    import fairseq.data.audio.audio_utils as audio_utils
    import fairseq.data.data_utils as data_utils

    fairseq.checkpoint_utils.torch = _TorchWithTrustedLoad()
    audio_utils.convert_waveform = convert_waveform
    data_utils.batch_by_size = _keep_remainder(data_utils.batch_by_size)
    _APPLIED = True
