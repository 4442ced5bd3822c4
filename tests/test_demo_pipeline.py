"""The demo's driver (spokenlm_plugin/demo/pipeline.py) with tiny fake stages in place of the real
ones: artifacts handed on, result.json round trip, resume after an interruption, --force /
--stages, and the report's layout. (Each real stage has its own test.)"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from spokenlm_plugin.demo import pipeline
from spokenlm_plugin.demo.context import DemoContext, StageResult, Table
from spokenlm_plugin.core.errors import ConfigError


class FakeStages:
    """One fake module per pipeline stage: each records its run, checks what earlier stages handed
    on, writes a plot file and hands on a Path and a nested dict holding a Path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.fail: set[str] = set()
        # The targets table reads the real stages' metrics (tests/test_demo_targets.py): none here.
        monkeypatch.setattr(pipeline, "target_checks", lambda metrics: [])
        for i, name in enumerate(pipeline.STAGES):
            module = types.ModuleType(f"spokenlm_plugin.demo.stage_{name}")
            module.run = self._stage(i, name)
            monkeypatch.setitem(sys.modules, module.__name__, module)

    def _stage(self, i: int, name: str):
        def run(ctx: DemoContext) -> StageResult:
            self.calls.append(name)
            if name in self.fail:
                raise KeyboardInterrupt
            if i:  # what the previous stage handed on arrives with its types (Path, not str)
                prev = pipeline.STAGES[i - 1]
                assert ctx.artifacts[f"{prev}_dir"] == ctx.work / prev
                assert ctx.artifacts[f"{prev}_info"] == {"files": [ctx.work / prev / "a.txt"], "k": i - 1}
            d = ctx.stage_dir(name)
            (d / "plot.png").write_bytes(b"png")
            ctx.artifacts[f"{name}_dir"] = d
            ctx.artifacts[f"{name}_info"] = {"files": [d / "a.txt"], "k": i}
            return StageResult(
                name=name, text=f"{name} text",
                tables=[Table(title=f"{name} table", headers=["model", "score"], rows=[["x", 0.25 * i], ["y", i]],
                              note="a note")],
                plots=[d / "plot.png"], metrics={"score": 0.25 * i, "nested": {"n": [i, None]},
                                                 **({"world": ctx.world} if name == "synth" else {})})

        return run


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeStages:
    return FakeStages(monkeypatch)


def _run(out: Path, **kwargs) -> str:
    report = pipeline.run_pipeline(out, quick=True, **kwargs)
    assert report == out / "report.md"
    return report.read_text()


def test_stages_run_in_order_and_hand_artifacts_on(fake: FakeStages, tmp_path: Path) -> None:
    _run(tmp_path)
    assert fake.calls == list(pipeline.STAGES)
    assert all((tmp_path / s / "result.json").is_file() for s in pipeline.STAGES)


def test_rerun_reuses_finished_stages_and_writes_the_same_report(fake: FakeStages, tmp_path: Path) -> None:
    first = _run(tmp_path)
    fake.calls.clear()
    assert _run(tmp_path) == first
    assert fake.calls == []


def test_interrupted_demo_resumes_at_the_first_unfinished_stage(fake: FakeStages, tmp_path: Path) -> None:
    third = pipeline.STAGES[2]
    fake.fail = {third}
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    assert fake.calls == list(pipeline.STAGES[:3])
    assert not (tmp_path / third / "result.json").exists() and not (tmp_path / "report.md").exists()
    fake.calls.clear()
    fake.fail = set()
    _run(tmp_path)  # the stages after it get the earlier stages' artifacts from their result.json
    assert fake.calls == list(pipeline.STAGES[2:])


def test_force_reruns_only_the_chosen_stages(fake: FakeStages, tmp_path: Path) -> None:
    _run(tmp_path)
    fake.calls.clear()
    second = pipeline.STAGES[1]
    _run(tmp_path, stages=[second], force=True)
    assert fake.calls == [second]


def test_stages_not_chosen_and_not_done_are_left_out(fake: FakeStages, tmp_path: Path) -> None:
    first = pipeline.STAGES[0]
    report = _run(tmp_path, stages=[first])
    assert fake.calls == [first]
    assert f"## {first}" in report and f"## {pipeline.STAGES[1]}" not in report


def test_unknown_stage_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown demo stage"):
        pipeline.run_pipeline(tmp_path, stages=["synth", "nope"])
    assert not (tmp_path / "report.md").exists()


def test_result_json_round_trip(tmp_path: Path) -> None:
    result = StageResult(
        name="units", text="t", tables=[Table(title="T", headers=["a", "b"], rows=[["x", 0.5], ["y", 2]], note="n")],
        plots=[tmp_path / "p.png"], metrics={"abx": {"within": 0.125, "ci": [0.1, 0.2]}, "ok": True, "none": None},
        seconds=12.5)
    artifacts = {"units": {"base": {"km_dir": tmp_path / "km", "layer": 2, "logits": "logits"}},
                 "corpus": tmp_path / "corpus", "list": [tmp_path / "a", 3]}
    pipeline._save(result, artifacts, tmp_path / "result.json")
    loaded, loaded_artifacts = pipeline._load(tmp_path / "result.json")
    assert loaded == result
    assert loaded_artifacts == artifacts
    assert isinstance(loaded_artifacts["units"]["base"]["km_dir"], Path)


def test_report_layout(tmp_path: Path) -> None:
    inside, outside = tmp_path / "units" / "abx.png", tmp_path.parent / "elsewhere.png"
    results = [
        StageResult(name="synth", seconds=1.4),
        StageResult(name="units", text="Units text.", seconds=10.6, plots=[inside, outside],
                    tables=[Table(title="ABX", headers=["features", "error"], rows=[["base", 0.12345]], note="lower is better")]),
    ]
    report = pipeline.render_report(results, out=tmp_path, quick=True)
    lines = report.splitlines()
    assert lines[0] == "# spokenlm_plugin demo report"
    assert "mode: quick." in report
    # The summary table: one row per stage (rounded seconds) and the total.
    assert "| synth | 1 |" in lines and "| units | 11 |" in lines and "| total | 12 |" in lines
    # Each stage: its heading, text, tables (floats to 3 decimals, note under the table), plots
    # linked relative to the report when they are inside its folder.
    units = report[report.index("## units"):]
    assert units.index("Units text.") < units.index("**ABX**") < units.index("| base | 0.123 |") < units.index("lower is better")
    assert "![abx](units/abx.png)" in units and f"![elsewhere]({outside})" in units
    assert report.index("## synth") < report.index("## units")


def test_a_demo_folder_of_the_other_world_is_not_resumed(fake: FakeStages, tmp_path: Path) -> None:
    _run(tmp_path / "out", world="wordnet")
    with pytest.raises(ConfigError, match="holds a demo of the wordnet world; pass --text wordnet"):
        _run(tmp_path / "out", world="stories")
    assert _run(tmp_path / "out", world="wordnet")  # the same world resumes
    fake.calls.clear()
    report = _run(tmp_path / "out", world="stories", stages=list(pipeline.STAGES), force=True)  # made afresh
    assert fake.calls == list(pipeline.STAGES) and "the story world" in report


def test_the_report_names_its_world(fake: FakeStages, tmp_path: Path) -> None:
    assert "WordNet example sentences; `spokenlm demo --text wordnet`" in _run(tmp_path / "w", world="wordnet")
    assert "`spokenlm demo --text stories`" in _run(tmp_path / "s")
