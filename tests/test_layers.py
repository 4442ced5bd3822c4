"""The package's dependency rule: a stage imports only the layers before it, never a later stage or
the CLI. The order is the pipeline's (README, "The pipeline"); ``core`` is shared by all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spokenlm_plugin"

#: Earlier layers first. `units` (dense features + k-means) precedes `pretrain` because HuBERT's
#: second iteration clusters the first iteration's features with the same tools.
ORDER = ("core", "data", "synth", "units", "pretrain", "convert", "finetune", "ulm", "vocoder", "sutlm", "demo")
#: Top-level modules: `compat` (fairseq fixes) sits with core; `cli` and `__init__` see everything.
TOP_LEVEL = {"compat": "core", "cli": None, "__init__": None}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "spokenlm_plugin" or len(parts) == 1:
        return None
    name = parts[1]
    return TOP_LEVEL.get(name, name) if name in TOP_LEVEL else name


def _imports(path: Path) -> list[tuple[int, str]]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    pkg = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # `from .. import cli`: the names are modules
                    found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
                    continue
            else:
                target = node.module or ""
            found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if own is None or own not in ORDER:
            continue
        for line, target in _imports(path):
            dep = target.split(".")
            if dep[0] != "spokenlm_plugin":
                continue
            if len(dep) > 1 and dep[1] == "cli":
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports the CLI ({target})")
                continue
            other = _layer_of(target)
            if other in ORDER and ORDER.index(other) > ORDER.index(own):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports a later stage: {target}")
    return bad


def test_every_package_has_a_place_in_the_order() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"resources"} == set(ORDER)


def test_no_module_imports_a_later_stage_or_the_cli() -> None:
    assert _violations() == []


def test_the_rule_catches_a_backward_import(tmp_path, monkeypatch) -> None:
    """The checker itself can fail: a core module importing a stage is reported."""
    fake = tmp_path / "spokenlm_plugin"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "__init__.py").write_text("")
    (fake / "core" / "x.py").write_text("from ..ulm.data import read_km\nfrom .. import cli\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    found = _violations()
    assert len(found) == 2 and "later stage" in found[0] and "CLI" in found[1]


if __name__ == "__main__":
    pytest.main([__file__])
