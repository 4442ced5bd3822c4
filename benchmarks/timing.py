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


def lm_tokens_per_second(model, *, low: int, high: int, device: str, tokens_per_sample: int, batch: int, steps: int,
                         warmup: int, lr: float = 5e-4, weight_decay: float = 0.0) -> float:
    """Training tokens/s of a fairseq decoder LM (``model(src) -> (logits, extra)``) on random tokens in
    ``[low, high)``: forward, cross-entropy, backward, Adam step."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    tokens = torch.randint(low, high, (batch, tokens_per_sample + 1), device=device)
    src, tgt = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        logits, _ = model(src)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return steps * batch * tokens_per_sample / timed_steps(step, steps=steps, device=device, warmup=warmup)
