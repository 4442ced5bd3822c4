"""k-means speed: faiss (``spokenlm kmeans fit``) against fairseq's sklearn MiniBatchKMeans recipe.

Both fit the same frames (faiss with its defaults, and with ``--nredo 3``); the table gives wall
time and final inertia (mean squared distance of every frame to its nearest centroid, on all
frames) and their ratios. fairseq's settings
(``examples/hubert/simple_kmeans/learn_kmeans.py``): k-means++, batch 10000, n_init 20,
max_iter 100, tol 0, max_no_improvement 100, reassignment_ratio 0.

Frames: random but clustered (a mixture of 4k modes in a 64-d subspace plus isotropic noise), or
real features with ``--features X.npy``.

    python benchmarks/kmeans_speed.py            # 200k x 768, k = 500 (the issue's setting)
    python benchmarks/kmeans_speed.py --small    # 50k x 256, k = 100 (a quick run)
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def clustered_frames(n: int, dim: int, k: int, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(64, dim)) / 8
    modes = rng.normal(size=(4 * k, 64)) @ basis * 3
    weights = rng.dirichlet(np.ones(4 * k))
    x = modes[rng.choice(4 * k, size=n, p=weights)] + rng.normal(scale=0.5, size=(n, dim))
    return x.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="50k x 256 frames, k = 100")
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--features", help="a .npy of real frames (frames x dims) instead of synthetic ones")
    parser.add_argument("--niter", type=int, default=None, help="faiss Lloyd iterations (default: fit_kmeans's)")
    parser.add_argument("--max-points", type=int, default=None, help="faiss: fit on at most this many frames")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.small:
        args.frames, args.dim, args.k = 50_000, 256, 100

    from sklearn.cluster import MiniBatchKMeans

    from spokenlm_plugin.units.kmeans import fit_kmeans, inertia

    if args.features:
        x = np.ascontiguousarray(np.load(args.features, mmap_mode="r")[: args.frames], dtype=np.float32)
    else:
        x = clustered_frames(args.frames, args.dim, args.k, seed=args.seed)

    faiss_kwargs = {k: v for k, v in (("niter", args.niter), ("max_points", args.max_points)) if v is not None}
    faiss_rows = []
    for nredo in (1, 3):  # the default, and the best of 3 seedings (k-means++ seeds vary by about 1 %)
        t0 = time.perf_counter()
        centroids = fit_kmeans(x, k=args.k, seed=args.seed, nredo=nredo, **faiss_kwargs)
        faiss_rows.append((nredo, time.perf_counter() - t0, inertia(x, centroids)))

    sk = MiniBatchKMeans(n_clusters=args.k, init="k-means++", max_iter=100, batch_size=10000, n_init=20, tol=0.0,
                         max_no_improvement=100, reassignment_ratio=0.0, compute_labels=False, init_size=None,
                         random_state=args.seed)
    t0 = time.perf_counter()
    sk.fit(x)
    sk_s = time.perf_counter() - t0
    sk_inertia = inertia(x, sk.cluster_centers_.astype(np.float32))

    print(f"{x.shape[0]} frames x {x.shape[1]} dims, k = {args.k}; {os.cpu_count()} CPU cores "
          f"({platform.machine()}); faiss {faiss_kwargs or 'defaults'}")
    print()
    print("| method | wall time (s) | inertia | time ratio (sklearn / faiss) | inertia ratio (faiss / sklearn) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| sklearn MiniBatchKMeans (fairseq recipe) | {sk_s:.1f} | {sk_inertia:.4f} | 1.0 | 1.000 |")
    for nredo, seconds, value in faiss_rows:
        name = "faiss (spokenlm kmeans fit)" + (f", --nredo {nredo}" if nredo > 1 else "")
        print(f"| {name} | {seconds:.1f} | {value:.4f} | {sk_s / seconds:.1f} | {value / sk_inertia:.4f} |")


if __name__ == "__main__":
    main()
