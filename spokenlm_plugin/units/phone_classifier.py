"""``spokenlm baseline-classifier``: a linear phone classifier on log-mel frames, the floor of phone recognition.

The baseline beside the fine-tuned HuBERT and its linear probe: multinomial logistic regression
(scikit-learn ``LogisticRegression``, L-BFGS run to convergence, L2 ``C``) on the log-mel frames of
:mod:`.baseline` (40 mels, per-utterance mean / variance normalisation, HuBERT's 50 Hz frames),
each frame stacked with its ``context`` neighbours on both sides (``t-2 .. t+2`` by default, the
edges repeated), every input dimension standardised with the training frames' mean and variance.
It is trained on the frame labels of one split and scored on another with the fine-tuned model's
own metrics (:class:`~spokenlm_plugin.core.phone_metrics.PhoneScores`): frame accuracy and greedy
PER (argmax per frame, runs collapsed, SIL dropped on both sides). Features and labels are cut to
their common length, as ``trim_to_labels`` does for the fine-tuned model.

Everything is deterministic (L-BFGS has no randomness), and small: 10 minutes of labels are 30 000
frames of 200 dims.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import ConfigError, LabelMismatchError
from ..core.io import atomic_write, read_manifest
from ..core.phones import SIL
from .baseline import read_phone_labels, spectral_features

#: Frames of context on each side (t-2 .. t+2).
CONTEXT = 2
MAX_ITER = 1000


@dataclass(frozen=True)
class ClassifierResult:
    """Test scores of the linear log-mel classifier and what it was trained on."""

    frame_accuracy: float
    per: float
    test_frames: int
    test_utterances: int
    train_frames: int
    train_utterances: int
    train_frame_accuracy: float  # on its own training frames: the fit, against the test's generalisation
    interior_frame_accuracy: float  # test frames away from phone boundaries (PhoneScores.interior_accuracy)
    classes: int  # phones seen in training
    context: int
    iterations: int
    converged: bool
    train_seconds: float


def stack_context(x: np.ndarray, context: int = CONTEXT) -> np.ndarray:
    """Frames ``t - context .. t + context`` side by side (edge frames repeated): ``(T, (2c+1) D)``."""
    if context == 0:
        return np.ascontiguousarray(x)
    padded = np.concatenate([np.repeat(x[:1], context, axis=0), x, np.repeat(x[-1:], context, axis=0)])
    return np.concatenate([padded[k : k + len(x)] for k in range(2 * context + 1)], axis=1)


def labelled_frames(
    manifest: str | os.PathLike, labels: str | os.PathLike, dict_path: str | os.PathLike, *,
    context: int = CONTEXT, downmix: bool = False,
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """``(phones, stacked log-mel frames per utterance, class ids per utterance)``, cut to a common length.

    ``downmix``: average the channels of multi-channel audio instead of refusing it."""
    from ..core.audio import read_audio

    phones, ids = read_phone_labels(manifest, labels, dict_path)
    m = read_manifest(manifest)
    feats, targets = [], []
    for row, y in zip(m.rows, ids):
        wav = read_audio(m.path(row), expected_samples=row.num_samples, downmix=downmix)
        x = spectral_features(wav, "logmel")
        n = min(len(x), len(y))
        feats.append(stack_context(x, context)[:n])
        targets.append(y[:n])
    return phones, feats, targets


def fit_classifier(feats: Sequence[np.ndarray], targets: Sequence[np.ndarray], *, c: float = 1.0,
                   max_iter: int = MAX_ITER):
    """A standardising + multinomial logistic regression pipeline fitted on the frames."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.concatenate(feats), np.concatenate(targets)
    if len(np.unique(y)) < 2:
        raise LabelMismatchError("the training labels hold fewer than two phones; a classifier needs more data")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, tol=1e-4))
    model.fit(x, y)
    return model


def score_classifier(model, feats: Sequence[np.ndarray], targets: Sequence[np.ndarray], *, sil: int | None):
    """Frame accuracy and greedy PER (:class:`PhoneScores`) of the classifier, one utterance at a time."""
    import torch

    from ..core.phone_metrics import PhoneScores

    scores = PhoneScores()
    for x, y in zip(feats, targets):
        if len(y) == 0:
            continue
        predicted = torch.from_numpy(model.predict(x).astype(np.int64))[None]
        target = torch.from_numpy(y.astype(np.int64))[None]
        scores.add(predicted, target, torch.ones_like(target, dtype=torch.bool), sil=sil)
    return scores


def linear_phone_baseline(
    train_manifest: str | os.PathLike,
    train_labels: str | os.PathLike,
    test_manifest: str | os.PathLike,
    test_labels: str | os.PathLike,
    dict_path: str | os.PathLike,
    *,
    context: int = CONTEXT,
    c: float = 1.0,
    max_iter: int = MAX_ITER,
    keep_sil: bool = False,
    downmix: bool = False,
) -> ClassifierResult:
    """Train the log-mel linear classifier on one labelled split, score it on another."""
    phones, train_x, train_y = labelled_frames(train_manifest, train_labels, dict_path, context=context,
                                               downmix=downmix)
    _, test_x, test_y = labelled_frames(test_manifest, test_labels, dict_path, context=context, downmix=downmix)
    t0 = time.perf_counter()
    model = fit_classifier(train_x, train_y, c=c, max_iter=max_iter)
    seconds = time.perf_counter() - t0
    sil = phones.index(SIL) if SIL in phones and not keep_sil else None
    scores = score_classifier(model, test_x, test_y, sil=sil)
    fit = score_classifier(model, train_x, train_y, sil=sil)
    lr = model[-1]
    iterations = int(np.max(lr.n_iter_))
    return ClassifierResult(
        frame_accuracy=scores.frame_accuracy, per=scores.per, test_frames=scores.frames,
        test_utterances=scores.utterances, train_frames=int(sum(len(y) for y in train_y)),
        train_utterances=len(train_y), train_frame_accuracy=fit.frame_accuracy,
        interior_frame_accuracy=scores.interior_accuracy, classes=len(lr.classes_), context=context, iterations=iterations,
        converged=iterations < max_iter, train_seconds=round(seconds, 2),
    )


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-manifest", required=True, type=Path, help="manifest of the training split")
    parser.add_argument("--train-labels", required=True, type=Path, help="its 50 Hz frame labels (.phn)")
    parser.add_argument("--test-manifest", required=True, type=Path, help="manifest of the test split")
    parser.add_argument("--test-labels", required=True, type=Path, help="its 50 Hz frame labels (.phn)")
    parser.add_argument("--dict", required=True, type=Path, help="phone dictionary (dict.phn.txt)")
    parser.add_argument("--context", type=int, default=CONTEXT,
                        help=f"frames of context on each side (default {CONTEXT}: t-2 .. t+2)")
    parser.add_argument("--C", dest="c", type=float, default=1.0, help="inverse L2 strength (default 1.0)")
    parser.add_argument("--max-iter", type=int, default=MAX_ITER,
                        help=f"L-BFGS iterations at most (default {MAX_ITER})")
    parser.add_argument("--keep-sil", action="store_true", help="count SIL as a phone in the PER")
    parser.add_argument("--downmix", action="store_true",
                        help="average the channels of multi-channel audio (default: refuse it)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    if args.context < 0:
        raise ConfigError(f"--context {args.context}: frames of context on each side, 0 or more")
    if not 0 < args.c < float("inf"):
        raise ConfigError(f"--C {args.c}: the inverse regularisation strength must be positive")
    if args.max_iter < 1:
        raise ConfigError(f"--max-iter {args.max_iter}: must be >= 1")
    res = linear_phone_baseline(args.train_manifest, args.train_labels, args.test_manifest, args.test_labels,
                                args.dict, context=args.context, c=args.c, max_iter=args.max_iter,
                                keep_sil=args.keep_sil, downmix=args.downmix)
    status = "converged" if res.converged else "NOT converged: raise --max-iter"
    print("| model | train frames | frame accuracy | PER |\n|---|---:|---:|---:|\n"
          f"| log-mel linear (+-{res.context} frames) | {res.train_frames} | {res.frame_accuracy:.4f} "
          f"| {res.per:.4f} |")
    print(f"{res.test_utterances} test utterances, {res.test_frames} frames; {res.classes} phones seen in "
          f"training; L-BFGS {res.iterations} iterations ({status}), {res.train_seconds:.1f} s")
    if args.json is not None:
        with atomic_write(args.json) as f:
            json.dump({"train_manifest": str(args.train_manifest), "test_manifest": str(args.test_manifest),
                       "downmix": args.downmix, **asdict(res)}, f, indent=1)
    return 0
