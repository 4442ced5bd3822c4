"""Shared fixtures. Tests build their own tiny models; data comes from the committed synthetic corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Small corpus made by `spokenlm synth-corpus` (see tests/data/README.md); committed so tests
#: need neither flite nor time to synthesize.
CORPUS = REPO / "tests" / "data" / "corpus"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The committed synthetic corpus (read-only: copy before writing into it)."""
    assert (CORPUS / "corpus.json").is_file(), f"{CORPUS} missing: regenerate it (tests/data/README.md)"
    return CORPUS


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
