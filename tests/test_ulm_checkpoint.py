"""Unit LM checkpoints are self-contained: a centroid-initialised LM trained with the real
fairseq-train reloads (lm-score, fairseq's checkpoint_utils) after its centroid file is deleted,
with the same scores; a checkpoint saved before the table width was recorded still reloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import spokenlm_plugin  # noqa: F401  (registers the unit LMs; fixes torch.load for checkpoints)
from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import CheckpointError
from spokenlm_plugin.core.km import write_km
from spokenlm_plugin.ulm.score import load_unit_lm
from tests.conftest import run_cli
from tests.ulm_support import ENV, K, markov_units, train_args

D = 24  # centroid size: wider than the embedding (8), so a project-mode reload must know it


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ulm_ckpt")
    rows = markov_units(np.random.default_rng(1), 100)
    write_km(d / "train.km", rows[:80])
    write_km(d / "valid.km", rows[80:90])
    write_km(d / "test.km", rows[90:])
    (d / "test.ids").write_text("".join(f"utt{i}\n" for i in range(10)))
    assert cli.main(["lm-data", "--units-dir", str(d), "--out", str(d / "bin"), "--vocab-size", str(K)]) == 0
    return d


def _train(lm_data: Path, save: Path, arch: str, mode: str) -> tuple[Path, Path]:
    """A tiny LM trained with centroid-initialised embeddings: (checkpoint, centroid file)."""
    centroids = save.parent / f"{save.name}_centroids.npy"
    np.save(centroids, np.random.default_rng(2).normal(size=(K, D)).astype(np.float32))
    dims = (["--decoder-embed-dim", "8", "--decoder-hidden-size", "16", "--decoder-out-embed-dim", "8",
             "--decoder-layers", "1"] if arch == "unit_lstm_lm_small" else
            ["--decoder-embed-dim", "8", "--decoder-ffn-embed-dim", "16", "--decoder-attention-heads", "2",
             "--decoder-layers", "1"])
    run_cli(*train_args(lm_data / "bin", save, arch, *dims, "--max-update", "2",
                        "--unit-centroids", str(centroids), "--centroid-init", mode), env=ENV)
    return save / "checkpoint_best.pt", centroids


def _lm_score(ckpt: Path, lm_data: Path, out: Path) -> str:
    assert cli.main(["lm-score", "--checkpoint", str(ckpt), "--units", str(lm_data / "test.km"),
                     "--ids", str(lm_data / "test.ids"), "--out", str(out)]) == 0
    return out.read_text()


def _fairseq_reload(ckpt: Path) -> torch.nn.Module:
    from fairseq import checkpoint_utils

    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)])
    return models[0].eval()


@pytest.fixture(scope="module")
def lstm_project(lm_data: Path) -> tuple[Path, Path, Path]:
    """The LSTM in project mode (the table is D-wide: a reload needs D): checkpoint, centroid
    file (a test deletes it) and a spare copy of it."""
    ckpt, centroids = _train(lm_data, lm_data / "lstm", "unit_lstm_lm_small", "project")
    spare = lm_data / "spare_centroids.npy"
    spare.write_bytes(centroids.read_bytes())
    return ckpt, centroids, spare


def _reloads_without_centroid_file(ckpt: Path, centroids: Path, lm_data: Path, tmp_path: Path, width: int) -> None:
    assert torch.load(ckpt, weights_only=False)["cfg"]["model"]["centroid_table_dim"] == width
    before = _lm_score(ckpt, lm_data, tmp_path / "before.txt")
    tokens = torch.tensor([[2, 4, 9, 9, 17, 5]])
    with torch.no_grad():
        logits_before = _fairseq_reload(ckpt)(tokens)[0]
    centroids.unlink()
    assert _lm_score(ckpt, lm_data, tmp_path / "after.txt") == before
    model = _fairseq_reload(ckpt)
    saved = torch.load(ckpt, weights_only=False)["model"]
    assert model.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], logits_before)


def test_lstm_checkpoint_reloads_without_centroid_file(lstm_project, lm_data: Path, tmp_path: Path) -> None:
    ckpt, centroids, _ = lstm_project
    _reloads_without_centroid_file(ckpt, centroids, lm_data, tmp_path, width=D)


@pytest.mark.slow  # two more fairseq-train runs: CI runs them (--slow)
@pytest.mark.parametrize("arch, mode, width", [("unit_lstm_lm_small", "pca", 8), ("unit_transformer_lm_small", "project", D)])
def test_other_checkpoints_reload_without_centroid_file(lm_data: Path, tmp_path: Path, arch: str, mode: str,
                                                        width: int) -> None:
    ckpt, centroids = _train(lm_data, tmp_path / "lm", arch, mode)
    _reloads_without_centroid_file(ckpt, centroids, lm_data, tmp_path, width)


def test_checkpoint_without_recorded_width_reads_centroid_file(lstm_project, lm_data: Path, tmp_path: Path) -> None:
    """A checkpoint saved before centroid_table_dim existed (the same file, that key absent) reloads
    from its centroid file as it always did, and fails with a one-line error naming it once it is gone."""
    ckpt, _, spare = lstm_project
    centroids = tmp_path / "centroids.npy"
    centroids.write_bytes(spare.read_bytes())
    state = torch.load(ckpt, weights_only=False)
    del state["cfg"]["model"]["centroid_table_dim"]
    state["cfg"]["model"]["unit_centroids"] = str(centroids)
    old = tmp_path / "old.pt"
    torch.save(state, old)
    assert _lm_score(old, lm_data, tmp_path / "old.txt") == _lm_score(ckpt, lm_data, tmp_path / "new.txt")
    centroids.unlink()
    with pytest.raises(CheckpointError, match=f"{centroids}: centroids file not found"):
        load_unit_lm(old)
