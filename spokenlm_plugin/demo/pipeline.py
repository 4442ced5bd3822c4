"""``spokenlm demo``: the whole pipeline on the embedded synthetic corpus, ending in a report.

Stages run in order (synth -> finetune -> units -> ulm -> vocoder -> sutlm); each writes under ``OUT/<stage>/`` and
records its result in ``OUT/<stage>/result.json`` when it completes, so an interrupted demo
resumes at the first unfinished stage. The report is ``OUT/report.md`` (tables + PNG plots).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import ConfigError
from ..core.io import atomic_write
from ..synth.text import WORLDS, World
from .context import DemoContext, StageResult, Table
from .targets import Check, target_checks, targets_table

#: How the report names each text world.
WORLD_NAMES: dict[str, str] = {"stories": "the story world: generated short stories over a small lexicon",
                               "wordnet": "WordNet example sentences"}

#: Pipeline order. Each name is a module ``spokenlm_plugin.demo.stage_<name>``.
STAGES: tuple[str, ...] = ("synth", "finetune", "units", "ulm", "vocoder", "sutlm")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__path__"}:
            return Path(value["__path__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _save(result: StageResult, artifacts: dict[str, Any], path: Path) -> None:
    payload = {"result": _jsonable(asdict(result)), "artifacts": _jsonable(artifacts)}
    with atomic_write(path) as f:
        json.dump(payload, f, indent=1)


def _load(path: Path) -> tuple[StageResult, dict[str, Any]]:
    payload = _from_json(json.loads(path.read_text()))
    r = payload["result"]
    result = StageResult(
        name=r["name"], text=r["text"], tables=[Table(**t) for t in r["tables"]],
        plots=[Path(p) for p in r["plots"]], metrics=r["metrics"], seconds=r["seconds"],
    )
    return result, payload["artifacts"]


def _check_world(out: Path, world: World) -> None:
    """Refuse to resume a demo folder made on the other text world (its later stages would mix them)."""
    done = out / "synth" / "result.json"
    if not done.is_file():
        return
    made = json.loads(done.read_text())["result"]["metrics"].get("world", "wordnet")
    if made != world:
        raise ConfigError(f"--text {world}: {out} holds a demo of the {made} world; pass --text {made} to resume it, "
                          f"or another --out")


def run_pipeline(
    out: Path, *, stages: Sequence[str] = STAGES, quick: bool = False, jobs: int = 2, force: bool = False,
    world: World = "stories",
) -> Path:
    """Run ``stages`` into ``out`` (resuming finished ones) and write ``out/report.md``."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown demo stage(s) {unknown}; choose from {list(STAGES)}")
    if world not in WORLDS:
        raise ConfigError(f"--text: {world!r} is not one of {', '.join(WORLDS)}")
    if not (force and "synth" in stages):
        _check_world(out, world)
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(work=out, quick=quick, jobs=jobs, world=world)
    results: list[StageResult] = []
    for name in STAGES:
        done = out / name / "result.json"
        if done.is_file() and not (force and name in stages):
            # Finished stages hand their artifacts on even when not selected.
            result, artifacts = _load(done)
            ctx.artifacts.update(artifacts)
            ctx.log(f"[demo] {name}: done before ({result.seconds:.0f} s), reusing {done}")
            results.append(result)
            continue
        if name not in stages:
            continue
        ctx.log(f"[demo] {name}: running")
        before = dict(ctx.artifacts)
        t0 = time.perf_counter()
        result = importlib.import_module(f"{__package__}.stage_{name}").run(ctx)
        result.seconds = time.perf_counter() - t0
        new = {k: v for k, v in ctx.artifacts.items() if before.get(k) is not v}
        _save(result, new, done)
        ctx.log(f"[demo] {name}: finished in {result.seconds:.0f} s")
        results.append(result)
    report = out / "report.md"
    with atomic_write(report) as f:
        f.write(render_report(results, out=out, quick=quick, world=world))
    ctx.log(f"[demo] report: {report}")
    return report


def render_report(results: Sequence[StageResult], *, out: Path, quick: bool, world: World = "stories") -> str:
    """The markdown report: a summary table, then each stage's text, tables and plots."""
    import torch  # here, not at module level: `spokenlm demo --help` must not wait seconds for it

    lines = [
        "# spokenlm_plugin demo report",
        "",
        f"The whole pipeline on the embedded synthetic corpus (flite voices, {WORLD_NAMES[world]}; "
        f"`spokenlm demo --text {world}`): "
        "pretrained small HuBERT -> phoneme fine-tuning -> features, k-means units, ABX / PNMI -> "
        "unit language models, lexical / syntactic discrimination -> unit vocoders, resynthesis -> "
        "joint speech-unit / text LMs (SUTLM), cross-modal retrieval.",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}; mode: {'quick' if quick else 'full'}.",
        "",
        Table(
            title="Stages",
            headers=["stage", "seconds"],
            rows=[[r.name, round(r.seconds)] for r in results]
            + [["total", round(sum(r.seconds for r in results))]],
        ).to_markdown(),
        "",
    ]
    checks = target_checks({r.name: r.metrics for r in results})
    if checks and {r.name for r in results} == set(STAGES):
        total = sum(r.seconds for r in results)
        checks.append(Check("the demo's wall time (2 idle cores)", "< 15 min", f"{total / 60:.1f} min", total < 900,
                            "stage seconds above; a busy machine slows every stage"))
    if checks:
        lines += [targets_table(checks, quick=quick).to_markdown(), ""]
    for r in results:
        lines += [f"## {r.name}", ""]
        if r.text:
            lines += [r.text, ""]
        for t in r.tables:
            lines += [t.to_markdown(), ""]
        for p in r.plots:
            rel = Path(p).resolve().relative_to(out.resolve()) if Path(p).resolve().is_relative_to(out.resolve()) else p
            lines += [f"![{Path(p).stem}]({rel})", ""]
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about a minute; for tests)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, help="stages to run")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes where a stage can use them")
    parser.add_argument("--force", action="store_true", help="rerun stages that finished before")
    parser.add_argument("--text", choices=WORLDS, default="stories",
                        help="the corpus's text world: stories (default; generated stories over a small lexicon, "
                             "which a small LM can learn in the demo's hour) or wordnet (WordNet example sentences)")


def run(args: argparse.Namespace) -> int:
    report = run_pipeline(args.out, stages=args.stages, quick=args.quick, jobs=args.jobs, force=args.force,
                          world=args.text)
    print(report)
    return 0
