"""Reading a unit LM checkpoint (what ``fairseq-train --task language_modeling`` saves), checked.

Any file given as ``--checkpoint`` goes through :func:`read_lm_state`: a file that is not a
torch checkpoint, or a checkpoint of another task, is a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..core.checkpoints import read_checkpoint, task_name
from ..core.errors import CheckpointError


def read_lm_state(checkpoint: str | os.PathLike, *, arg_overrides: Mapping[str, Any] | None = None) -> dict:
    """fairseq's state dict of a ``language_modeling`` checkpoint (``cfg``, ``model``, ...)."""
    state = read_checkpoint(checkpoint, hint="give a checkpoint_*.pt written by fairseq-train", arg_overrides=arg_overrides)
    if task_name(state) != "language_modeling":
        raise CheckpointError(
            f"{checkpoint}: not a fairseq language_modeling checkpoint (trained with --task language_modeling)"
        )
    return state
