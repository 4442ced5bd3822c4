"""The repository passes its linter (``ruff check``, rules in ruff.toml), as CI requires."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO, VENV_BIN


def test_ruff_check_passes() -> None:
    ruff = VENV_BIN / "ruff"
    assert ruff.is_file(), f"{ruff} missing: rerun 'bash setup.sh' (ruff is in requirements.txt)"
    proc = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", str(REPO)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
