"""Reading checkpoint files: every bad file becomes one :class:`CheckpointError` naming it.

Three readers, by what the file may hold:

- ``fairseq``: fairseq's ``checkpoint_utils.load_checkpoint_to_cpu`` (its upgrade of older formats,
  ``arg_overrides``); the result is what ``load_model_ensemble_and_task(..., state=)`` takes, so a
  stage reads the file once;
- ``pickle``: plain ``torch.load`` of a trusted pickle (omegaconf / argparse objects), without
  fairseq's upgrade (a pretrained HuBERT read as is, a training state);
- ``tensors``: torch's weights-only unpickler (tensors in containers: files of unknown origin).

A missing file, one torch cannot read (not a checkpoint, or cut short by an interrupted save or
copy) and one of another kind (not a dict, an entry missing) are told apart; each message ends with
the caller's hint (what to pass instead). What model or task a stage expects stays with the stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from .errors import CheckpointError

Loader = Literal["fairseq", "pickle", "tensors"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__


def _load(path: Path, loader: Loader, arg_overrides: Mapping[str, Any] | None) -> Any:
    if loader == "fairseq":
        import spokenlm_plugin

        spokenlm_plugin.register()  # fairseq's torch.load fix (compat), and the plugin's models for the stage
        from fairseq import checkpoint_utils

        overrides = dict(arg_overrides) if arg_overrides is not None else None
        return checkpoint_utils.load_checkpoint_to_cpu(str(path), arg_overrides=overrides)
    import torch

    # ``pickle``: a file the user points at and trusts, as fairseq does; ``tensors``: no pickle code runs.
    return torch.load(path, map_location="cpu", weights_only=loader == "tensors")


def read_checkpoint(
    path: str | os.PathLike,
    *,
    hint: str,
    what: str = "fairseq checkpoint",
    loader: Loader = "fairseq",
    required: Sequence[str] = ("model", "cfg"),
    arg_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The state dict of the checkpoint at ``path``, with its ``required`` entries present.

    :param hint: what to do instead, ending every message (e.g. "give a checkpoint_*.pt written by
        fairseq-train").
    :param what: the kind of file, as the messages name it.
    :param arg_overrides: config values replaced while reading (``fairseq`` loader only), as in
        ``load_model_ensemble_and_task``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found; {hint}")
    try:
        state = _load(path, loader, arg_overrides)
    except (KeyError, AttributeError, TypeError) as e:
        if loader != "fairseq":
            raise CheckpointError(f"{path}: not a readable {what}, or one cut short ({_first_line(e)}); {hint}") from None
        # fairseq's upgrade step read an unpickled object: it lacks the entries a fairseq checkpoint has.
        detail = f"no {e} entry" if isinstance(e, KeyError) else _first_line(e)
        raise CheckpointError(f"{path}: not a {what} ({detail}); {hint}") from None
    except Exception as e:  # torch's unpicklers fail in many ways on a foreign or truncated file
        raise CheckpointError(f"{path}: not a readable {what}, or one cut short ({_first_line(e)}); {hint}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a {what} (it holds a {type(state).__name__}, not a dict); {hint}")
    missing = [key for key in required if state.get(key) is None]
    if missing:
        raise CheckpointError(
            f"{path}: not a {what} (no {missing[0]!r} entry; it holds {sorted(map(str, state))[:6]}); {hint}"
        )
    return state


def model_name(state: Mapping[str, Any]) -> str | None:
    """``cfg.model._name`` of a fairseq checkpoint state (``None`` if it has none)."""
    model = state["cfg"].get("model")
    return model.get("_name") if model is not None else None


def task_name(state: Mapping[str, Any]) -> str | None:
    """``cfg.task._name`` of a fairseq checkpoint state (``None`` if it has none)."""
    task = state["cfg"].get("task")
    return task.get("_name") if task is not None else None
