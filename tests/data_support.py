"""Inputs and checks shared by the data-preparation tests (tests/test_data_*.py, tests/test_sutlm_data.py):
Praat TextGrids, noise audio files, the one-line error of a failed command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf


def textgrid_long(xmax: float, tiers: dict[str, list[tuple[float, float, str]]]) -> str:
    """Praat's long text format, written the way Praat / MFA write it."""
    out = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {xmax} ",
           "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
    for k, (name, entries) in enumerate(tiers.items(), start=1):
        out += [f"    item [{k}]:", '        class = "IntervalTier" ', f'        name = "{name}" ',
                "        xmin = 0 ", f"        xmax = {xmax} ", f"        intervals: size = {len(entries)} "]
        for j, (a, b, text) in enumerate(entries, start=1):
            text = text.replace('"', '""')
            out += [f"        intervals [{j}]:", f"            xmin = {a} ", f"            xmax = {b} ",
                    f'            text = "{text}" ']
    return "\n".join(out) + "\n"


def textgrid_short(xmax: float, tiers: dict[str, list[tuple[float, float, str]]]) -> str:
    """Praat's short text format: values only."""
    out = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", str(xmax), "<exists>", str(len(tiers))]
    for name, entries in tiers.items():
        out += ['"IntervalTier"', f'"{name}"', "0", str(xmax), str(len(entries))]
        for a, b, text in entries:
            out += [str(a), str(b), f'"{text}"']
    return "\n".join(out) + "\n"


def write_noise(path: Path, num_samples: int) -> None:
    """A 16 kHz audio file of ``num_samples`` samples of noise (seeded by the length), folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(num_samples)
    sf.write(path, (0.1 * rng.standard_normal(num_samples)).astype("float32"), 16000)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, one line on stderr naming what is wrong, no traceback."""
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("INFO:")]  # fairseq's import-time log
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
