"""Where computations run: the ``--device`` rule and torch's intra-op thread count.

One rule for every command with ``--device auto|cpu|cuda``: ``auto`` is the GPU when the backend
(torch, or faiss for k-means) sees one, else the CPU; ``cuda`` without a GPU is a
:class:`ConfigError` (never a silent fall-back to the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Iterator, Literal

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

DeviceName = Literal["auto", "cpu", "cuda"]


def wants_gpu(name: DeviceName | str, *, available: bool, backend: str = "torch", fix: str = "") -> bool:
    """Whether ``--device name`` asks for the GPU, given whether ``backend`` sees one.

    :param fix: what to install for a GPU (added to the error), e.g. ``"install faiss-gpu"``.
    """
    gpu = (name == "auto" and available) or name.split(":")[0] == "cuda"
    if gpu and not available:
        raise ConfigError(f"--device {name}: {backend} sees no CUDA GPU; {fix + ' or ' if fix else ''}use --device cpu")
    return gpu


def resolve_device(name: DeviceName | str | torch.device) -> torch.device:
    """The torch device of a ``--device`` value (``auto``: CUDA when available, else CPU)."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if not wants_gpu(name, available=torch.cuda.is_available()):
        return torch.device("cpu" if name == "auto" else name)
    return torch.device("cuda" if name == "auto" else name)


def cpu_threads(device: torch.device) -> int | None:
    """torch's intra-op threads when computing on the CPU (sums, hence features, change in the
    last digits with the thread count); ``None`` on a GPU, where it does not matter."""
    if device.type != "cpu":
        return None
    import torch

    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads (``None``: unchanged), then restore.

    Small models gain little from intra-op threads, and on a busy CPU torch's spinning threads make
    them many times slower (measured: 10-15x for a small LM on a loaded 2-core machine).
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (``--threads``): ``0`` or ``-3`` is a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be a positive integer (1 or more)")
    return value
