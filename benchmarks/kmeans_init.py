"""k-means initialisation: the greedy k-means++ of ``fit_kmeans`` against sklearn's and faiss's own.

Every row fits the same frames with the same faiss Lloyd iterations (``fit_kmeans``'s settings);
only the seeding differs:

- ``greedy k-means++ (fit_kmeans)``: the baseline, what ``spokenlm kmeans fit`` does;
- ``sklearn kmeans_plusplus``: ``sklearn.cluster.kmeans_plusplus`` (the same greedy algorithm,
  float64) on the same ``INIT_POINTS`` random frames;
- ``faiss random`` (``--init random``, faiss's default), ``faiss k-means++`` (plain, one candidate
  per step) and ``faiss AFK-MC2`` (``ClusteringParameters.init_method``).

Columns: seeding and total wall time, inertia on every training frame, and (with ``--labels``)
PNMI of the test split's units against the gold frame labels, as the demo's units stage scores
them; mean and range over ``--seeds``. faiss's own inits seed inside its training: their seeding
time is part of the total. Input: a demo feature dump (``train`` / ``test`` splits), or without
``--features`` clustered random frames (``benchmarks/kmeans_speed.py``'s) of ``--frames x --dim``.

    # the demo's full setting: k = 100, 20 iterations on 100k frames
    OMP_NUM_THREADS=1 python benchmarks/kmeans_init.py --features DEMO/units/base/layer3 \\
        --labels CORPUS/labels/test.phn
    # HuBERT Base's width and the paper's k (seeding cost)
    OMP_NUM_THREADS=1 python benchmarks/kmeans_init.py --frames 30000 --dim 768 --k 500 --niter 10 --seeds 0
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", help="a feature dump folder with train (and test) splits")
    parser.add_argument("--frames", type=int, default=30_000, help="without --features: clustered random frames")
    parser.add_argument("--dim", type=int, default=768, help="without --features: their width")
    parser.add_argument("--labels", help="gold frame labels of the test split (test.phn): adds PNMI")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--max-points", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from sklearn.cluster import kmeans_plusplus

    from spokenlm_plugin.units.kmeans import INIT_POINTS, _faiss, _kmeans_plusplus, assign_units, inertia
    from spokenlm_plugin.units.quality import unit_quality
    from spokenlm_plugin.units.shards import open_shards, sample_frames

    faiss = _faiss()
    if args.features:
        everything = sample_frames(open_shards(args.features, split="train"))
    else:
        from kmeans_speed import clustered_frames

        everything = clustered_frames(args.frames, args.dim, args.k)
    labels = [line.split() for line in Path(args.labels).read_text().splitlines()] if args.labels else None
    test = list(open_shards(args.features, split="test")[0].utterances()) if labels else []

    def subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(x[np.sort(rng.choice(x.shape[0], size=n, replace=False))]) if len(x) > n else x

    def sklearn_seeds(x: np.ndarray, k: int, seed: int) -> np.ndarray:
        sub = subsample(x, INIT_POINTS, np.random.default_rng(seed))
        return np.ascontiguousarray(kmeans_plusplus(sub, k, random_state=seed)[0], dtype=np.float32)

    def ours(x: np.ndarray, k: int, seed: int) -> np.ndarray:
        return _kmeans_plusplus(x, k, points=INIT_POINTS, seed=seed)

    methods: list[tuple[str, Callable | None, int]] = [
        ("greedy k-means++ (fit_kmeans, baseline)", ours, faiss.ClusteringInitMethod_RANDOM),
        ("sklearn kmeans_plusplus", sklearn_seeds, faiss.ClusteringInitMethod_RANDOM),
        ("faiss random (its default)", None, faiss.ClusteringInitMethod_RANDOM),
        ("faiss k-means++ (plain)", None, faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS),
        ("faiss AFK-MC2", None, faiss.ClusteringInitMethod_AFK_MC2),
    ]
    rows = []
    for name, seeder, init_method in methods:
        init_s, total_s, inertias, pnmis = [], [], [], []
        for seed in args.seeds:
            x = subsample(everything, args.max_points, np.random.default_rng(seed))  # as fit_kmeans's max_points
            t0 = time.perf_counter()
            seeds = seeder(x, args.k, seed) if seeder else None
            t1 = time.perf_counter()
            km = faiss.Kmeans(x.shape[1], args.k, niter=args.niter, seed=seed, init_method=init_method,
                              max_points_per_centroid=int(np.ceil(x.shape[0] / args.k)) + 1,
                              min_points_per_centroid=1)
            km.train(x, init_centroids=seeds)
            total_s.append(time.perf_counter() - t0)
            if seeder:
                init_s.append(t1 - t0)
            centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
            inertias.append(inertia(everything, centroids))
            if labels:
                pnmis.append(unit_quality([assign_units(np.asarray(u), centroids) for u in test], labels).pnmi)
        rows.append((name, init_s, total_s, inertias, pnmis))

    def cell(values: list[float], fmt: str) -> str:
        return f"{np.mean(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})" if values else "-"

    print(f"{everything.shape[0]} train frames x {everything.shape[1]} dims ({args.features or 'clustered'}), "
          f"k = {args.k}, "
          f"{args.niter} iterations on {min(args.max_points, len(everything))} frames; seeds {args.seeds}; "
          f"{os.cpu_count()} CPU cores ({platform.machine()}), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print()
    base = np.mean(rows[0][3])
    print("| initialisation | seeding s | total s | inertia (all train frames) | inertia / baseline | test PNMI |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, init_s, total_s, inertias, pnmis in rows:
        print(f"| {name} | {cell(init_s, '.2f')} | {cell(total_s, '.2f')} | {cell(inertias, '.2f')} | "
              f"{np.mean(inertias) / base:.4f} | {cell(pnmis, '.3f')} |")


if __name__ == "__main__":
    main()
