"""The demo report's targets table: scored from the stages' metrics, misses explained."""

from __future__ import annotations

from pathlib import Path

from spokenlm_plugin.demo.context import StageResult
from spokenlm_plugin.demo.pipeline import render_report
from spokenlm_plugin.demo.targets import LOGMEL, target_checks


def _metrics(*, ft_acc: float, base_across: float, lexical: float) -> dict:
    abx = lambda w, a: {"abx_within": w, "abx_across": a}  # noqa: E731
    return {
        "finetune": {
            "finetuned": {"frame_accuracy": ft_acc, "per": 0.9, "train_frame_accuracy": 0.97,
                          "interior_frame_accuracy": 0.8, "boundary_share": 0.4,
                          "seen_frame_accuracy": 0.9},
            "logmel_classifier": {"frame_accuracy": 0.63, "interior_frame_accuracy": 0.75},
            "subset_seconds": 600.0, "subset_speakers": 8, "regime": {"max_update": 600},
        },
        "units": {
            "features": {"base L2": abx(0.16, base_across), "base L3": abx(0.15, base_across + 0.05),
                         "finetuned L4": abx(0.07, 0.10)},
            "baseline_features": {LOGMEL: abx(0.08, 0.17)},
            "units": {"base": {"pnmi": 0.38}, "finetuned": {"pnmi": 0.60}},
        },
        "ulm": {
            "finetuned/centroids": {"lexical": lexical, "lexical_ci": (lexical - 0.05, lexical + 0.05),
                                    "syntactic": 0.52, "syntactic_ci": (0.45, 0.59)},
            "base/centroids": {"lexical": 0.50, "lexical_ci": (0.45, 0.55), "syntactic": 0.5,
                               "syntactic_ci": (0.43, 0.57)},
            "phones/random": {"lexical": 0.64, "syntactic": 0.61},
            "finetuned-logits/random": {"lexical": lexical - 0.02, "syntactic": 0.5},
            "differences": {"fine-tuned vs base units (centroid init)": {"lexical": [lexical - 0.5, lexical - 0.55,
                                                                                      lexical - 0.45]},
                            "logits-argmax vs fine-tuned layer units": {"lexical": [-0.02, -0.08, 0.04]}},
        },
        "vocoder": {"original_per": 0.22, "resynthesis": {"finetuned": {"per_resynth": 0.51}}, "steps": 200,
                    "channels": 128},
        "sutlm": {"chance": 0.1, "(1) units + text": {"cra_t2t": 0.25, "cra_u2u": 0.2, "cra_u2u_ci": [0.12, 0.3]},
                  "(4) + AST": {"cra_t2t": 0.34, "cra_u2u": 0.2, "cra_u2u_ci": [0.12, 0.3], "cra_u2t": 0.1,
                                "cra_u2t_ci": [0.02, 0.2], "cra_t2u": 0.2, "cra_t2u_ci": [0.11, 0.3]}},
    }


def test_targets_scored_from_the_stage_metrics() -> None:
    checks = {c.target: c for c in target_checks(_metrics(ft_acc=0.85, base_across=0.12, lexical=0.70))}
    assert checks["base features: across-speaker ABX below log-mel's"].met
    assert "base L2" in checks["base features: across-speaker ABX below log-mel's"].measured  # the best layer
    assert checks["fine-tuned frame accuracy"].met
    assert not checks["fine-tuned PER (greedy, no LM)"].met
    assert checks["fine-tuned units: PNMI >= 0.50 and clearly above the base's (+0.05)"].met
    assert checks["LM on fine-tuned units, centroid init: sWUGGY"].met
    assert checks["fine-tuned units above base units (sWUGGY, paired)"].met  # interval [+15, +25]
    assert checks["logits-argmax units at least as good as fine-tuned layer units (sWUGGY, paired)"].met
    assert not checks["LM on gold phones (topline): sWUGGY"].met
    assert checks["resynthesis judge: PER on the original test audio"].met
    assert not checks["resynthesis PER of fine-tuned units"].met  # 51 % > 2 x 22 %
    assert checks["joint LM: CRA t2t (best row)"].met and "(4) + AST" in checks["joint LM: CRA t2t (best row)"].measured
    assert checks["joint LM: CRA u2u above chance ((4) + AST)"].met
    assert not checks["joint LM: CRA u2t above chance ((4) + AST)"].met  # interval reaches below 10 %
    assert checks["joint LM: CRA t2u above chance ((4) + AST)"].met


def test_missed_targets_state_their_measured_cause() -> None:
    checks = {c.target: c for c in target_checks(_metrics(ft_acc=0.61, base_across=0.31, lexical=0.53))}
    acc = checks["fine-tuned frame accuracy"]
    assert not acc.met and "97.0 %" in acc.cause and "90.0 %" in acc.cause
    assert "largest loss is new speakers (29.0 points), from 8 speakers" in acc.cause
    assert "40.0 % of the test frames touch a phone boundary, away from them it is right on 80.0 %" in acc.cause
    base = checks["base features: across-speaker ABX below log-mel's"]
    assert not base.met and "31.0 %" in base.measured
    lex = checks["LM on fine-tuned units, centroid init: sWUGGY"]
    assert not lex.met and "64.0 %" in lex.cause  # the gold-phone topline of the same run
    paired = checks["fine-tuned units above base units (sWUGGY, paired)"]
    assert not paired.met and "+3.0 [-2.0, +8.0]" in paired.measured
    assert "fine-tuned units above base units (sBLIMP, paired)" not in checks  # no syntactic difference measured


def test_the_judge_and_the_paired_syntactic_row_cite_their_measurements() -> None:
    metrics = _metrics(ft_acc=0.75, base_across=0.31, lexical=0.53)
    metrics["finetune"]["recognizer"] = {"frame_accuracy": 0.77, "updates": 200, "labelled_seconds": 2880.0}
    metrics["vocoder"]["original_per"] = 0.32
    metrics["ulm"]["differences"]["fine-tuned vs base units (centroid init)"]["syntactic"] = [0.11, 0.01, 0.22]
    checks = {c.target: c for c in target_checks(metrics)}
    judge = checks["resynthesis judge: PER on the original test audio"]
    assert not judge.met and "77.0 % after 200 updates on all 48 min of train labels" in judge.cause
    syn = checks["fine-tuned units above base units (sBLIMP, paired)"]
    assert syn.met and syn.measured.startswith("+11.0 [+1.0, +22.0]")


def test_report_carries_the_targets_table(tmp_path: Path) -> None:
    metrics = _metrics(ft_acc=0.61, base_across=0.31, lexical=0.53)
    results = [StageResult(name=n, metrics=m) for n, m in metrics.items()]
    report = render_report(results, out=tmp_path, quick=False)
    assert "Targets on the demo's unseen test speakers" in report
    assert "| fine-tuned frame accuracy | >= 0.800 | 0.610 | **no** |" in report


def test_no_targets_without_the_stages() -> None:
    assert target_checks({"synth": {"pairs": 3}}) == []


def test_an_underfit_model_is_named_as_such() -> None:
    metrics = _metrics(ft_acc=0.61, base_across=0.31, lexical=0.53)
    metrics["finetune"]["finetuned"].update(train_frame_accuracy=0.75, seen_frame_accuracy=0.65)
    acc = {c.target: c for c in target_checks(metrics)}["fine-tuned frame accuracy"]
    assert "largest loss is fit (its own labelled frames) (25.0 points)" in acc.cause
    assert "after 600 updates" in acc.cause
