"""k-means: faiss fit, unit assignment (against a brute-force oracle), sklearn/joblib models, .km files."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans

from spokenlm_plugin.cli import main
from spokenlm_plugin.core.errors import CheckpointError, ConfigError, FeatureError
from spokenlm_plugin.core.km import read_km_arrays
from spokenlm_plugin.units.kmeans import assign_units, fit_kmeans, inertia, load_centroids
from spokenlm_plugin.units.shards import open_shards, sample_frames

DIM = 12


def blobs(n: int, k: int, *, seed: int = 0, spread: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` points around ``k`` well-separated centres: (points, centres, true cluster)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(k, DIM))
    truth = rng.integers(0, k, size=n)
    return (centres[truth] + rng.normal(size=(n, DIM))).astype(np.float32), centres.astype(np.float32), truth


def nearest_oracle(x: np.ndarray, centroids: np.ndarray) -> list[int]:
    """Brute force, float64, one frame at a time."""
    out = []
    for frame in x.astype(np.float64):
        best, best_d = -1, np.inf
        for u, c in enumerate(centroids.astype(np.float64)):
            d = float(((frame - c) ** 2).sum())
            if d < best_d:
                best, best_d = u, d
        out.append(best)
    return out


def write_shards(folder: Path, split: str, utterances: list[np.ndarray], nshard: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [round(len(utterances) / nshard * r) for r in range(nshard + 1)]
    for r in range(nshard):
        part = utterances[bounds[r] : bounds[r + 1]]
        np.save(folder / f"{split}_{r}_{nshard}.npy", np.concatenate(part).astype(np.float32))
        (folder / f"{split}_{r}_{nshard}.len").write_text("".join(f"{len(u)}\n" for u in part))


@pytest.fixture()
def shards(tmp_path: Path) -> tuple[Path, list[np.ndarray], np.ndarray]:
    x, centres, _ = blobs(3000, 6, seed=1)
    cuts = np.cumsum(np.random.default_rng(2).integers(20, 120, size=60))
    utterances = [u for u in np.split(x, cuts[cuts < len(x)]) if len(u)]
    write_shards(tmp_path / "feats", "train", utterances, nshard=2)
    return tmp_path / "feats", utterances, centres


def test_fit_recovers_separated_clusters() -> None:
    x, centres, truth = blobs(4000, 8)
    centroids = fit_kmeans(x, k=8, niter=30, seed=0)
    assert centroids.shape == (8, DIM) and centroids.dtype == np.float32
    assert inertia(x, centroids) <= 1.02 * inertia(x, centres)  # the generating centres' inertia (~DIM)
    units = assign_units(x, centroids)
    for c in range(8):  # each true cluster is one unit and vice versa
        assert len(set(units[truth == c])) == 1
    assert len(set(units)) == 8
    np.testing.assert_array_equal(fit_kmeans(x, k=8, niter=30, seed=0), centroids)  # seeded


def test_max_points_and_inputs() -> None:
    x, centres, _ = blobs(4000, 4, seed=3)
    sub = fit_kmeans(x, k=4, niter=20, max_points=400, seed=0)
    assert inertia(x, sub) <= 1.05 * inertia(x, centres)
    with pytest.raises(ConfigError, match="k=500"):
        fit_kmeans(x[:100], k=500)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(FeatureError, match="non-finite"):
        fit_kmeans(bad, k=4)


def test_assign_matches_brute_force_oracle() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1500, DIM)).astype(np.float32)
    centroids = rng.normal(size=(40, DIM)).astype(np.float32)
    units = assign_units(x, centroids)
    assert units.dtype == np.int64
    assert units.tolist() == nearest_oracle(x, centroids)


def test_cli_fit_assign_dedup(shards: tuple[Path, list[np.ndarray], np.ndarray], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    feats, utterances, _ = shards
    cent = tmp_path / "km.npy"
    assert main(["kmeans", "fit", "--features", str(feats), "--split", "train", "--nshard", "2", "--k", "6",
                 "--niter", "20", "--out", str(cent)]) == 0
    assert "6 centroids x 12 dims fitted on 3000 frames" in capsys.readouterr().out
    centroids = np.load(cent)
    assert centroids.shape == (6, DIM) and centroids.dtype == np.float32
    km = tmp_path / "train.km"
    assert main(["kmeans", "assign", "--features", str(feats), "--split", "train", "--nshard", "2",
                 "--centroids", str(cent), "--out", str(km), "--dedup"]) == 0
    rows = read_km_arrays(km)
    assert len(rows) == len(utterances)
    assert [u.tolist() for u in rows] == [nearest_oracle(u, centroids) for u in utterances]
    dedup = [line.split() for line in (tmp_path / "train.dedup.km").read_text().splitlines()]
    dur = [list(map(int, line.split())) for line in (tmp_path / "train.dur").read_text().splitlines()]
    for units, d_units, d_dur in zip(rows, dedup, dur):
        assert np.repeat(np.asarray(d_units, dtype=np.int64), d_dur).tolist() == units.tolist()
        assert all(a != b for a, b in zip(d_units, d_units[1:]))


def test_fraction_samples_whole_utterances(shards: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    feats, utterances, _ = shards
    opened = open_shards(feats, split="train", nshard=2)
    x = sample_frames(opened, fraction=0.25, seed=0)
    # The sample is a sequence of whole utterances: peel them off one by one.
    i, used = 0, 0
    while i < len(x):
        match = next(u for u in utterances if len(u) <= len(x) - i and np.array_equal(x[i : i + len(u)], u))
        i, used = i + len(match), used + 1
    assert used == sum(int(np.ceil(0.25 * len(s.lengths))) for s in opened) < len(utterances)


def test_joblib_sklearn_model(shards: tuple[Path, list[np.ndarray], np.ndarray], tmp_path: Path) -> None:
    """A published-style quantizer (sklearn MiniBatchKMeans pickled with joblib) applies as is."""
    feats, utterances, _ = shards
    x = np.concatenate(utterances)
    model = MiniBatchKMeans(n_clusters=6, batch_size=512, n_init=3, random_state=0).fit(x)
    joblib.dump(model, tmp_path / "km6.joblib")
    np.testing.assert_array_equal(load_centroids(tmp_path / "km6.joblib"), model.cluster_centers_.astype(np.float32))
    out = tmp_path / "sk.km"
    assert main(["kmeans", "assign", "--features", str(feats), "--split", "train", "--nshard", "2",
                 "--centroids", str(tmp_path / "km6.joblib"), "--out", str(out)]) == 0
    assert np.concatenate(read_km_arrays(out)).tolist() == model.predict(x).tolist()
    joblib.dump({"not": "a model"}, tmp_path / "dict.joblib")
    with pytest.raises(CheckpointError, match="not a fitted k-means model"):
        load_centroids(tmp_path / "dict.joblib")


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_features(shards: tuple[Path, list[np.ndarray], np.ndarray], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    feats, _, centres = shards
    np.save(tmp_path / "c.npy", centres)
    assign = ["kmeans", "assign", "--split", "train", "--nshard", "2", "--centroids", str(tmp_path / "c.npy"),
              "--out", str(tmp_path / "x.km"), "--features"]
    # .len that disagrees with the .npy
    lines = (feats / "train_1_2.len").read_text().splitlines()
    (feats / "train_1_2.len").write_text("\n".join(lines[:-1]) + "\n")
    assert "train_1_2.npy" in _cli_error([*assign, str(feats)], capsys)
    assert "sums to" in _cli_error(["kmeans", "fit", "--features", str(feats), "--split", "train", "--nshard", "2",
                                    "--k", "3", "--out", str(tmp_path / "c2.npy")], capsys)
    (feats / "train_1_2.len").write_text("\n".join(lines) + "\n")
    # NaN in the features
    x = np.load(feats / "train_0_2.npy")
    x[5, 0] = np.nan
    np.save(feats / "train_0_2.npy", x)
    assert "non-finite values" in _cli_error([*assign, str(feats)], capsys)
    assert "--split" in _cli_error(["kmeans", "fit", "--features", str(feats), "--k", "3", "--out", "c.npy"], capsys)
    np.save(tmp_path / "wide.npy", np.zeros((3, DIM + 1), np.float32))
    assert "12-dim features but" in _cli_error(["kmeans", "assign", "--features", str(feats / "train_1_2.npy"),
                                                "--centroids", str(tmp_path / "wide.npy"), "--out",
                                                str(tmp_path / "y.km")], capsys)
    assert not (tmp_path / "x.km").exists()
