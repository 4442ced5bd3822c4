"""The timing loop every benchmark shares: warm-up calls, then timed calls, CUDA synchronised."""

from __future__ import annotations

import time
from typing import Callable


def timed_steps(step: Callable[[], None], *, steps: int, device: str, warmup: int = 1) -> float:
    """Seconds that ``steps`` calls of ``step`` take after ``warmup`` untimed calls (allocations,
    kernel selection); on CUDA the queue is drained before each clock read."""
    import torch

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
