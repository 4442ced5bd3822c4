"""What the demo's stages share: a context going in, a result (tables, plots) coming out.

Each stage lives in ``spokenlm_plugin/demo/stage_<name>.py`` and defines
``run(ctx: DemoContext) -> StageResult``. Stages run in pipeline order and hand files to later
stages through ``ctx.artifacts`` (documented keys below), never through globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..synth.text import World

#: Keys of ``DemoContext.artifacts`` and who sets them.
ARTIFACT_KEYS = {
    "corpus": "Path of the synthetic corpus (synth stage)",
    "pairs": "Path of the lexical/syntactic minimal pairs (synth stage)",
    "base_checkpoint": "Path of the small pretrained HuBERT (fairseq format)",
    "finetuned_checkpoint": "Path of the phoneme fine-tuned checkpoint (finetune stage)",
    "base_layer": "int, the layer of the base model used for units",
    "finetuned_layer": "int, the layer of the fine-tuned model used for units",
    "units": "dict name -> {'km_dir': Path (split.km files), 'centroids': Path (.npy), 'checkpoint': Path, "
    "'layer': int|'logits', 'pairs_km_dir': Path} (units stage)",
    "ulm": "dict with 'checkpoint' (the LM used for continuation), 'units', 'prompts' and "
    "'continuations' (.km files) (ulm stage)",
    "vocoder": "dict with 'vocoders' (unit set name -> {'checkpoint': vocoder.pt, 'config': config.json}, "
    "fairseq CodeHiFiGAN format) and 'continuations' (list of wav Paths: spoken LM continuations) (vocoder stage)",
    "sutlm": "dict with 'data' (Path: the sutlm-data folder, units-raw / units-spN / textlm inside), 'checkpoints' "
    "(ablation row name or 'text LM' -> checkpoint Path) and 'voiced' (condition -> .km of voiced units, wavs in "
    "the folder of the same name) (sutlm stage)",
}

#: The unit set the joint speech-text LM (sutlm stage) is trained on. The vocoder stage gives its
#: vocoders a duration predictor when it trains this set, so the joint LM's deduplicated units can be voiced.
JOINT_LM_UNITS = "finetuned"


@dataclass
class Table:
    """A table of the report."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str = ""

    def to_markdown(self) -> str:
        def fmt(v: Any) -> str:
            return f"{v:.3f}" if isinstance(v, float) else str(v)

        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |",
                 "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


@dataclass
class StageResult:
    """What a stage contributes to the report."""

    name: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class DemoContext:
    """Inputs of a demo stage."""

    work: Path
    quick: bool = False
    jobs: int = 2
    #: The corpus's text world (``synth-corpus --text``): ``stories`` (default) or ``wordnet``.
    world: World = "stories"
    artifacts: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def stage_dir(self, name: str) -> Path:
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        return d
