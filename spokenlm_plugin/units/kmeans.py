"""k-means quantizers: fit with faiss, assign units, read published sklearn/joblib models.

Centroids are stored as a plain ``.npy`` array (``k x dims``, float32; row ``u`` is unit ``u``),
readable without this package. fairseq and the paper publish sklearn ``MiniBatchKMeans`` models
pickled with joblib (``km500-base-l11.joblib``); :func:`load_centroids` reads their
``cluster_centers_`` so they can be applied here.

``spokenlm kmeans fit`` / ``spokenlm kmeans assign`` are the command-line front end. A ``.km``
file has one line per manifest row with the space-separated unit of every frame; ``--dedup``
also writes ``X.dedup.km`` (runs of a unit collapsed to one) and ``X.dur`` (the run lengths, in
frames), line for line.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np

from ..core.errors import CheckpointError, ConfigError, FeatureError
from ..core.io import atomic_path
from ..core.runtime import wants_gpu
from ..core.km import dedup_paths, write_km
from .shards import check_finite, open_shards, sample_frames

InitName = Literal["k-means++", "random"]

#: Frames drawn to seed k-means++ (fairseq's MiniBatchKMeans seeds on 3 x batch_size = 30000).
INIT_POINTS = 30_000


def _faiss():
    # faiss's loader reports at INFO every optimised build it tries and fails to load
    # (ModuleNotFoundError lines on every command); only a real failure to import matters.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss  # imported lazily: it takes a moment and the CLI dispatcher stays fast

    return faiss


def gpu_available() -> bool:
    """Whether the installed faiss has GPU support and sees a GPU (faiss-gpu)."""
    faiss = _faiss()
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def _check_matrix(x: np.ndarray, *, name: str) -> np.ndarray:
    if x.ndim != 2 or x.shape[0] == 0:
        raise FeatureError(f"{name}: expected a non-empty 2-D array (frames x dims), got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    check_finite(x, source=name)
    return x


def fit_kmeans(
    x: np.ndarray,
    *,
    k: int,
    niter: int = 10,
    seed: int = 0,
    max_points: int | None = None,
    init: InitName = "k-means++",
    init_points: int = INIT_POINTS,
    nredo: int = 1,
    gpu: bool | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Fit ``k`` centroids to the rows of ``x``: k-means++ seeding, then faiss Lloyd iterations.

    :param x: frames x dims features.
    :param k: number of clusters (units).
    :param niter: Lloyd iterations (full batch).
    :param seed: seed of the frame subsampling and of the initialisation.
    :param max_points: fit on at most this many frames, drawn uniformly without replacement
        (``None``: all of them; faiss's own silent subsampling to 256 frames per centroid is off).
    :param init: ``"k-means++"``: greedy k-means++ (as sklearn, fairseq's recipe) on
        ``init_points`` random frames; ``"random"``: ``k`` random frames (faiss's default).
        faiss's own k-means++ is not used: it is the plain (one-candidate) variant, which ends
        +18 % in inertia on clustered 768-d frames, +0.2-1.3 % on the demo's (benchmarks/kmeans_init.py).
    :param nredo: run this many times (seeds ``seed``, ``seed + 1``, ...), keep the lowest inertia.
    :param gpu: use faiss-gpu; ``None``: when available.
    :return: ``k x dims`` float32 centroids.
    """
    faiss = _faiss()
    x = _check_matrix(x, name="k-means input")
    if max_points is not None and x.shape[0] > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], size=max_points, replace=False))
        x = np.ascontiguousarray(x[rows])
    if not 1 <= k <= x.shape[0]:
        raise ConfigError(f"k={k}: need 1 <= k <= the number of frames ({x.shape[0]}); lower --k or use more data")
    use_gpu = gpu_available() if gpu is None else gpu
    if use_gpu and not gpu_available():
        raise ConfigError("gpu=True but faiss sees no GPU; install faiss-gpu (pip install 'spokenlm_plugin[gpu]')")
    best, best_obj = None, np.inf
    for run in range(nredo):
        km = faiss.Kmeans(
            x.shape[1], k, niter=niter, seed=seed + run, verbose=verbose, gpu=bool(use_gpu),
            # faiss otherwise subsamples to 256 points per centroid without saying so.
            max_points_per_centroid=int(np.ceil(x.shape[0] / k)) + 1, min_points_per_centroid=1,
        )
        seeds = _kmeans_plusplus(x, k, points=init_points, seed=seed + run) if init == "k-means++" else None
        obj = km.train(x, init_centroids=seeds)
        if best is None or obj < best_obj:
            best, best_obj = km.centroids, obj
    return np.ascontiguousarray(best, dtype=np.float32)


def _kmeans_plusplus(x: np.ndarray, k: int, *, points: int, seed: int) -> np.ndarray:
    """Greedy k-means++ seeds (2 + ln k candidates per step, as sklearn) on ``points`` random rows.

    Kept rather than ``sklearn.cluster.kmeans_plusplus`` (the same algorithm, in float64 chunks):
    equal inertia and PNMI, but 1.8-2.4x slower seeding at HuBERT Base's 768 dims with k = 500
    (30k frames: +50 % on a whole 10-iteration fit). faiss's own inits (random, plain k-means++,
    AFK-MC2) are fast but end +18-29 % in inertia there. benchmarks/kmeans_init.py, RESULTS.md.
    """
    rng = np.random.default_rng(seed)
    if x.shape[0] > points:
        x = np.ascontiguousarray(x[np.sort(rng.choice(x.shape[0], size=max(points, k), replace=False))])
    trials = 2 + int(np.log(k))
    sq = np.einsum("ij,ij->i", x, x)
    chosen = [int(rng.integers(x.shape[0]))]
    d2 = np.maximum(sq + sq[chosen[0]] - 2 * (x @ x[chosen[0]]), 0)  # squared distance to the nearest seed
    for _ in range(1, k):
        cumulative = np.cumsum(d2, dtype=np.float64)
        # Candidates drawn with probability proportional to d2; keep the one that lowers the potential most.
        candidates = np.minimum(np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right"),
                                x.shape[0] - 1)
        d2_new = np.maximum(sq[None, :] + sq[candidates][:, None] - 2 * (x[candidates] @ x.T), 0)
        np.minimum(d2_new, d2[None, :], out=d2_new)
        best = int(np.argmin(d2_new.sum(axis=1, dtype=np.float64)))
        d2 = d2_new[best]
        chosen.append(int(candidates[best]))
    return np.ascontiguousarray(x[chosen], dtype=np.float32)


def _index(centroids: np.ndarray, *, gpu: bool = False):
    faiss = _faiss()
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return faiss.index_cpu_to_all_gpus(index) if gpu else index


def _nearest(x: np.ndarray, centroids: np.ndarray, *, gpu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x = _check_matrix(x, name="features")
    if x.shape[1] != centroids.shape[1]:
        raise FeatureError(
            f"features have {x.shape[1]} dims but the centroids {centroids.shape[1]}; "
            "use the quantizer fitted on this model and layer"
        )
    dist, idx = _index(centroids, gpu=gpu).search(x, 1)
    return dist[:, 0], idx[:, 0].astype(np.int64)


def assign_units(x: np.ndarray, centroids: np.ndarray, *, gpu: bool = False) -> np.ndarray:
    """Unit (index of the nearest centroid, squared L2) of every row of ``x``, as int64."""
    return _nearest(x, centroids, gpu=gpu)[1]


def inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    """Mean squared distance of the rows of ``x`` to their nearest centroid."""
    return float(np.mean(_nearest(x, centroids)[0], dtype=np.float64))


def load_centroids(path: str | os.PathLike) -> np.ndarray:
    """Centroids from a ``.npy`` (k x dims) or a joblib-pickled sklearn k-means model.

    A joblib file is unpickled: open only quantizers from a source you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: centroids file not found")
    if path.suffix == ".npy":
        try:
            centroids = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise CheckpointError(
                f"{path}: not a readable .npy centroids file ({e}); fit them again with 'spokenlm kmeans fit'"
            ) from None
    elif path.suffix in {".joblib", ".pkl", ".pickle", ".bin"}:
        import joblib

        try:
            model = joblib.load(path)
        except Exception as e:  # unpickling garbage raises anything (UnpicklingError, EOFError, KeyError, ...)
            raise CheckpointError(
                f"{path}: not a readable joblib k-means model ({type(e).__name__}: {e}); "
                "give the .joblib file of a fitted sklearn k-means, or a k x dims .npy"
            ) from None
        if not hasattr(model, "cluster_centers_"):
            raise CheckpointError(
                f"{path}: {type(model).__name__} is not a fitted k-means model (no cluster_centers_)"
            )
        centroids = np.asarray(model.cluster_centers_)
    else:
        raise CheckpointError(f"{path}: unknown quantizer format; expected .npy (k x dims) or a joblib sklearn model")
    if centroids.ndim != 2 or centroids.shape[0] == 0 or not np.issubdtype(centroids.dtype, np.number) \
            or not np.isfinite(centroids).all():
        raise CheckpointError(f"{path}: centroids must be a finite 2-D array (k x dims), got shape {centroids.shape}")
    return np.ascontiguousarray(centroids, dtype=np.float32)


def save_centroids(path: str | os.PathLike, centroids: np.ndarray) -> None:
    """Write centroids as a plain ``k x dims`` float32 ``.npy`` (atomically)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(centroids, dtype=np.float32))


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kmeans_command", metavar="{fit,assign}", required=True)

    def features_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--features", required=True, type=Path,
                       help="a feature folder (with --split/--nshard) or one shard's .npy (its .len beside it)")
        p.add_argument("--split", help="split name of the shards {split}_{rank}_{nshard}.npy (the manifest's stem)")
        p.add_argument("--nshard", type=int, default=1, help="number of shards (default 1)")

    fit = sub.add_parser("fit", help="fit k-means centroids with faiss; save them as a k x dims .npy",
                         description="Fit k-means centroids with faiss; save them as a k x dims float32 .npy.")
    features_args(fit)
    fit.add_argument("--k", type=int, required=True, help="number of clusters (units)")
    fit.add_argument("--niter", type=int, default=10, help="Lloyd iterations (default 10)")
    fit.add_argument("--fraction", type=float, default=1.0,
                     help="fit on this fraction of the utterances, drawn at random (default 1.0)")
    fit.add_argument("--max-points", type=int, default=None, help="fit on at most this many frames")
    fit.add_argument("--init", choices=["k-means++", "random"], default="k-means++", help="initialisation")
    fit.add_argument("--nredo", type=int, default=1, help="restarts; the lowest inertia wins (default 1)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fit.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                     help="faiss GPU (needs faiss-gpu) or CPU; auto = GPU when available")
    fit.add_argument("--out", type=Path, required=True, help="output centroids .npy")
    fit.set_defaults(_kmeans=_run_fit)

    assign = sub.add_parser("assign", help="write units (.km) of dumped features",
                            description="Assign every frame to its nearest centroid; write a .km file.")
    features_args(assign)
    assign.add_argument("--centroids", type=Path, required=True,
                        help="centroids .npy (k x dims) or a joblib sklearn k-means model")
    assign.add_argument("--out", type=Path, required=True, help="output .km (one line of units per manifest row)")
    assign.add_argument("--dedup", action="store_true",
                        help="also write X.dedup.km (runs collapsed) and X.dur (run lengths in frames)")
    assign.set_defaults(_kmeans=_run_assign)


def _run_fit(args: argparse.Namespace) -> int:
    shards = open_shards(args.features, split=args.split, nshard=args.nshard)
    x = sample_frames(shards, fraction=args.fraction, seed=args.seed)
    gpu = wants_gpu(args.device, available=gpu_available(), backend="faiss", fix="install faiss-gpu")
    t0 = time.perf_counter()
    centroids = fit_kmeans(x, k=args.k, niter=args.niter, seed=args.seed, max_points=args.max_points,
                           init=args.init, nredo=args.nredo, gpu=gpu)
    seconds = time.perf_counter() - t0
    save_centroids(args.out, centroids)
    print(f"{args.out}: {args.k} centroids x {x.shape[1]} dims fitted on {x.shape[0]} frames in {seconds:.1f} s; "
          f"inertia {inertia(x, centroids):.4f}")
    return 0


_ASSIGN_BLOCK = 1 << 18


def _run_assign(args: argparse.Namespace) -> int:
    centroids = load_centroids(args.centroids)
    gpu = gpu_available()
    units = []
    for shard in open_shards(args.features, split=args.split, nshard=args.nshard):
        feats = shard.frames()
        if feats.shape[1] != centroids.shape[1]:
            raise FeatureError(
                f"{shard.npy}: {feats.shape[1]}-dim features but {args.centroids} has {centroids.shape[1]}-dim "
                "centroids; use the quantizer fitted on this model and layer"
            )
        # Blocks of frames keep the memory bounded for shards larger than RAM.
        blocks = [np.zeros(0, np.int64)]
        for a in range(0, feats.shape[0], _ASSIGN_BLOCK):
            block = np.asarray(feats[a : a + _ASSIGN_BLOCK], dtype=np.float32)
            check_finite(block, source=f"{shard.npy} (from row {a})")
            blocks.append(assign_units(block, centroids, gpu=gpu))
        ids = np.concatenate(blocks)
        units += np.split(ids, np.cumsum(shard.lengths)[:-1])
    n = write_km(args.out, units, dedup=args.dedup)
    extra = " (+ {}, {})".format(*(p.name for p in dedup_paths(args.out))) if args.dedup else ""
    print(f"{args.out}: units of {n} utterances{extra}")
    return 0


def run(args: argparse.Namespace) -> int:
    return args._kmeans(args)
