"""spokenlm_plugin: spoken language modeling on phoneme-aware speech units, as a fairseq plugin.

Load it with ``fairseq-train --user-dir spokenlm_plugin`` (or ``import spokenlm_plugin``): the
import applies the fairseq compatibility fixes (:mod:`spokenlm_plugin.compat`) and registers every
task, model and criterion of the plugin. ``--user-dir`` imports only this package, so every module
that registers a component must be listed in ``_COMPONENT_MODULES``.

One exception: in the ``spokenlm`` console script's own process the registration waits until a
command runs (:func:`register`, called by :mod:`spokenlm_plugin.cli`), so that ``--help`` and
argument errors do not pay for importing fairseq (seconds).

In a fairseq tool, a plugin refusal (a :class:`~spokenlm_plugin.core.errors.SpokenLMError`, e.g. labels
that do not match the audio) ends the run as one line, without a Python traceback.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import sys
from pathlib import Path

__version__ = "0.1.0"

#: Modules whose import registers fairseq components (tasks, models, criterions).
_COMPONENT_MODULES: tuple[str, ...] = (
    "spokenlm_plugin.ulm.models",
    "spokenlm_plugin.finetune.task",
    "spokenlm_plugin.finetune.model",
    "spokenlm_plugin.finetune.criterion",
    "spokenlm_plugin.finetune.ctc",
    "spokenlm_plugin.sutlm.task",
    "spokenlm_plugin.sutlm.models",
)


_registered = False


def register() -> None:
    """Apply the fairseq fixes and register the plugin's components (idempotent)."""
    global _registered
    if _registered:
        return
    _register()
    _install_excepthook()
    _registered = True


def _register() -> None:
    # fairseq's import announces that tensorboardX is missing (irrelevant here) on every command.
    tts_logger = logging.getLogger("fairseq.tasks.text_to_speech")
    level = tts_logger.level
    tts_logger.setLevel(logging.WARNING)
    try:
        from . import compat

        compat.apply()
    finally:
        tts_logger.setLevel(level)
    for name in _COMPONENT_MODULES:
        importlib.import_module(name)


def _install_excepthook() -> None:
    """Print a SpokenLMError that reaches the top of a fairseq tool as ``tool: error: message``.

    Each message already names the file and what to do; the traceback through fairseq's trainer
    only hid it. In a fairseq tool (``fairseq-train --user-dir spokenlm_plugin``, ...) an OS error
    about a named file (a data folder without ``dict.txt``, a ``--save-dir`` under a regular file)
    is one line too, as in ``spokenlm``. Any other exception keeps the previous hook (the full traceback).
    """
    from .core.errors import SpokenLMError

    previous = sys.excepthook

    def hook(kind, value, tb) -> None:
        tool = Path(sys.argv[0]).name
        if isinstance(value, SpokenLMError):
            print(f"{tool}: error: {value}", file=sys.stderr)
        elif isinstance(value, OSError) and value.filename is not None and tool.startswith("fairseq-"):
            print(f"{tool}: error: {value.filename}: {value.strerror or value}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    sys.excepthook = hook


def _is_cli_process() -> bool:
    """Whether this is the main process of the ``spokenlm`` console script, which registers the
    components itself once a command runs (processes it spawns re-import this package and register)."""
    return Path(sys.argv[0]).name == "spokenlm" and multiprocessing.current_process().name == "MainProcess"


if not _is_cli_process():
    register()
