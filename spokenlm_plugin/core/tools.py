"""Running fairseq's own command-line tools (``fairseq-train``, ``fairseq-hydra-train``,
``fairseq-preprocess``, ``fairseq-generate``, ``fairseq-validate``) as a user would.

Recipes call the real CLIs of the current environment in a subprocess rather than fairseq's
Python entry points, so what they run is exactly what the documented commands run. Every launch
goes through :func:`run_tool`: output to a log file, the thread count in the environment, and a
failure summarised as one line naming the log.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .errors import MissingToolError, TrainingError


def tool_path(name: str) -> Path:
    """A console script installed beside the running Python (the venv's ``bin``), else on PATH."""
    exe = Path(sys.executable).parent / name
    if exe.is_file():
        return exe
    found = shutil.which(name)
    if found is None:
        raise MissingToolError(f"{exe}: {name} not found beside {sys.executable} nor on PATH; "
                               "install fairseq-fixed in this environment")
    return Path(found)


def run_tool(
    name: str,
    args: Sequence[str],
    *,
    log_path: Path,
    threads: int | None = None,
    cwd: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> float:
    """Run ``name args...``, its output appended to ``log_path``; return the wall time in seconds.

    ``threads`` caps torch's intra-op threads (OMP_NUM_THREADS). A failure raises
    :class:`TrainingError` quoting the last line of the log (usually the exception).
    """
    command = [str(tool_path(name)), *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log is not None:
        log(f"$ {name} {shlex.join(map(str, args))}")
    start = time.perf_counter()
    with open(log_path, "a") as f:
        f.write(f"$ {shlex.join(command)}\n")
        f.flush()
        code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        last = next((line for line in reversed(log_path.read_text().splitlines()) if line.strip()), "")
        raise TrainingError(f"{log_path}: {name} exited with status {code}: {last.strip()}; see the log")
    return seconds
