"""spokenlm_plugin: spoken language modeling on phoneme-aware speech units, as a fairseq plugin.

Load it with ``fairseq-train --user-dir spokenlm_plugin`` (or ``import spokenlm_plugin``): the
import applies the fairseq compatibility fixes (:mod:`spokenlm_plugin.compat`) and registers every
task, model and criterion of the plugin. ``--user-dir`` imports only this package, so every module
that registers a component must be listed in ``_COMPONENT_MODULES``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Modules whose import registers fairseq components (tasks, models, criterions).
_COMPONENT_MODULES: tuple[str, ...] = (
)


def _register() -> None:
    from . import compat

    compat.apply()
    for name in _COMPONENT_MODULES:
        importlib.import_module(name)


_register()
