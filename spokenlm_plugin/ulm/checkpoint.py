"""Reading a unit LM checkpoint (what ``fairseq-train --task language_modeling`` saves), checked.

Any file given as ``--checkpoint`` goes through :func:`read_lm_state`: a file that is not a
torch checkpoint, or a checkpoint of another task, is a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import CheckpointError


def read_lm_state(checkpoint: str | os.PathLike, *, arg_overrides: Mapping[str, Any] | None = None) -> dict:
    """fairseq's state dict of a ``language_modeling`` checkpoint (``cfg``, ``model``, ...)."""
    from fairseq import checkpoint_utils

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint not found")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint), arg_overrides=dict(arg_overrides or {}))
    except Exception as e:  # torch.load of a foreign file raises anything (UnpicklingError, RuntimeError, EOFError...)
        raise CheckpointError(
            f"{checkpoint}: not a readable fairseq checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "give a checkpoint_*.pt written by fairseq-train"
        ) from None
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is None or cfg.task.get("_name") != "language_modeling":
        raise CheckpointError(
            f"{checkpoint}: not a fairseq language_modeling checkpoint (trained with --task language_modeling)"
        )
    return state
