"""``spokenlm dump-features``: HuBERT features of a manifest, batched, resumable, fairseq format.

Writes the shard ``{split}_{rank}_{nshard}.npy`` (all frames, float32) + ``.len`` (frames per
row) that fairseq's ``examples/hubert/simple_kmeans`` scripts read (see :mod:`.shards`), and with
``per_utterance`` one ``<utt_id>.npy`` (frames x dims) per utterance for ABX tools.

Utterances are read ahead in a thread, sorted by length inside windows of consecutive rows and
batched up to ``batch_seconds`` of padded audio; :class:`~.encoder.DenseModel` makes batching
exact, and rows are written in manifest order as soon as all earlier rows are done.

Resuming: rows are appended one by one, frames first, then the ``.len`` line. A rerun into the
same folder repairs a torn last write (drops frames without a ``.len`` line, or a partial row),
then continues after the last complete row, so an interrupted and an uninterrupted dump are
identical. A sidecar ``.{split}_{rank}_{nshard}.dump.json`` records what is being dumped, so a
rerun with another checkpoint or layer fails instead of mixing features.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TextIO

import numpy as np

from ..core.audio import read_audio
from ..core.errors import ConfigError, FeatureError, ManifestError
from ..core.io import Manifest, ManifestRow, atomic_path, atomic_write, make_dirs, read_manifest
from ..core.phones import SAMPLE_RATE
from ..core.runtime import cpu_threads
from .shards import ShardWriter, read_dump_state, shard_paths, shard_range, state_path

if TYPE_CHECKING:  # torch loads in seconds: `spokenlm dump-features --help` must not wait for it
    from .encoder import DenseModel

logger = logging.getLogger(__name__)

#: Utterances are length-sorted within windows of this many batches of consecutive rows
#: (bounds the memory held for rows waiting to be written in order).
WINDOW_BATCHES = 16


@dataclass(frozen=True)
class DumpResult:
    """What :func:`dump_features` did."""

    npy: Path
    len: Path
    utterances: int  # rows of the shard now in the files
    dumped: int  # rows computed by this call
    frames: int  # frames computed by this call
    audio_seconds: float  # audio computed by this call
    seconds: float  # wall time of this call


def default_batch_seconds(dense: DenseModel) -> float:
    """Padded audio per batch: large on a GPU, small on a CPU (where batching helps little)."""
    return 300.0 if dense.device.type == "cuda" else 8.0


def _repair(npy: Path, len_path: Path) -> int:
    """Make ``npy``/``len`` a consistent prefix after an interruption; return the rows kept."""
    from npy_append_array import recover

    lengths: list[int] = []
    if len_path.is_file():
        text = len_path.read_text()
        complete = text[: text.rfind("\n") + 1]  # a torn last line is dropped
        lengths = [int(t) for t in complete.split()]
    rows_on_disk = 0
    if npy.is_file():
        try:
            recover(str(npy))  # drops a partial row and rewrites the header's shape
            rows_on_disk = np.load(npy, mmap_mode="r").shape[0]
        except ValueError:  # killed while the very first header was written: start over
            npy.unlink()
    kept, total = 0, 0
    for n in lengths:  # longest prefix of .len lines whose frames are all on disk
        if total + n > rows_on_disk:
            break
        kept, total = kept + 1, total + n
    if npy.is_file() and total < rows_on_disk:
        # Frames appended after the last complete .len line: cut them off.
        arr = np.load(npy, mmap_mode="r")
        header = arr.offset
        row_bytes = int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
        del arr
        with open(npy, "r+b") as f:
            f.truncate(header + total * row_bytes)
        recover(str(npy))
    with atomic_write(len_path) as f:
        f.writelines(f"{n}\n" for n in lengths[:kept])
    return kept


#: Dump-record keys that say where the audio came from (checked apart from the settings).
_WHERE_FROM = ("manifest", "source")


def source_digest(manifest: Manifest, rows: Sequence[ManifestRow]) -> str:
    """What a dump is made from: the rows' paths and sample counts, and their files' sizes and
    modification times (a changed, replaced or re-synthesized file changes it; moving the corpus
    with its times kept, as ``cp -p`` or ``shutil.copytree`` do, does not)."""
    h = hashlib.sha256()
    for row in rows:
        try:
            st = manifest.path(row).stat()
            stamp = f"{st.st_size}\t{st.st_mtime_ns}"
        except FileNotFoundError:
            stamp = "missing"  # reported by the audio reader, with the manifest's root line to check
        h.update(f"{row.relpath}\t{row.num_samples}\t{stamp}\n".encode())
    return h.hexdigest()[:32]


def _check_state(npy: Path, state: dict, *, resuming: bool) -> None:
    """Refuse to resume (or reuse) a dump made with other settings or from other audio; record this
    dump's settings."""
    before = read_dump_state(npy) if resuming else None
    if before is not None:
        diff = {k: (before.get(k), v) for k, v in state.items() if before.get(k) != v and k not in _WHERE_FROM}
        if diff:
            hint = (f"; or resume with the recorded thread count (OMP_NUM_THREADS={before.get('threads')}): "
                    "other counts change the features in the last digits" if set(diff) == {"threads"} else "")
            raise ConfigError(
                f"{npy.parent}: holds a dump made with other settings {diff}; "
                f"use another --out folder or delete the dump's files{hint}"
            )
        if before.get("source") != state["source"]:
            older = "; or made by an older spokenlm that did not record its audio" if "source" not in before else ""
            raise ConfigError(
                f"{npy}: was dumped from other audio than {state['manifest']} lists now (rows, sample counts, "
                f"or files changed since: sizes / modification times differ{older}); delete the dump's files "
                f"({npy.name}, {npy.with_suffix('.len').name}, {state_path(npy).name}) or use another --out folder"
            )
    with atomic_write(state_path(npy)) as f:
        json.dump(state, f, indent=1)


def _windows(rows: Sequence[ManifestRow], max_samples: int) -> Iterator[list[int]]:
    """Consecutive rows holding at most ``max_samples`` samples (at least one row)."""
    window: list[int] = []
    total = 0
    for i, row in enumerate(rows):
        if window and total + row.num_samples > max_samples:
            yield window
            window, total = [], 0
        window.append(i)
        total += row.num_samples
    if window:
        yield window


def _batches(lengths: dict[int, int], max_samples: int) -> list[list[int]]:
    """Greedy length-sorted batches whose padded size stays under ``max_samples``."""
    order = sorted(lengths, key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        # Sorted by decreasing length: the batch's first item sets its padded length.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_samples:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def dump_features(
    dense: DenseModel,
    manifest: Manifest | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str | None = None,
    nshard: int = 1,
    rank: int = 0,
    per_utterance: bool = False,
    batch_seconds: float | None = None,
    progress: bool = True,
    max_utterances: int | None = None,
    downmix: bool = False,
) -> DumpResult:
    """Dump ``dense``'s features of shard ``rank``/``nshard`` of ``manifest`` into ``out_dir``.

    :param split: shard name prefix; defaults to the manifest file's stem.
    :param per_utterance: also write ``out_dir/<utt_id>.npy``.
    :param batch_seconds: padded audio per forward pass (default: 300 s on GPU, 8 s on CPU; 0: one
        utterance per forward pass). Resume with the same value for bit-identical features.
    :param max_utterances: stop after computing this many rows (a partial run, resumed by the next
        call, e.g. for time-limited jobs).
    :param downmix: average the channels of multi-channel audio (default: refuse it).

    A failure before the shard's first row is written removes the files this call created, so the
    next run starts afresh (e.g. after an unreadable first file is taken out of the manifest).
    """
    manifest_path = "the manifest given"
    if not isinstance(manifest, Manifest):
        split = split or Path(manifest).stem
        manifest_path = str(manifest)
        manifest = read_manifest(manifest)
    if split is None:
        raise ConfigError("dump_features: pass split= when giving a Manifest object")
    if not len(manifest):
        raise ManifestError(f"{manifest_path}: no utterances (only the root line); nothing to dump")
    out_dir = make_dirs(out_dir)
    npy, len_path = shard_paths(out_dir, split, nshard, rank)
    start, end = shard_range(len(manifest), nshard, rank)
    rows = manifest.rows[start:end]

    state = {"model": dense.name, "fingerprint": dense.fingerprint, "layer": dense.layer, "dim": dense.dim,
             "split": split, "rows": [start, end], "per_utterance": per_utterance, "threads": cpu_threads(dense.device),
             "manifest": str(manifest_path), "source": source_digest(manifest, rows)}
    done = _resume_point(npy, len_path, state, rows=len(rows))
    stop = len(rows) if max_utterances is None else min(len(rows), done + max_utterances)
    batch_samples = int((default_batch_seconds(dense) if batch_seconds is None else batch_seconds) * SAMPLE_RATE)
    plan = _plan(rows, done=done, stop=stop, batch_samples=batch_samples)
    t0 = time.perf_counter()
    bar = _progress_bar(sum(r.num_samples for r in rows[done:stop]), done=done, total_rows=len(rows),
                        enabled=progress)
    shard = _ShardAppender(manifest=manifest, rows=rows, out_dir=out_dir, per_utterance=per_utterance, stop=stop,
                           bar=bar, t0=t0, next_row=done)

    def read(batches: list[list[int]]) -> dict[int, np.ndarray]:
        return {i: read_audio(manifest.path(rows[i]), expected_samples=rows[i].num_samples, downmix=downmix)
                for batch in batches for i in batch}

    try:
        with ShardWriter(npy, dim=dense.dim) as feats_file, open(len_path, "a") as len_file, \
                ThreadPoolExecutor(max_workers=1) as pool:
            for batches, audio in _read_ahead(plan, read=read, pool=pool):
                shard.write_window(dense, batches, audio, feats=feats_file, lens=len_file)
    except BaseException:
        bar.close()
        if shard.next_row == 0:  # nothing of the shard on disk: leave no state that blocks the next run
            for path in (npy, len_path, state_path(npy)):
                path.unlink(missing_ok=True)
        raise
    bar.close()
    return DumpResult(npy=npy, len=len_path, utterances=shard.next_row, dumped=shard.next_row - done,
                      frames=shard.frames, audio_seconds=shard.audio_seconds, seconds=time.perf_counter() - t0)


def _resume_point(npy: Path, len_path: Path, state: dict, *, rows: int) -> int:
    """The rows of the shard already on disk (after a repair), once the dump's settings are checked
    against an earlier run's and recorded; a new shard starts with an empty ``.len``."""
    resuming = npy.is_file() or len_path.is_file()
    _check_state(npy, state, resuming=resuming)
    done = _repair(npy, len_path) if resuming else 0
    if not resuming:
        len_path.write_text("")
    if done > rows:
        raise FeatureError(f"{len_path}: {done} rows but the shard has {rows}; the manifest changed, dump again")
    return done


def _read_ahead(plan: list[list[list[int]]], *, read: Callable[[list[list[int]]], dict[int, np.ndarray]],
                pool: ThreadPoolExecutor) -> Iterator[tuple[list[list[int]], dict[int, np.ndarray]]]:
    """Each window's batches and audio; the next window is read in ``pool`` while this one is computed."""
    pending = pool.submit(read, plan[0]) if plan else None
    for k, batches in enumerate(plan):
        assert pending is not None  # submitted before the loop, and at the end of each step but the last
        audio = pending.result()
        if k + 1 < len(plan):  # read the next window while this one is computed
            pending = pool.submit(read, plan[k + 1])
        yield batches, audio


@dataclass
class _ShardAppender:
    """Computes the rows of a window and appends them to the shard in manifest order, counting what
    this call wrote."""

    manifest: Manifest
    rows: Sequence[ManifestRow]
    out_dir: Path
    per_utterance: bool
    stop: int  # the row to stop before
    bar: Any  # tqdm
    t0: float  # when the call started (for the speed shown)
    next_row: int  # the next row to write
    frames: int = 0
    audio_seconds: float = 0.0

    def write_window(self, dense: DenseModel, batches: list[list[int]], audio: dict[int, np.ndarray], *,
                     feats: ShardWriter, lens: TextIO) -> None:
        """Compute each batch of the window and write every row whose earlier rows are written."""
        ready: dict[int, np.ndarray] = {}
        for batch in batches:
            for i, f in zip(batch, dense.batch([audio[i] for i in batch])):
                if i >= self.next_row:  # rows before next_row were written by an earlier run
                    ready[i] = f.cpu().numpy()
            while self.next_row in ready and self.next_row < self.stop:  # write rows in manifest order
                self._append(ready.pop(self.next_row), samples=len(audio[self.next_row]), feats=feats, lens=lens)

    def _append(self, x: np.ndarray, *, samples: int, feats: ShardWriter, lens: TextIO) -> None:
        """Append the features ``x`` of row ``next_row``: frames first, then its ``.len`` line."""
        row = self.rows[self.next_row]
        if not np.isfinite(x).all():
            raise FeatureError(f"{self.manifest.path(row)}: the model produced NaN/inf features (try --dtype float32)")
        if self.per_utterance:
            with atomic_path(self.out_dir / f"{row.utt_id}.npy") as tmp:
                np.save(tmp, x)
        feats.append(x)
        lens.write(f"{len(x)}\n")
        lens.flush()
        self.frames += len(x)
        seconds = samples / SAMPLE_RATE
        self.audio_seconds += seconds
        self.bar.update(seconds / 3600)
        speed = self.audio_seconds / (time.perf_counter() - self.t0)
        self.bar.set_postfix_str(f"{speed:.0f}x real time", refresh=False)
        self.next_row += 1


def _plan(rows: Sequence[ManifestRow], *, done: int, stop: int, batch_samples: int) -> list[list[list[int]]]:
    """Batches (row indices) to compute for rows ``[done, stop)``, grouped by window.

    Windows and batches are cut from the whole shard, whatever ``done`` is, so a resumed dump
    computes every row in the same batch as an uninterrupted one (bit-identical features); a batch
    holding rows already written is recomputed and those rows dropped.
    """
    plan = []
    for window in _windows(rows, WINDOW_BATCHES * batch_samples):
        batches = _batches({i: rows[i].num_samples for i in window}, batch_samples)
        needed = [b for b in batches if any(done <= i < stop for i in b)]
        if needed:
            plan.append(needed)
    return plan


def _progress_bar(samples: int, *, done: int, total_rows: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=samples / SAMPLE_RATE / 3600,
        unit="h",
        desc=f"dump ({done}/{total_rows} rows done before)" if done else "dump",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} h audio [{elapsed}<{remaining}, {postfix}]",
        disable=not enabled,
    )


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="fairseq HuBERT checkpoint (pretrained, or fine-tuned by spokenlm)")
    parser.add_argument("--layer", required=True,
                        help="transformer layer 1..N (fairseq's output_layer), or 'logits' (phone logits "
                             "of a fine-tuned classifier)")
    parser.add_argument("--manifest", required=True, type=Path, help="fairseq manifest X.tsv (split name = X)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--nshard", type=int, default=1, help="number of shards (default 1)")
    parser.add_argument("--rank", type=int, default=0, help="shard to dump, 0..nshard-1 (default 0)")
    parser.add_argument("--per-utterance", action="store_true",
                        help="also write OUT/<utt_id>.npy (frames x dims) per utterance, for ABX")
    parser.add_argument("--batch-seconds", type=float, default=None,
                        help="padded audio per forward pass (default: 300 on GPU, 8 on CPU; "
                             "0: one utterance per forward pass)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = CUDA when available")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="auto = bfloat16 autocast on GPU, float32 on CPU; features are saved as float32")
    parser.add_argument("--downmix", action="store_true",
                        help="average the channels of multi-channel audio (default: refuse it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.manifest)
    if not 0 <= args.rank < args.nshard:
        raise ConfigError(f"--rank {args.rank} / --nshard {args.nshard}: need 0 <= rank < nshard")
    from .encoder import DenseModel, parse_layer

    dense = DenseModel.from_checkpoint(args.checkpoint, layer=parse_layer(args.layer), device=args.device,
                                       dtype=args.dtype)
    res = dump_features(dense, manifest, args.out, split=args.manifest.stem, nshard=args.nshard, rank=args.rank,
                        per_utterance=args.per_utterance, batch_seconds=args.batch_seconds,
                        progress=not args.no_progress, downmix=args.downmix)
    speed = res.audio_seconds / res.seconds if res.seconds > 0 else float("nan")
    print(f"{res.npy}: {res.utterances} utterances ({res.dumped} computed now: {res.frames} frames, "
          f"{res.audio_seconds / 3600:.3f} h audio in {res.seconds:.1f} s, {speed:.0f}x real time; "
          f"{dense.dim} dims, layer {dense.layer}, {dense.device} {str(dense.dtype).removeprefix('torch.')})")
    return 0
