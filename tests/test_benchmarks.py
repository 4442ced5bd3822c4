"""Benchmark scripts keep running as the code under them changes (their numbers live in
benchmarks/RESULTS.md; here only that each one still runs and prints its table)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if p.name != "timing.py")

#: The smallest run of each script that still goes through every code path it times.
TINY: dict[str, list[str]] = {
    "finetune_throughput.py": ["--steps", "1", "--batch", "1", "--threads", "1"],
    "pretrain_throughput.py": ["--steps", "1", "--batch", "1", "--threads", "1"],
    "kmeans_speed.py": ["--frames", "3000", "--dim", "16", "--k", "10"],
    "kmeans_init.py": ["--frames", "3000", "--dim", "16", "--k", "10", "--seeds", "0"],
    "lm_throughput.py": ["--tokens-per-sample", "16", "--batch", "2", "--steps", "1", "--threads", "1"],
    "sutlm_throughput.py": ["--tokens-per-sample", "16", "--batch", "2", "--steps", "1", "--threads", "1"],
    "vocoder_speed.py": ["--threads", "1", "--seconds", "0.5"],
    "ulm_fused_lstm.py": ["--repeats", "1", "--batch", "2", "--tokens-per-sample", "16"],
    "story_world_text_lm.py": ["--sentences", "100", "--epochs", "1", "--n-lexical", "20", "--n-syntactic", "8",
                               "--threads", "1"],
}


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_imports(script: str, monkeypatch) -> None:
    """In this process (torch and fairseq are loaded once): a moved or renamed import fails here."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the scripts import timing.py beside them
    spec = importlib.util.spec_from_file_location(f"bench_{script[:-3]}", REPO / "benchmarks" / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert callable(module.main)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_and_prints_its_table(script: str) -> None:
    proc = _run(script, *TINY[script])
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    assert "|---" in proc.stdout, proc.stdout[-2000:]
