"""k-means quantizers: fit with faiss, assign units, read published sklearn/joblib models.

Centroids are stored as a plain ``.npy`` array (``k x dims``, float32; row ``u`` is unit ``u``),
readable without this package. fairseq and the paper publish sklearn ``MiniBatchKMeans`` models
pickled with joblib (``km500-base-l11.joblib``, numpy 2 / scikit-learn 1.5); :func:`load_centroids`
reads their ``cluster_centers_`` with a restricted unpickler (no sklearn code, any numpy / sklearn
version) so they can be applied here.

``spokenlm kmeans fit`` / ``spokenlm kmeans assign`` are the command-line front end. A ``.km``
file has one line per manifest row with the space-separated unit of every frame; ``--dedup``
also writes ``X.dedup.km`` (runs of a unit collapsed to one) and ``X.dur`` (the run lengths, in
frames), line for line.
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import math
import os
import pickle
import struct
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal, Self

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
    """Centroids from a ``.npy`` (k x dims) or a pickled sklearn ``KMeans`` / ``MiniBatchKMeans``.

    Pickles (``.joblib``, ``.pkl``, ...) are read by :func:`read_sklearn_centroids`: without sklearn
    or joblib code and whatever numpy / scikit-learn versions wrote them.
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
    elif path.suffix in PICKLE_SUFFIXES:
        centroids = read_sklearn_centroids(path)
    else:
        raise CheckpointError(f"{path}: unknown quantizer format; expected .npy (k x dims) or a joblib sklearn model")
    if centroids.ndim != 2 or centroids.shape[0] == 0 or not np.issubdtype(centroids.dtype, np.number) \
            or not np.isfinite(centroids).all():
        raise CheckpointError(f"{path}: centroids must be a finite 2-D array (k x dims), got shape {centroids.shape}")
    return np.ascontiguousarray(centroids, dtype=np.float32)


# ------------------------------------------------------------ published sklearn k-means pickles
#
# fairseq's simple_kmeans recipe and the paper (km500-base-l11.joblib) publish sklearn MiniBatchKMeans
# models pickled by joblib, the paper's under numpy >= 2.1 and scikit-learn 1.5.2. joblib.load here
# (numpy 1.26, a newer scikit-learn) runs sklearn's __setstate__ (InconsistentVersionWarning, and whatever
# a version's changes to the class do to an older state), and fails on what numpy 2 writes that numpy 1.26's `numpy._core` stubs lack
# (`numpy._core.numeric._frombuffer`, protocol-5 arrays; a RandomState as random_state: "<class
# 'numpy.random._mt19937.MT19937'> is not a known BitGenerator module"). Assignment needs only
# cluster_centers_ (nearest centroid, squared L2), so the pickle is read by a restricted unpickler:
# numpy 2's `numpy._core.*` names map to numpy 1's `numpy.core.*`; numpy's array / dtype / scalar
# builders are the only functions it calls; the k-means class becomes a plain record of its state; any
# other class or function the pickle names becomes an inert placeholder (never imported, never run).
# joblib's array records (NumpyArrayWrapper + the raw bytes after them) are read here as joblib does.

#: File suffixes read as pickles.
PICKLE_SUFFIXES = frozenset({".joblib", ".pkl", ".pickle", ".bin"})

#: sklearn classes whose units are the nearest centroid in squared L2 (not BisectingKMeans: a tree).
_KMEANS_CLASSES = frozenset({"KMeans", "MiniBatchKMeans"})
_KMEANS_MODULES = frozenset({"sklearn.cluster", "sklearn.cluster._kmeans", "sklearn.cluster.k_means_"})

#: The functions a pickle may call (numpy's in numpy 1's spelling): they rebuild arrays, dtypes,
#: scalars and bytes from data and run no other code.
_NUMPY_BUILDERS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocols 0-2 write bytes as codecs.encode(text, "latin1")
})

#: Where numpy's core lives in the installed numpy (``numpy.core`` before 2.0, ``numpy._core`` since).
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"

#: joblib's compressed dumps, by leading bytes (joblib.dump(..., compress=...)); read whole.
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "lzma"), (b"]\x00\x00", "lzma"),
               (b"x", "zlib"))


class _Placeholder:
    """Stands for a class or function a pickle names that the centroids do not need (a RandomState,
    a callback...): takes any arguments and state, runs nothing."""

    qualname = "?"

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Placeholder:
        return _Placeholder()

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, value: object) -> None:
        pass

    def extend(self, values: object) -> None:
        pass


class _Record(_Placeholder):
    """An object whose pickled state (a dict) is kept as data."""

    state: dict

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        self = super().__new__(cls)
        self.state = {}
        return self

    def __setstate__(self, state: object) -> None:
        self.state = state if isinstance(state, dict) else {}


class _KMeansRecord(_Record):
    """A pickled sklearn KMeans / MiniBatchKMeans: its state, no sklearn code."""


class _ArrayRecord(_Record):
    """joblib's ``NumpyArrayWrapper`` (shape, order, dtype); the array's bytes follow it in the file."""


def _reconstructor(cls: object, base: object, state: object) -> object:
    """``copyreg._reconstructor`` (protocol 0/1 pickles), for the record classes only."""
    return cls() if isinstance(cls, type) and issubclass(cls, _Placeholder) else _Placeholder()


class _UnreadablePickle(Exception):
    """The pickle is not one this reader can take (reported as a CheckpointError with the fix)."""


#: The pure-Python unpickler (as joblib's): its opcode table can be overridden (BUILD, below).
_PyUnpickler: Any = pickle._Unpickler


class _CentroidUnpickler(_PyUnpickler):
    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream)
        self._stream = stream

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3:  # protocols 0-2 write Python 2's module names (copy_reg, __builtin__)
            import _compat_pickle

            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        for prefix in ("numpy._core", "numpy.core"):  # numpy 2 wrote numpy._core.*, numpy 1 numpy.core.*
            if module == prefix or module.startswith(prefix + "."):
                module = "numpy.core" + module[len(prefix):]
        if (module, name) in _NUMPY_BUILDERS:
            real = _NUMPY_CORE + module[len("numpy.core"):] if module.startswith("numpy.core") else module
            return getattr(importlib.import_module(real), name)
        if module in _KMEANS_MODULES and name in _KMEANS_CLASSES:
            return type(name, (_KMeansRecord,), {"qualname": f"{module}.{name}"})
        if module.endswith("joblib.numpy_pickle") and name == "NumpyArrayWrapper":
            return _ArrayRecord
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        return type(name, (_Placeholder,), {"qualname": f"{module}.{name}"})

    def load_build(self) -> None:
        super().load_build()
        if isinstance(self.stack[-1], _ArrayRecord):
            self.stack[-1] = self._read_array(self.stack[-1].state)

    dispatch = _PyUnpickler.dispatch.copy()
    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, header: dict) -> np.ndarray:
        """The array joblib wrote right after its wrapper (joblib.numpy_pickle.NumpyArrayWrapper.read_array)."""
        dtype, shape, order = header.get("dtype"), header.get("shape"), header.get("order", "C")
        if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple) \
                or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise _UnreadablePickle("a joblib array record without a dtype and shape")
        if dtype.hasobject:  # joblib pickles object arrays as a nested pickle: read it with the same rules
            return _CentroidUnpickler(self._stream).load()
        if header.get("numpy_array_alignment_bytes") is not None:  # joblib >= 1.2 pads to align the data
            pad = self._stream.read(1)
            if len(pad) != 1 or len(self._stream.read(pad[0])) != pad[0]:
                raise EOFError("the file ends inside an array")
        count = math.prod(shape)
        data = self._stream.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise EOFError("the file ends inside an array")
        array = np.frombuffer(data, dtype=dtype, count=count)
        array = array.reshape(shape[::-1]).T if order == "F" else array.reshape(shape)
        return array.astype(dtype.newbyteorder("="))


def _decompressed(data: bytes) -> bytes:
    """The pickle inside a joblib dump: the bytes themselves, or decompressed when joblib compressed them."""
    import bz2
    import gzip
    import lzma
    import zlib

    if data.startswith(b"ZF"):
        raise _UnreadablePickle("joblib < 0.10's compressed format")
    for magic, kind in _COMPRESSED:
        if data.startswith(magic):
            decompress: dict[str, Callable[[bytes], bytes]] = {
                "gzip": gzip.decompress, "bz2": bz2.decompress, "lzma": lzma.decompress, "zlib": zlib.decompress}
            try:
                return decompress[kind](data)
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as e:
                raise _UnreadablePickle(f"a damaged {kind} stream ({e})") from None
    return data  # a pickle (or garbage, which the unpickler reports)


def read_sklearn_centroids(path: str | os.PathLike) -> np.ndarray:
    """``cluster_centers_`` of a pickled (joblib or plain) sklearn KMeans / MiniBatchKMeans.

    Reads pickles written under numpy 1 or 2 and any scikit-learn version without running sklearn or
    joblib code; see the notes above. A bare array pickled alone is taken as the centroids.
    """
    path = Path(path)
    convert = (f"convert it where it loads: python -c \"import joblib, numpy; numpy.save('{path.stem}.npy', "
               f"joblib.load('{path}').cluster_centers_)\" and give the .npy")
    try:
        stream = io.BytesIO(_decompressed(path.read_bytes()))
        obj = _CentroidUnpickler(stream).load()
    except _UnreadablePickle as e:
        raise CheckpointError(f"{path}: cannot read this k-means file: {e}; {convert}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, LookupError, ImportError,
            ArithmeticError, MemoryError, RecursionError, struct.error, OSError) as e:
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise CheckpointError(
            f"{path}: not a readable k-means pickle ({type(e).__name__}: {reason}); {convert}"
        ) from None
    if isinstance(obj, np.ndarray):
        return obj
    if not isinstance(obj, _KMeansRecord):
        what = obj.qualname if isinstance(obj, _Placeholder) else f"a {type(obj).__name__}"
        raise CheckpointError(
            f"{path}: holds {what}, not a fitted k-means model (sklearn KMeans / MiniBatchKMeans); "
            "give the quantizer's .joblib or a k x dims .npy"
        )
    centroids = obj.state.get("cluster_centers_")
    if centroids is None:
        raise CheckpointError(
            f"{path}: {obj.qualname} is not a fitted k-means model (no cluster_centers_); fit it before saving"
        )
    if not isinstance(centroids, np.ndarray):
        raise CheckpointError(f"{path}: its cluster_centers_ is not an array ({type(centroids).__name__}); {convert}")
    return centroids


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
