"""``spokenlm resynth-eval``: how much of the original speech a resynthesis keeps.

For every manifest row, the original audio and ``WAVDIR/<utt_id>.wav`` are compared with
:mod:`.metrics` (MCD, F0 correlation). ``--mcd`` picks the MCD: fairseq's (``mcd``, the default),
the paper's SPTK mel-cepstral one (``mcd_sptk``, dB), or both; the two are on different scales.
With ``--phone-model`` (a ``hubert_frame_cls`` checkpoint, e.g. the project's fine-tuned model)
both are also transcribed by frame classification and scored against ``--labels`` (the gold 50 Hz
phone labels): the PER of the resynthesised audio next to the PER of the original audio, the
paper's WER analogue (the recogniser never heard resynthesised speech). ``--decode`` picks the
frame classes: ``greedy`` (each frame's argmax) or ``viterbi`` (the best path under a stay/switch
model, :func:`~spokenlm_plugin.core.phone_metrics.viterbi_frames`, whose switch probability comes
from ``--switch-prob`` or is measured on training labels with ``--switch-from-labels``). PER as in
:mod:`spokenlm_plugin.core.phone_metrics`: runs collapsed, SIL dropped, total edits / total
reference phones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import ConfigError, DictionaryError, LabelMismatchError, ManifestError, SpokenLMError
from ..core.audio import read_audio
from ..core.io import atomic_write, read_lines, read_manifest
from ..core.runtime import positive_int, torch_threads
from .config import RESYNTH_TOLERANCE
from .metrics import McdKind, f0_correlation, mcd

FAIRSEQ_MCD_NOTE = ("MCD: fairseq batch_mel_cepstral_distortion (13 MFCC incl. c0 of 80 log-mels, "
                    "50 ms / 12.5 ms, DTW, path-normalised)")
SPTK_MCD_NOTE = ("mcd_sptk: the paper's MCD in dB (mel-cepstra c1-c23, pysptk sp2mc alpha 0.42, of Hamming 512 / "
                 "hop 256 periodograms of 0.95-peak-normalised audio; exact DTW, mean over the path)")
F0_NOTE = "F0 corr: Pearson over the original's voiced 10 ms frames"
MCD_NOTE = f"{FAIRSEQ_MCD_NOTE}; {F0_NOTE}"

#: ``--decode`` choices: how frame classes are picked before runs are collapsed into phones.
PhoneDecoding = Literal["greedy", "viterbi"]
DECODINGS: tuple[PhoneDecoding, ...] = ("greedy", "viterbi")

#: ``--mcd`` choices: which MCDs to compute.
McdChoice = Literal["fairseq", "sptk", "both"]
MCD_CHOICES: tuple[McdChoice, ...] = ("fairseq", "sptk", "both")
#: Result key of each MCD.
MCD_KEYS: dict[McdKind, str] = {"fairseq": "mcd", "sptk": "mcd_sptk"}


def mcd_kinds(choice: McdChoice) -> list[McdKind]:
    """The MCDs ``--mcd CHOICE`` computes."""
    return ["fairseq", "sptk"] if choice == "both" else [choice]


def definition(choice: McdChoice) -> str:
    """How the metrics of ``--mcd CHOICE`` are defined (one line)."""
    notes = {"fairseq": FAIRSEQ_MCD_NOTE, "sptk": SPTK_MCD_NOTE}
    return "; ".join([*(notes[k] for k in mcd_kinds(choice)), F0_NOTE])


class PhoneRecognizer:
    """Phone transcription with a ``hubert_frame_cls`` checkpoint.

    ``decode="greedy"``: the argmax class of every frame. ``decode="viterbi"``: the best class path
    over the log-softmax of the logits under a stay/switch model with switch probability
    ``switch_prob`` (needed then, and only then; see :func:`~spokenlm_plugin.core.phone_metrics.switch_probability`).
    """

    def __init__(self, checkpoint: str | os.PathLike, *, decode: PhoneDecoding = "greedy",
                 switch_prob: float | None = None) -> None:
        from ..finetune.evaluate import load_frame_classifier
        from ..core.phones import SIL
        from ..units.encoder import DenseModel

        if decode not in DECODINGS:
            raise ConfigError(f"decode {decode!r}: choose one of {', '.join(DECODINGS)}")
        if decode == "viterbi" and switch_prob is None:
            raise ConfigError("viterbi decoding needs a switch probability (switch_prob; on the command line "
                              "--switch-prob P or --switch-from-labels TRAIN.phn)")
        if decode == "greedy" and switch_prob is not None:
            raise ConfigError("a switch probability applies to viterbi decoding only: decode viterbi, "
                              "or leave switch_prob out")
        if switch_prob is not None and not 0 < switch_prob < 1:
            raise ConfigError(f"switch probability {switch_prob}: must lie strictly between 0 and 1")
        self.decode: PhoneDecoding = decode
        self.switch_prob = switch_prob

        try:
            model, task = load_frame_classifier(checkpoint)
        except SpokenLMError:
            raise
        except Exception as e:  # fairseq's loader fails in many ways on a foreign file
            from ..core.errors import CheckpointError

            raise CheckpointError(f"{checkpoint}: not a hubert_frame_cls checkpoint ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
        self.phones = task.phones
        self.sil = self.phones.index(SIL) if SIL in self.phones else None
        self.dense = DenseModel(model, layer="logits", normalize=bool(getattr(task.cfg, "normalize", False)),
                                device="cpu", name=str(checkpoint))

    def frames(self, wav: np.ndarray) -> list[int]:
        """The class of every 20 ms frame of ``wav``, picked as ``decode`` says."""
        logits = self.dense(wav)
        if self.decode == "greedy":
            return logits.argmax(-1).tolist()
        from ..core.phone_metrics import viterbi_frames

        assert self.switch_prob is not None  # checked in __init__
        return viterbi_frames(logits.double().log_softmax(-1), switch_prob=self.switch_prob)

    def description(self) -> str:
        """How frames are decoded, for reports (one phrase)."""
        if self.decode == "greedy":
            return "greedy frame decoding (argmax of every frame)"
        return f"Viterbi frame decoding (switch probability {self.switch_prob:.4g})"

    def settings(self) -> dict[str, Any]:
        """The decoding, as stored in results: ``decode`` and ``switch_prob`` (None for greedy)."""
        return {"decode": self.decode, "switch_prob": self.switch_prob}

    def label_ids(self, labels: list[str], *, where: str) -> list[int]:
        index = {p: i for i, p in enumerate(self.phones)}
        unknown = sorted({p for p in labels if p not in index})
        if unknown:
            raise DictionaryError(f"{where}: phones {unknown[:5]} are not classes of the phone model")
        return [index[p] for p in labels]

    def errors(self, wav: np.ndarray, reference: list[int]) -> tuple[int, int]:
        from ..core.phone_metrics import phone_errors

        return phone_errors(self.frames(wav), reference, sil=self.sil)


def _read_resynthesis(path: Path, *, original: np.ndarray, original_path: Path, downmix: bool) -> np.ndarray:
    """The resynthesis of ``original``, refused unless it is as long (units x 320 samples): the metrics
    pair frames by time, and a cut-short file would be scored on its first part only."""
    if not path.is_file():
        raise ManifestError(f"{path}: resynthesised audio missing (expected <utt_id>.wav for every manifest row)")
    wav = read_audio(path, downmix=downmix)
    if abs(len(wav) - len(original)) > RESYNTH_TOLERANCE:
        raise LabelMismatchError(
            f"{path}: {len(wav)} samples ({len(wav) / 16_000:.2f} s) but its original {original_path} has "
            f"{len(original)} ({len(original) / 16_000:.2f} s); a resynthesis from this manifest's 50 Hz units "
            f"differs by at most {RESYNTH_TOLERANCE} samples: resynthesise it again (vocoder-synth, without --durations)")
    return wav


def resynthesis_metrics(manifest: str | os.PathLike, wavs: str | os.PathLike, *,
                        phone_model: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
                        recognizer: PhoneRecognizer | None = None, score_original: bool = True,
                        downmix: bool = False, progress: bool = False, mcd_choice: McdChoice = "fairseq",
                        decode: PhoneDecoding | None = None, switch_prob: float | None = None,
                        ) -> dict[str, Any]:
    """Per-utterance and total MCD, F0 correlation and (with a phone model) PER of resynthesis and
    original (``score_original=False`` skips the latter when it is known already; ``downmix``
    averages the channels of multi-channel audio instead of refusing it). ``mcd_choice``: fairseq's
    MCD (key ``mcd``), the paper's SPTK MCD (``mcd_sptk``, nan for audio under 512 samples) or both.
    ``decode`` (default greedy) and ``switch_prob``: the decoding of the :class:`PhoneRecognizer` built
    from ``phone_model``; a given ``recognizer`` decodes as it was built (other settings are an error). With a
    recognizer the result's ``phone_decoding`` holds its settings and ``per_definition`` says how
    the PER was computed."""
    from tqdm import tqdm

    kinds = mcd_kinds(mcd_choice)
    m = read_manifest(manifest)
    wavs = Path(wavs)
    if recognizer is None and phone_model is not None:
        recognizer = PhoneRecognizer(phone_model, decode=decode or "greedy", switch_prob=switch_prob)
    elif recognizer is not None and ((decode is not None and decode != recognizer.decode)
                                     or (switch_prob is not None and switch_prob != recognizer.switch_prob)):
        raise ConfigError(f"decode={decode!r}, switch_prob={switch_prob} contradict the given recognizer's "
                          f"{recognizer.description()}; set the decoding when building the PhoneRecognizer")
    refs: list[list[str]] | None = None
    if recognizer is not None:
        if labels is None:
            raise ConfigError("--phone-model needs --labels (the 50 Hz frame phone labels of the manifest)")
        refs = [line.split() for line in read_lines(labels)]
        if len(refs) != len(m):
            raise LabelMismatchError(f"{labels}: {len(refs)} lines but {manifest} has {len(m)} rows")
    rows: list[dict[str, Any]] = []
    totals = {"resynth_edits": 0, "original_edits": 0, "ref_phones": 0}
    for i, row in enumerate(tqdm(m.rows, desc="resynth-eval", unit="utt", disable=not progress)):
        original = read_audio(m.path(row), expected_samples=row.num_samples, downmix=downmix)
        resynth = _read_resynthesis(wavs / f"{row.utt_id}.wav", original=original, original_path=m.path(row),
                                    downmix=downmix)
        r: dict[str, Any] = {"utt_id": row.utt_id, **{MCD_KEYS[k]: mcd(original, resynth, kind=k) for k in kinds},
                             "f0_corr": f0_correlation(original, resynth)}
        if recognizer is not None and refs is not None:
            ref = recognizer.label_ids(refs[i], where=f"{labels}:{i + 1}")
            e_syn, n = recognizer.errors(resynth, ref)
            e_orig = recognizer.errors(original, ref)[0] if score_original else 0
            r |= {"per_resynth": e_syn / n if n else math.nan, "ref_phones": n}
            if score_original:
                r["per_original"] = e_orig / n if n else math.nan
            totals["resynth_edits"] += e_syn
            totals["original_edits"] += e_orig
            totals["ref_phones"] += n
        rows.append(r)
    total: dict[str, Any] = {"utterances": len(rows), **{MCD_KEYS[k]: _nanmean([r[MCD_KEYS[k]] for r in rows])
                                                         for k in kinds},
                             "f0_corr": _nanmean([r["f0_corr"] for r in rows])}
    if recognizer is not None:
        n = totals["ref_phones"]
        total |= {"per_resynth": totals["resynth_edits"] / n if n else math.nan, "ref_phones": n}
        if score_original:
            total["per_original"] = totals["original_edits"] / n if n else math.nan
    result: dict[str, Any] = {"utterances": rows, "total": total, "definition": definition(mcd_choice)}
    if recognizer is not None:
        result["phone_decoding"] = recognizer.settings()
        result["per_definition"] = (f"PER: {recognizer.description()}, runs collapsed, SIL dropped, "
                                    "total edits / total reference phones")
    return result


def _nanmean(values: list[float]) -> float:
    """Mean over the values that are not nan (nan when none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, type=Path, help="manifest of the original audio")
    parser.add_argument("--wavs", required=True, type=Path, help="folder of resynthesised <utt_id>.wav")
    parser.add_argument("--phone-model", type=Path, help="hubert_frame_cls checkpoint for the PER")
    parser.add_argument("--labels", type=Path, help="50 Hz frame phone labels (.phn) of the manifest, for the PER")
    parser.add_argument("--decode", choices=DECODINGS, default="greedy",
                        help="how the phone model's frame classes are picked for the PER: greedy = the argmax of "
                        "every frame (default; the PER the fine-tuning evaluation reports, where every one-frame "
                        "flicker inside a phone counts as inserted phones); viterbi = the most likely class path "
                        "when a frame keeps the previous frame's class with probability 1 - P (needs --switch-prob or "
                        "--switch-from-labels), which smooths such flicker away")
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--switch-prob", type=float, metavar="P",
                        help="viterbi: probability that a frame's phone differs from the previous frame's, in (0, 1); "
                        "about 1 / the mean phone length in 20 ms frames")
    switch.add_argument("--switch-from-labels", type=Path, metavar="TRAIN.phn",
                        help="viterbi: measure the switch probability on these frame labels (1 / their mean run "
                        "length); give the phone model's TRAINING labels, never the --labels being scored")
    parser.add_argument("--json", type=Path, help="write the per-utterance and total metrics here")
    parser.add_argument("--mcd", choices=MCD_CHOICES, default="fairseq",
                        help="which MCD: fairseq = fairseq's batch_mel_cepstral_distortion (column mcd, default); "
                        "sptk = the paper's SPTK mel-cepstral distortion in dB (column mcd_sptk, needs pysptk); both")
    parser.add_argument("--downmix", action="store_true",
                        help="average the channels of multi-channel audio (default: refuse it)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def run(args: argparse.Namespace) -> int:
    with torch_threads(args.threads):
        return _run(args)


def switch_prob_option(args: argparse.Namespace) -> float | None:
    """The switch probability ``--switch-prob`` or ``--switch-from-labels`` gives (None without either),
    checked against ``--decode`` and ``--phone-model``."""
    from ..core.phone_metrics import switch_probability

    if args.switch_prob is None and args.switch_from_labels is None:
        if args.decode == "viterbi" and args.phone_model is not None:
            raise ConfigError("--decode viterbi needs --switch-prob P or --switch-from-labels TRAIN.phn "
                              "(the phone model's training labels)")
        return None
    given = "--switch-prob" if args.switch_prob is not None else "--switch-from-labels"
    if args.decode != "viterbi":
        raise ConfigError(f"{given} applies to --decode viterbi only; add --decode viterbi or drop {given}")
    if args.phone_model is None:
        raise ConfigError(f"{given} sets the PER's decoding: it needs --phone-model and --labels")
    if args.switch_prob is not None:
        if not 0 < args.switch_prob < 1:
            raise ConfigError(f"--switch-prob {args.switch_prob}: must lie strictly between 0 and 1 "
                              "(e.g. 0.2, one phone change every 5 frames)")
        return args.switch_prob
    if args.labels is not None and Path(args.switch_from_labels).resolve() == Path(args.labels).resolve():
        raise ConfigError(f"--switch-from-labels {args.switch_from_labels}: these are the --labels being scored; "
                          "measure the switch probability on the training labels")
    return switch_probability(args.switch_from_labels)


def _run(args: argparse.Namespace) -> int:
    switch_prob = switch_prob_option(args)
    result = resynthesis_metrics(args.manifest, args.wavs, phone_model=args.phone_model, labels=args.labels,
                                 downmix=args.downmix, mcd_choice=args.mcd, decode=args.decode,
                                 switch_prob=switch_prob)
    keys = [MCD_KEYS[k] for k in mcd_kinds(args.mcd)] + ["f0_corr"] + (
        ["per_resynth", "per_original"] if args.phone_model else [])
    print("\t".join(["utt_id", *keys]))
    for r in result["utterances"]:
        print("\t".join([r["utt_id"], *(_fmt(r[k]) for k in keys)]))
    print("\t".join(["TOTAL", *(_fmt(result["total"][k]) for k in keys)]))
    if "phone_decoding" in result and args.switch_from_labels is not None:
        result["phone_decoding"]["switch_from_labels"] = str(args.switch_from_labels)
        result["per_definition"] += f" (switch probability measured on {args.switch_from_labels})"
    print(f"# {result['definition']}" + (f"; {result['per_definition']}" if "per_definition" in result else ""))
    if args.json:
        with atomic_write(args.json) as f:
            json.dump(result, f, indent=1)
    return 0
