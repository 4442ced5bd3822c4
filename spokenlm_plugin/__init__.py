"""spokenlm_plugin: spoken language modeling on phoneme-aware speech units, as a fairseq plugin.

Load it with ``fairseq-train --user-dir spokenlm_plugin`` (or ``import spokenlm_plugin``): the
import applies the fairseq compatibility fixes (:mod:`spokenlm_plugin.compat`) and registers every
task, model and criterion of the plugin. ``--user-dir`` imports only this package, so every module
that registers a component must be listed in ``_COMPONENT_MODULES``.
"""

from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"

#: Modules whose import registers fairseq components (tasks, models, criterions).
_COMPONENT_MODULES: tuple[str, ...] = (
    "spokenlm_plugin.ulm.models",
    "spokenlm_plugin.finetune.task",
    "spokenlm_plugin.finetune.model",
    "spokenlm_plugin.finetune.criterion",
    "spokenlm_plugin.finetune.ctc",
)


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


_register()
