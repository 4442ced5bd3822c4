"""Vocoder files in fairseq's format, and loading them (the plugin's and published ones).

- ``vocoder.pt``: ``{"generator": state_dict}`` of a fairseq ``CodeGenerator`` with plain tensors
  and old-style weight-norm keys (``weight_g`` / ``weight_v``): what fairseq's
  ``CodeHiFiGANVocoder`` and speech-resynthesis' ``g_XXXXXXXX`` files hold.
- ``config.json``: the keys ``CodeHiFiGANVocoder`` reads (see :class:`.config.GeneratorConfig`).

Both are written atomically. Loading checks the file kind, keys and shapes first, so a wrong file
is a one-line :class:`CheckpointError` instead of a ``load_state_dict`` traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoints import read_checkpoint
from ..core.errors import CheckpointError
from ..core.io import atomic_path, atomic_write
from .config import TRAIN_STATE, GeneratorConfig
from .model import build_generator


def save_vocoder(state: dict[str, torch.Tensor], cfg: GeneratorConfig, *, checkpoint: Path, config: Path) -> None:
    """Write ``checkpoint`` ({"generator": state}) and ``config`` (JSON), each atomically."""
    with atomic_path(checkpoint) as tmp:
        torch.save({"generator": state}, tmp)
    with atomic_write(config) as f:
        json.dump(cfg.to_fairseq(), f, indent=1)
        f.write("\n")


def read_config(path: str | os.PathLike) -> tuple[GeneratorConfig, dict[str, Any]]:
    """(parsed config, raw JSON) of a vocoder config file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: vocoder config not found (the config.json beside vocoder.pt)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a JSON vocoder config ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a vocoder config (expected a JSON object)")
    return GeneratorConfig.from_fairseq(raw, where=str(path)), raw


def read_generator_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``generator`` state dict of a vocoder checkpoint (tensors only, loaded without pickle code)."""
    hint = "give the vocoder.pt written by vocoder-train (a {'generator': state_dict} of tensors)"
    state = read_checkpoint(path, hint=hint, what="vocoder checkpoint", loader="tensors", required=("generator",))
    if not isinstance(state["generator"], dict):
        raise CheckpointError(f"{path}: not a vocoder checkpoint (its 'generator' entry is not a state dict); {hint}")
    return state["generator"]


def check_state(state: dict[str, torch.Tensor], generator: nn.Module, *, where: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` loads strictly into ``generator``."""
    expected = generator.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        hint = " (weight-norm parametrization keys: re-save with torch.nn.utils.weight_norm)" if any(
            "parametrizations" in k for k in unexpected) else ""
        raise CheckpointError(
            f"{where}: generator keys do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}"
            f"{hint}; pass the config.json this checkpoint was saved with")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{where}: {k} has shape {tuple(state[k].shape)}, the config gives {tuple(v.shape)}; "
                "pass the config.json this checkpoint was saved with")


def load_generator(checkpoint: str | os.PathLike, config: str | os.PathLike) -> tuple[nn.Module, GeneratorConfig]:
    """fairseq ``CodeGenerator`` of a vocoder checkpoint, in inference form (eval, weight norm
    folded into the weights, as ``CodeHiFiGANVocoder`` does)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file() and (checkpoint.parent / TRAIN_STATE).is_file():
        raise CheckpointError(
            f"{checkpoint}: not written yet: the vocoder-train run in {checkpoint.parent} has not finished (it holds "
            f"only its {TRAIN_STATE}); rerun the same vocoder-train command to finish it")
    cfg, raw = read_config(config)
    state = read_generator_state(checkpoint)
    generator = build_generator(cfg, published=raw)
    check_state(state, generator, where=str(checkpoint))
    generator.load_state_dict(state)
    _remove_weight_norm(generator)
    return generator.eval(), cfg


def _remove_weight_norm(module: nn.Module) -> None:
    """fairseq's ``remove_weight_norm`` without its print (stdout is for the command's output)."""
    from torch.nn.utils import remove_weight_norm

    for m in module.modules():
        if hasattr(m, "weight_g"):
            remove_weight_norm(m)
