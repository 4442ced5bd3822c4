"""Shared fixtures. Tests build their own tiny models; data comes from the committed synthetic corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Small corpus made by `spokenlm synth-corpus` (see tests/data/README.md); committed so tests
#: need neither flite nor time to synthesize.
CORPUS = REPO / "tests" / "data" / "corpus"
PAIRS = REPO / "tests" / "data" / "pairs"
VENV_BIN = Path(sys.executable).parent


def _relocated_copy(src: Path, dst: Path) -> Path:
    """Copy a committed data folder and point its manifests' root lines at the copy.

    Manifests hold the absolute audio root of the machine that made them; a clone elsewhere (CI)
    must rewrite it, exactly as a user moving a corpus would.
    """
    shutil.copytree(src, dst)
    for manifest in dst.rglob("*.tsv"):
        lines = manifest.read_text().splitlines()
        old_root = Path(lines[0])
        rel = next(p for p in [old_root, *old_root.parents] if p.name == src.name)
        new_root = dst / old_root.relative_to(rel)
        manifest.write_text("\n".join([str(new_root), *lines[1:]]) + "\n")
    return dst


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session copy of the committed synthetic corpus, manifests pointing at the copy.

    Shared by all tests of the session: treat it as read-only.
    """
    assert (CORPUS / "corpus.json").is_file(), f"{CORPUS} missing: regenerate it (tests/data/README.md)"
    return _relocated_copy(CORPUS, tmp_path_factory.mktemp("data") / "corpus")


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session copy of the committed minimal pairs (tests/data/pairs), manifests relocated."""
    return _relocated_copy(PAIRS, tmp_path_factory.mktemp("data") / "pairs")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for a module's tests and fixtures, which opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``: small models gain nothing from more,
    and on a shared 2-core machine two OpenMP threads mostly wait for each other."""
    from spokenlm_plugin.core.runtime import torch_threads

    with torch_threads(1):
        yield


# ------------------------------------------------------- fixtures shared by several test modules
# Module-scoped: each module that requests one builds its own.


@pytest.fixture(scope="module")
def corpus(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed corpus's manifests and labels in a folder of their own (fine-tuning writes beside
    them), manifests pointing at ``corpus_dir``'s audio."""
    out = tmp_path_factory.mktemp("corpus")
    shutil.copytree(corpus_dir / "labels", out / "labels")
    (out / "manifests").mkdir()
    for tsv in (corpus_dir / "manifests").glob("*.tsv"):
        lines = tsv.read_text().splitlines()
        lines[0] = str(corpus_dir / "audio" / tsv.stem)
        (out / "manifests" / tsv.name).write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def tiny_base(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HuBERT pretrained for a few updates by fairseq-train's hubert_pretraining (MFCC k-means targets)."""
    from spokenlm_plugin.pretrain.hubert import PretrainSettings, SmallHubert, pretrain_small_hubert

    out = tmp_path_factory.mktemp("pretrain")
    return pretrain_small_hubert(
        corpus,
        out,
        model=SmallHubert(conv_channels=32, layers=2, dim=64, ffn_dim=128, heads=2, conv_pos=16, final_dim=32),
        settings=PretrainSettings(max_update=8, warmup_updates=2, max_tokens=160_000, k=16, kmeans_frames=20_000),
        threads=2,
    )


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Unit sequences for the unit LMs (tests/ulm_support.py): ``train/valid/test.km`` Markov units over
    K, ``test.ids``, and ``centroids.npy`` (K x D)."""
    import numpy as np

    from spokenlm_plugin.core.km import write_km
    from tests.ulm_support import D, K, markov_units

    d = tmp_path_factory.mktemp("ulm_units")
    rng = np.random.default_rng(0)
    rows = markov_units(rng, 180)
    write_km(d / "train.km", rows[:140])
    write_km(d / "valid.km", rows[140:160])
    write_km(d / "test.km", rows[160:])
    (d / "test.ids").write_text("".join(f"utt{i}\n" for i in range(20)))
    np.save(d / "centroids.npy", rng.normal(size=(K, D)).astype(np.float32) + 3.0)
    return d


@pytest.fixture(scope="module")
def lm_data(units: Path) -> Path:
    """``units`` binarized for fairseq by ``spokenlm lm-data`` (vocabulary: the K units)."""
    from spokenlm_plugin import cli
    from tests.ulm_support import K

    out = units.parent / "ulm_bin"
    assert cli.main(["lm-data", "--units-dir", str(units), "--out", str(out), "--vocab-size", str(K)]) == 0
    return out


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests unless ``--slow``: the default run takes about 6.5 minutes on 2
    cores, and the skip (with its reason) shows in the summary instead of vanishing like a deselection."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a console script of the venv (spokenlm, fairseq-train, ...) as a user would."""
    exe = VENV_BIN / args[0]
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run([str(exe), *args[1:]], cwd=cwd, capture_output=True, text=True, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run ``spokenlm argv`` in-process: exit 2 with one stderr line holding every needle, no traceback."""
    from spokenlm_plugin import cli

    assert cli.main(argv) == 2, f"spokenlm {' '.join(argv)} did not fail"
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]
