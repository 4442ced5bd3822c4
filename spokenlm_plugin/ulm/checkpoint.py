"""Reading a unit LM checkpoint (what ``fairseq-train --task language_modeling`` saves), checked.

Any file given as ``--checkpoint`` goes through :func:`read_lm_state`: a file that is not a
torch checkpoint, or a checkpoint of another task, is a :class:`CheckpointError` naming it.
:func:`check_dictionary_fits` refuses a ``dict.txt`` of another size than the LM's (``--data``
of another dataset) before fairseq fails on the weights' shapes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..core.checkpoints import read_checkpoint, task_name
from ..core.errors import CheckpointError, DictionaryError

#: Weights whose first dimension is the LM's number of dictionary symbols, in the order tried:
#: the transformer's output projection, the LSTM's output layer, the input embedding (plain,
#: or the table under a centroid projection). Every LM of this package has one of them.
_SYMBOL_WEIGHTS = (
    "decoder.output_projection.weight", "decoder.fc_out.weight",
    "decoder.embed_tokens.weight", "decoder.embed_tokens.table.weight",
)


def read_lm_state(checkpoint: str | os.PathLike, *, arg_overrides: Mapping[str, Any] | None = None) -> dict:
    """fairseq's state dict of a ``language_modeling`` checkpoint (``cfg``, ``model``, ...)."""
    state = read_checkpoint(checkpoint, hint="give a checkpoint_*.pt written by fairseq-train", arg_overrides=arg_overrides)
    if task_name(state) != "language_modeling":
        raise CheckpointError(
            f"{checkpoint}: not a fairseq language_modeling checkpoint (trained with --task language_modeling)"
        )
    return state


def model_symbols(state: Mapping[str, Any]) -> int | None:
    """Number of dictionary symbols the LM's weights were built for (``None``: no known weight tells)."""
    weights = state.get("model") or {}
    for key in _SYMBOL_WEIGHTS:
        if key in weights and getattr(weights[key], "ndim", 0) >= 1:
            return int(weights[key].shape[0])
    return None


def dictionary_symbols(path: str | os.PathLike) -> int:
    """Number of symbols fairseq's ``Dictionary.load`` makes of ``path`` (its 4 special symbols included)."""
    from fairseq.data import Dictionary

    try:
        return len(Dictionary.load(str(path)))
    except FileNotFoundError:
        raise DictionaryError(f"{path}: dictionary not found; pass --data with the folder of the LM's dict.txt") from None
    except (ValueError, RuntimeError) as e:  # fairseq's "Incorrect dictionary format" / "Duplicate word"
        raise DictionaryError(f"{path}: not a fairseq dictionary ({str(e).splitlines()[0][:120]}); "
                              "pass --data with the folder of the LM's dict.txt") from None


def check_dictionary_fits(
    state: Mapping[str, Any], *, checkpoint: str | os.PathLike, dictionary: str | os.PathLike, option: str = "--data",
) -> None:
    """Refuse a ``dictionary`` whose size differs from the one the LM of ``state`` was trained with.

    fairseq itself fails later with a multi-line ``size mismatch`` of the weights (or, in
    fairseq-generate, in a subprocess): this names the dictionary, both sizes and the fix
    (``option``: the command's option that gives the dictionary's folder).
    """
    expected = model_symbols(state)
    if expected is None:
        return
    found = dictionary_symbols(dictionary)
    if found != expected:
        raise DictionaryError(
            f"{Path(dictionary)}: {found} symbols but the LM {checkpoint} was trained with a dictionary of {expected} "
            f"(both counting fairseq's 4 special symbols); pass {option} with the folder of the LM's own dict.txt "
            "(the data folder it was trained on)"
        )
