"""fairseq feature shards: ``{split}_{rank}_{nshard}.npy`` (all frames stacked) + ``.len``.

The format of ``examples/hubert/simple_kmeans``: shard ``rank`` of ``nshard`` holds a contiguous
slice of the manifest's rows (:func:`shard_range`), its ``.npy`` the frames of those rows stacked
(float32, frames x dims) and its ``.len`` one line per row with that row's number of frames. Shards
0..nshard-1 concatenated follow the manifest order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConfigError, FeatureError


def shard_range(total: int, nshard: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, end)`` of shard ``rank`` (the same split as fairseq's ``get_shard_range``)."""
    if nshard < 1 or not 0 <= rank < nshard:
        raise ConfigError(f"rank {rank} / nshard {nshard}: need nshard >= 1 and 0 <= rank < nshard")
    return round(total / nshard * rank), round(total / nshard * (rank + 1))


def shard_paths(feat_dir: str | os.PathLike, split: str, nshard: int, rank: int) -> tuple[Path, Path]:
    """``(npy, len)`` paths of one shard."""
    base = Path(feat_dir) / f"{split}_{rank}_{nshard}"
    return base.with_suffix(".npy"), base.with_suffix(".len")


@dataclass(frozen=True)
class FeatureShard:
    """One validated shard: the frames (memory-mapped) and the frames per utterance."""

    npy: Path
    lengths: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    def frames(self) -> np.ndarray:
        """All frames, memory-mapped (frames x dims, float32)."""
        return np.load(self.npy, mmap_mode="r")

    def utterances(self) -> Iterator[np.ndarray]:
        """Frames of each utterance, in manifest order (views into the memory map)."""
        feats = self.frames()
        for off, n in zip(self.offsets, self.lengths):
            yield feats[off : off + n]


def read_lengths(path: Path) -> np.ndarray:
    """Frames per utterance from a ``.len`` file."""
    if not path.is_file():
        raise FeatureError(f"{path}: .len file not found; dump the features with 'spokenlm dump-features'")
    lines = path.read_text().split()
    if not all(t.isdigit() for t in lines):
        raise FeatureError(f"{path}: expected one non-negative integer per line")
    return np.asarray([int(t) for t in lines], dtype=np.int64)


def open_shard(npy: str | os.PathLike) -> FeatureShard:
    """Open ``X.npy`` + ``X.len`` and check that they agree."""
    npy = Path(npy)
    if not npy.is_file():
        raise FeatureError(f"{npy}: feature file not found; dump the features with 'spokenlm dump-features'")
    lengths = read_lengths(npy.with_suffix(".len"))
    try:
        feats = np.load(npy, mmap_mode="r")
    except ValueError as e:
        raise FeatureError(f"{npy}: not a readable .npy file ({e}); dump the features again") from e
    if feats.ndim != 2:
        raise FeatureError(f"{npy}: expected a 2-D array (frames x dims), got shape {feats.shape}")
    if int(lengths.sum()) != feats.shape[0]:
        raise FeatureError(
            f"{npy}: {feats.shape[0]} frames but {npy.with_suffix('.len').name} sums to {int(lengths.sum())} "
            f"over {len(lengths)} utterances; the dump is incomplete or the files belong to different runs "
            "(rerun 'spokenlm dump-features' into the same folder to finish it)"
        )
    return FeatureShard(npy=npy, lengths=lengths)


def open_shards(features: str | os.PathLike, *, split: str | None = None, nshard: int = 1) -> list[FeatureShard]:
    """The shards named by ``features``: one ``.npy`` file, or a folder + ``split`` + ``nshard``."""
    features = Path(features)
    if features.suffix == ".npy":
        return [open_shard(features)]
    if split is None:
        raise ConfigError(f"{features}: a feature folder needs --split (the manifest's name, e.g. train)")
    return [open_shard(shard_paths(features, split, nshard, rank)[0]) for rank in range(nshard)]


def check_finite(x: np.ndarray, *, source: str | os.PathLike) -> None:
    """Raise :class:`FeatureError` if ``x`` holds NaN or infinite values."""
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=tuple(range(1, x.ndim))))[0])
        raise FeatureError(
            f"{source}: non-finite values (NaN/inf) at frame {bad}; the features are corrupt, dump them again"
        )


def sample_frames(
    shards: list[FeatureShard], *, fraction: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Frames of a random ``fraction`` of the utterances (whole utterances, like fairseq's
    ``learn_kmeans --percent``), as one float32 array in memory."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction {fraction}: must be in (0, 1]")
    rng = np.random.default_rng(seed)
    parts = []
    for shard in shards:
        feats = shard.frames()
        if fraction == 1.0:
            parts.append(np.asarray(feats, dtype=np.float32))
            continue
        n = len(shard.lengths)
        chosen = np.sort(rng.choice(n, size=max(1, int(np.ceil(n * fraction))), replace=False))
        offsets = shard.offsets
        parts += [np.asarray(feats[offsets[i] : offsets[i] + shard.lengths[i]], dtype=np.float32) for i in chosen]
    x = np.ascontiguousarray(np.concatenate(parts, axis=0))
    check_finite(x, source=shards[0].npy.parent)
    return x
