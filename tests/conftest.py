"""Shared fixtures. Tests build their own tiny models; data comes from the committed synthetic corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests unless ``--slow``: the default run takes about 5 minutes on 2
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
