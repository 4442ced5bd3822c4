"""fairseq feature shards: ``{split}_{rank}_{nshard}.npy`` (all frames stacked) + ``.len``.

The format of ``examples/hubert/simple_kmeans``: shard ``rank`` of ``nshard`` holds a contiguous
slice of the manifest's rows (:func:`shard_range`), its ``.npy`` the frames of those rows stacked
(float32, frames x dims) and its ``.len`` one line per row with that row's number of frames. Shards
0..nshard-1 concatenated follow the manifest order.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Iterator

import numpy as np

from ..core.errors import ConfigError, FeatureError, IncompleteDumpError


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


#: Bytes of the header :class:`ShardWriter` writes (numpy's own size for 2-D float32 arrays: room
#: for a row count of up to 10**20 to be rewritten in place).
HEADER_BYTES = 128
_MAGIC = b"\x93NUMPY\x01\x00"
_DESCR = "<f4"


def _header(rows: int, dim: int, size: int) -> bytes:
    """A version 1.0 ``.npy`` header of ``size`` bytes for a C-order float32 ``(rows, dim)`` array."""
    text = f"{{'descr': '{_DESCR}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    room = size - len(_MAGIC) - 2 - 1  # the length field and the closing newline
    if len(text) > room:
        raise ValueError(f"no room for shape ({rows}, {dim}) in a {size}-byte header")
    return _MAGIC + (room + 1).to_bytes(2, "little") + text.ljust(room).encode("latin1") + b"\n"


def _read_header(f: BinaryIO, path: Path) -> tuple[int, int, int]:
    """``(rows, dim, header bytes)`` of a float32 C-order 2-D ``.npy``; :class:`FeatureError` otherwise."""
    head = f.read(10)
    if len(head) < 10 or head[:8] != _MAGIC:  # numpy writes version 1.0 headers for such arrays
        raise FeatureError(f"{path}: not a version 1.0 .npy file; delete it (and its .len) and dump again")
    size = 10 + int.from_bytes(head[8:10], "little")
    try:
        meta = ast.literal_eval(f.read(size - 10).decode("latin1"))
        shape, descr, fortran = tuple(meta["shape"]), meta["descr"], meta["fortran_order"]
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
        raise FeatureError(f"{path}: corrupt .npy header; delete it (and its .len) and dump again") from None
    if descr != _DESCR or fortran or len(shape) != 2:
        raise FeatureError(f"{path}: holds a {descr} array of shape {shape}, not frames x dims float32; "
                           "delete it (and its .len) or use another output folder")
    return int(shape[0]), int(shape[1]), size


class ShardWriter:
    """Appends frames (rows of a float32 ``frames x dim`` array) to a shard's ``.npy`` in place.

    The header's row count is rewritten after every append, so a killed run leaves at worst a
    partial last row (dropped when the dump resumes). Written here rather than with
    npy-append-array's ``NpyAppendArray``: that class shares one lock between all its instances, so
    an instance finalised by the garbage collector inside another one's ``append`` (e.g. one whose
    constructor raised on a corrupt file) waits forever on a lock its own thread holds.
    """

    def __init__(self, path: str | os.PathLike, *, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        if self.path.is_file():
            self._file: BinaryIO = open(self.path, "r+b")
            try:
                self.rows, found, self._header_size = _read_header(self._file, self.path)
                data = self._file.seek(0, os.SEEK_END) - self._header_size
            except BaseException:
                self._file.close()
                raise
            if found != dim or data != self.rows * dim * 4:
                self._file.close()
                raise FeatureError(
                    f"{self.path}: {found}-dim frames ({data} data bytes for {self.rows} rows) where {dim}-dim "
                    "frames are appended; delete it (and its .len) or use another output folder"
                )
        else:
            self._file = open(self.path, "w+b")
            self.rows, self._header_size = 0, HEADER_BYTES
            self._file.write(_header(0, dim, HEADER_BYTES))

    def append(self, x: np.ndarray) -> None:
        """Append the rows of ``x`` (``n x dim``), then record the new row count in the header."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{self.path}: cannot append shape {x.shape} to ({self.rows}, {self.dim}) frames")
        header = _header(self.rows + len(x), self.dim, self._header_size)
        self._file.seek(0, os.SEEK_END)
        self._file.write(np.ascontiguousarray(x, dtype=_DESCR).tobytes())
        self._file.seek(0)
        self._file.write(header)
        self.rows += len(x)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def state_path(npy: str | os.PathLike) -> Path:
    """The sidecar ``.{split}_{rank}_{nshard}.dump.json`` that records what a dump holds."""
    npy = Path(npy)
    return npy.with_name(f".{npy.stem}.dump.json")


def read_dump_state(npy: str | os.PathLike) -> dict | None:
    """The recorded settings of the dump of ``npy`` (``None``: no sidecar, e.g. fairseq's own dumps)."""
    path = state_path(npy)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FeatureError(
            f"{path}: corrupt dump record ({e.__class__.__name__}); delete it together with "
            f"{Path(npy).name} and {Path(npy).with_suffix('.len').name} and dump again"
        ) from None
    if not isinstance(state, dict):
        raise FeatureError(f"{path}: corrupt dump record (not a JSON object); delete the dump's files and dump again")
    return state


def read_lengths(path: Path) -> np.ndarray:
    """Frames per utterance from a ``.len`` file."""
    if not path.is_file():
        raise FeatureError(f"{path}: .len file not found; dump the features with 'spokenlm dump-features'")
    try:
        lines = path.read_text().split()
    except UnicodeDecodeError:
        raise FeatureError(f"{path}: not a text .len file; dump the features again") from None
    if not all(t.isdigit() for t in lines):
        raise FeatureError(f"{path}: expected one non-negative integer per line")
    return np.asarray([int(t) for t in lines], dtype=np.int64)


def open_shard(npy: str | os.PathLike) -> FeatureShard:
    """Open ``X.npy`` + ``X.len`` and check that they agree."""
    npy = Path(npy)
    if not npy.is_file():
        raise FeatureError(f"{npy}: feature file not found; dump the features with 'spokenlm dump-features'")
    lengths = read_lengths(npy.with_suffix(".len"))
    state = read_dump_state(npy)
    rows = state.get("rows") if state is not None else None
    if isinstance(rows, list) and len(rows) == 2 and len(lengths) != rows[1] - rows[0]:
        raise IncompleteDumpError(
            f"{npy}: incomplete dump, {len(lengths)} of {rows[1] - rows[0]} utterances in {npy.with_suffix('.len').name} "
            f"({state_path(npy).name}); rerun the same 'spokenlm dump-features' command to finish it"
        )
    try:
        feats = np.load(npy, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise FeatureError(f"{npy}: not a readable .npy file ({e}); dump the features again") from None
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
    if not len(x):
        names = ", ".join(str(s.npy) for s in shards)
        raise FeatureError(f"{names}: no frames (a dump of an empty split); dump the features of a non-empty manifest")
    check_finite(x, source=shards[0].npy.parent)
    return x
