"""Demo stage ``finetune``: phoneme fine-tuning of the small HuBERT on 10 minutes of labels.

The small base (``ctx.artifacts["base_checkpoint"]``, by default the one shipped in
``spokenlm_plugin/resources/hubert_small``) is trained twice with the real ``fairseq-train``, on the
same speaker-balanced 10-minute subset (``spokenlm subset``) and the same classifier head:

- fine-tuned: the encoder frozen for the first tenth of the updates, as the paper, but with the CNN
  trained and no masking or layerdrop: the CPU regime measured in examples/finetune/README.md
  (``examples/finetune/config/demo.yaml``);
- linear probe: the encoder frozen for all updates, no masking or layerdrop, so only the head learns.

Both are scored on the test speakers, unseen in training: frame accuracy and greedy PER
(:mod:`spokenlm_plugin.core.phone_metrics`). The baseline beside them: a linear classifier on log-mel
frames (+-2 frames of context, :mod:`spokenlm_plugin.units.phone_classifier`) trained on the same
subset and scored on the same test speakers with the same metrics.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..finetune.evaluate import evaluate_phones
from ..pretrain.hubert import shipped_checkpoint
from ..finetune.pretrained import load_pretrained
from ..core.tools import run_tool
from ..core.io import atomic_path, atomic_write, read_lines, read_manifest, write_manifest
from ..core.phone_metrics import switch_probability
from ..core.phones import SAMPLE_RATE
from ..data.subset import make_subset
from ..units.phone_classifier import linear_phone_baseline
from .context import DemoContext, StageResult, Table

PLUGIN_DIR = Path(__file__).resolve().parents[1]
#: Utterances of the train speakers outside the labelled subset scored as ``seen`` (a diagnostic).
SEEN_ROWS = 60


@dataclass(frozen=True)
class Regime:
    """Size and recipe of the demo runs (mirrored by examples/finetune/config/demo.yaml).

    The paper's recipe (CNN frozen, mask_prob 0.75 / channel 0.5, layerdrop 0.1) regularises a
    95M-parameter HuBERT Base over 20k updates. Measured on the demo's data with a 3.7M-parameter
    base and a few hundred updates, it underfits: see examples/finetune/README.md ("CPU regime").
    """

    minutes: float = 10.0
    max_update: int = 600
    #: The linear probe's updates: only its head learns, on features that do not change, so a third of
    #: the fine-tuning's updates (3 epochs of the subset) fit it.
    probe_updates: int = 200
    lr: float = 1e-3
    freeze_updates: int = 60
    #: 10 s of audio per batch (about 3 utterances of the synthetic corpus).
    max_tokens: int = 160_000
    train_cnn: bool = True
    mask_prob: float = 0.0
    mask_channel_prob: float = 0.0
    layerdrop: float = 0.0


FULL = Regime()
QUICK = Regime(max_update=20, freeze_updates=2, probe_updates=20)


@dataclass(frozen=True)
class RecognizerRegime:
    """The resynthesis judge: the fine-tuned model trained on, with every labelled train utterance.

    It is an instrument, not a model under test: more labels than the paper's 10 minutes, a constant
    learning rate from the fine-tuned weights (warm start: the fine-tuning run's updates are not paid
    twice), Viterbi-smoothed decoding with the switch probability of the train labels.
    """

    max_update: int = 150
    lr: float = 5e-4
    max_tokens: int = 160_000


RECOGNIZER = {False: RecognizerRegime(), True: RecognizerRegime(max_update=5)}


def _frame_cls_args(data: Path, base: Path, save_dir: Path, *, lr: float, max_update: int,
                    max_tokens: int) -> list[str]:
    """What every ``fairseq-train`` run of this stage shares (the schedule goes after)."""
    return [
        str(data), "--user-dir", str(PLUGIN_DIR),
        "--task", "phoneme_frame_cls", "--labels", "phn",
        "--arch", "hubert_frame_cls", "--w2v-path", str(base),
        "--criterion", "frame_phoneme_ce",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-08", "--weight-decay", "0.0",
        "--lr", str(lr), "--clip-norm", "5.0",
        "--max-update", str(max_update), "--max-tokens", str(max_tokens), "--batch-size", "32",
        "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--save-interval", "1000000",
        "--disable-validation", "--num-workers", "0", "--seed", "1",
        "--log-format", "simple", "--log-interval", "10",
    ]


def train_args(data: Path, base: Path, save_dir: Path, regime: Regime, *, probe: bool) -> list[str]:
    """``fairseq-train`` arguments of the fine-tuning run (``probe``: the linear probe)."""
    args = _frame_cls_args(data, base, save_dir, lr=regime.lr, max_tokens=regime.max_tokens,
                           max_update=regime.probe_updates if probe else regime.max_update) + [
        "--lr-scheduler", "tri_stage", "--phase-ratio", "[0.1,0.4,0.5]",
        "--init-lr-scale", "0.01", "--final-lr-scale", "0.05",
    ]
    if probe:
        return args + [
            "--freeze-finetune-updates", str(regime.probe_updates + 1),
            # A frozen encoder runs in eval mode (no dropout, no layerdrop); masking is switched off here.
            "--mask-prob", "0.0", "--mask-channel-prob", "0.0",
        ]
    return args + [
        "--freeze-finetune-updates", str(regime.freeze_updates),
        "--mask-prob", str(regime.mask_prob), "--mask-length", "10",
        "--mask-channel-prob", str(regime.mask_channel_prob), "--mask-channel-length", "10",
        "--layerdrop", str(regime.layerdrop), "--activation-dropout", "0.1",
        *(["--train-cnn"] if regime.train_cnn else []),
    ]


def _prepare_data(corpus: Path, out: Path, regime: Regime) -> Path:
    """``out/data``: the subset as ``train``, the corpus's valid and test splits beside it."""
    data = out / "data"
    train = corpus / "manifests" / "train.tsv"
    # A small (quick) corpus has less than the regime's minutes of train audio: take all of it.
    available = sum(r.num_samples for r in read_manifest(train).rows) / SAMPLE_RATE / 60
    minutes = min(regime.minutes, math.floor(available * 1e4) / 1e4)
    # float(): `spokenlm subset --minutes` parsed a float, and subset.json records the seconds as given.
    make_subset(train, corpus / "labels" / "train.phn", data, seconds=float(minutes) * 60, seed=0)
    for split in ("valid", "test"):
        for src in (corpus / "manifests" / f"{split}.tsv", corpus / "labels" / f"{split}.phn"):
            with atomic_path(data / src.name) as tmp:
                shutil.copyfile(src, tmp)
    _write_seen_split(corpus, data)
    return data


def _write_seen_split(corpus: Path, data: Path, *, max_rows: int = SEEN_ROWS) -> None:
    """``data/seen.{tsv,phn}``: train-speaker utterances left out of the labelled subset, to tell
    overfitting to the subset from failing to generalise to new speakers."""
    train = read_manifest(corpus / "manifests" / "train.tsv")
    labels = read_lines(corpus / "labels" / "train.phn")
    used = {r.relpath for r in read_manifest(data / "train.tsv").rows}
    rows = [(r, y) for r, y in zip(train.rows, labels) if r.relpath not in used][:max_rows]
    write_manifest(data / "seen.tsv", train.root, [r for r, _ in rows])
    with atomic_write(data / "seen.phn") as f:
        f.write("".join(y + "\n" for _, y in rows))


def _recognizer_data(corpus: Path, out: Path) -> Path:
    """``out/recognizer_data``: every labelled train utterance as ``train``, and the test split."""
    data = out / "recognizer_data"
    data.mkdir(parents=True, exist_ok=True)
    for src in [corpus / "manifests" / f"{s}.tsv" for s in ("train", "test")] + [
            corpus / "labels" / f"{s}.phn" for s in ("train", "test")] + [corpus / "labels" / "dict.phn.txt"]:
        with atomic_path(data / src.name) as tmp:
            shutil.copyfile(src, tmp)
    return data


def _recognizer_args(data: Path, base: Path, tuned: Path, save_dir: Path, regime: RecognizerRegime) -> list[str]:
    # --w2v-path builds the architecture; --finetune-from-model then loads the fine-tuned weights into it
    return _frame_cls_args(data, base, save_dir, lr=regime.lr, max_update=regime.max_update,
                           max_tokens=regime.max_tokens) + [
        "--finetune-from-model", str(tuned), "--lr-scheduler", "fixed",
        "--freeze-finetune-updates", "0", "--mask-prob", "0.0", "--mask-channel-prob", "0.0", "--train-cnn",
    ]


def _train_recognizer(corpus: Path, base: Path, tuned: dict, out: Path, regime: RecognizerRegime,
                      ctx: DemoContext) -> dict:
    """The resynthesis judge (cached in ``out/recognizer.json``), scored on the test speakers."""
    done = out / "recognizer.json"
    if done.is_file():
        return json.loads(done.read_text())
    data = _recognizer_data(corpus, out)
    save_dir = out / "recognizer"
    ctx.log(f"finetune: the resynthesis judge: {regime.max_update} more updates on every labelled train utterance")
    seconds = run_tool("fairseq-train", _recognizer_args(data, base, Path(tuned["checkpoint"]), save_dir, regime),
                       log_path=out / "recognizer.log", threads=ctx.jobs, log=ctx.log)
    switch = switch_probability(data / "train.phn")
    scores = evaluate_phones(save_dir / "checkpoint_last.pt", data=data, split="test", switch_prob=switch)
    train = read_manifest(data / "train.tsv")
    result = {
        "checkpoint": str(save_dir / "checkpoint_last.pt"), "train_seconds": round(seconds, 1),
        "labelled_seconds": sum(r.num_samples for r in train.rows) / SAMPLE_RATE, "switch_prob": switch,
        "frame_accuracy": scores.frame_accuracy, "per": scores.per, "per_smoothed": scores.per_smoothed,
        "interior_frame_accuracy": scores.interior_accuracy, "updates": regime.max_update,
    }
    with atomic_write(done) as f:
        json.dump(result, f, indent=1)
    return result


def _train_and_score(name: str, data: Path, base: Path, out: Path, regime: Regime, ctx: DemoContext, *,
                     switch_prob: float) -> dict:
    done = out / f"{name}.json"
    if done.is_file():
        return json.loads(done.read_text())
    save_dir = out / name
    seconds = run_tool(
        "fairseq-train", train_args(data, base, save_dir, regime, probe=name == "probe"),
        log_path=out / f"{name}.log", threads=ctx.jobs, log=ctx.log,
    )
    scores = evaluate_phones(save_dir / "checkpoint_last.pt", data=data, split="test", switch_prob=switch_prob)
    # Where the errors come from: the labelled subset itself (fit), its speakers' other utterances
    # (seen), then unseen speakers (test).
    # (The probe's fit says nothing new: only the fine-tuned model is scored there.)
    seen = {split: evaluate_phones(save_dir / "checkpoint_last.pt", data=data, split=split).frame_accuracy
            if name != "probe" and read_manifest(data / f"{split}.tsv").rows else None  # quick: subset = split
            for split in ("train", "seen")}
    result = {
        "checkpoint": str(save_dir / "checkpoint_last.pt"),
        "train_seconds": round(seconds, 1),
        "frame_accuracy": scores.frame_accuracy,
        "per": scores.per,
        "per_smoothed": scores.per_smoothed,
        "test_frames": scores.frames,
        "test_utterances": scores.utterances,
        "interior_frame_accuracy": scores.interior_accuracy,
        "boundary_share": scores.boundary_share,
        "train_frame_accuracy": seen["train"],
        "seen_frame_accuracy": seen["seen"],
    }
    with atomic_write(done) as f:
        json.dump(result, f, indent=1)
    return result


def _logmel_classifier(data: Path, out: Path) -> dict:
    """The log-mel linear classifier trained on the subset, scored on the test split (cached)."""
    done = out / "logmel_classifier.json"
    if done.is_file():
        return json.loads(done.read_text())
    res = linear_phone_baseline(data / "train.tsv", data / "train.phn", data / "test.tsv", data / "test.phn",
                                data / "dict.phn.txt")
    result = asdict(res)
    with atomic_write(done) as f:
        json.dump(result, f, indent=1)
    return result


def run(ctx: DemoContext) -> StageResult:
    start = time.perf_counter()
    regime = QUICK if ctx.quick else FULL
    out = ctx.stage_dir("finetune")
    corpus = Path(ctx.artifacts["corpus"])
    base = Path(ctx.artifacts.get("base_checkpoint") or shipped_checkpoint())
    ctx.artifacts["base_checkpoint"] = base
    data = _prepare_data(corpus, out, regime)
    subset = json.loads((data / "train.subset.json").read_text())
    ctx.log(f"finetune: {subset['seconds'] / 60:.1f} min of labels from {len(subset['speakers'])} speakers")

    # the smoothed PER's switch probability, from the labels the models learn (the subset's)
    switch = switch_probability(data / "train.phn")
    probe = _train_and_score("probe", data, base, out, regime, ctx, switch_prob=switch)
    tuned = _train_and_score("finetuned", data, base, out, regime, ctx, switch_prob=switch)
    ctx.log("finetune: baseline: linear classifier on log-mel frames (+-2) of the same subset")
    logmel = _logmel_classifier(data, out)
    recognizer = _train_recognizer(corpus, base, tuned, out, RECOGNIZER[ctx.quick], ctx)
    ctx.artifacts["recognizer"] = {"checkpoint": Path(recognizer["checkpoint"]), "switch_prob": recognizer["switch_prob"]}

    base_layers = int(load_pretrained(base).cfg.model.encoder_layers)
    ctx.artifacts["finetuned_checkpoint"] = Path(tuned["checkpoint"])
    ctx.artifacts["finetuned_layer"] = base_layers  # the classifier's input layer (the last, as in the paper)
    ctx.artifacts["base_layer"] = base_layers - 1  # the paper's base layer is the second to last (11 of 12)

    def cells(r: dict) -> list:
        smoothed = "-" if r.get("per_smoothed") is None else r["per_smoothed"]
        return [r["frame_accuracy"], r["per"], smoothed, r.get("interior_frame_accuracy", "-"),
                *("-" if r.get(k) is None else r[k] for k in ("train_frame_accuracy", "seen_frame_accuracy"))]

    rows = [
        ["linear probe (frozen base)", regime.probe_updates, probe["train_seconds"], *cells(probe)],
        ["fine-tuned (CPU regime)", regime.max_update, tuned["train_seconds"], *cells(tuned)],
        [f"baseline: linear on log-mel (+-{logmel['context']} frames)", f"{logmel['iterations']} L-BFGS",
         logmel["train_seconds"], *cells(logmel)],
        [f"resynthesis judge: fine-tuned + all {recognizer['labelled_seconds'] / 60:.0f} min of train labels",
         f"+{recognizer['updates']}", recognizer["train_seconds"], *cells(recognizer)],
    ]
    table = Table(
        title=f"Phone recognition on the test speakers (unseen), {subset['seconds'] / 60:.1f} min of labels",
        headers=["model", "updates", "train s", "frame accuracy", "PER", "PER smoothed", "acc. away from phone boundaries",
                 "acc. on its labelled frames", "acc. train speakers, other utterances"],
        rows=rows,
        note=(
            f"{probe['test_utterances']} test utterances, {probe['test_frames']} frames"
            + (f", {100 * tuned['boundary_share']:.0f} % of them next to a phone boundary (the other frames: "
               "'away from phone boundaries')" if "boundary_share" in tuned else "")
            + ". PER: greedy decoding "
            "(argmax per frame, repeats collapsed, SIL dropped on both sides) / reference phones; it counts "
            "every flicker of the frame decisions as inserted phones, so it exceeds 1 for weak frame classifiers "
            "and favours a model that changes its decision rarely. PER smoothed: the most likely frame path under a "
            "model that switches phone with the train labels' switch probability (Viterbi; no lexicon, no LM). "
            "Baseline: "
            "multinomial logistic regression (scikit-learn, L-BFGS to convergence, standardised inputs) on 40 "
            "log-mel energies (per-utterance mean / variance normalised) of frames t-2..t+2, trained on the same "
            f"{logmel['train_frames']} labelled frames."
        ),
    )
    gain = tuned["frame_accuracy"] - probe["frame_accuracy"]
    return StageResult(
        name="finetune",
        text=(
            f"The small HuBERT ({base.name}, {base_layers} layers, pretrained with fairseq's hubert_pretraining, "
            "two iterations, on a disjoint corpus) is fine-tuned on frame-level phone classification with "
            f"{subset['seconds'] / 60:.1f} minutes of labels, and compared with a linear probe (same head, "
            f"encoder frozen) trained on the same data: fine-tuning adds {100 * gain:.1f} points of frame "
            "accuracy on speakers never seen in training. A linear classifier on log-mel frames, trained on the "
            f"same labels, reaches {100 * logmel['frame_accuracy']:.1f} % frame accuracy: what the labels alone "
            "buy without any pretrained model."
        ),
        tables=[table],
        metrics={
            "regime": asdict(regime),
            "subset_seconds": subset["seconds"],
            "subset_speakers": len(subset["speakers"]),
            "probe": probe,
            "finetuned": tuned,
            "logmel_classifier": logmel,
            "recognizer": recognizer,
        },
        seconds=time.perf_counter() - start,
    )
