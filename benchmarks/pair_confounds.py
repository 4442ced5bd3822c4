"""Do the minimal pairs measure length? Accuracy of scorers that see nothing but length.

For a pair folder made by ``spokenlm synth-pairs``, scores every file by its audio duration
(read from the flac itself, not from gold.csv) or by its phone count, and computes the sLM21
accuracy of ``spokenlm_plugin.ulm.discrimination`` (a pair scores 1 / 0.5 / 0, averaged over voices, then
over ids) with a 95 % percentile bootstrap interval over ids. Rows:

- shorter wins: score = -duration (a model whose log-probability falls with length);
- longer wins: score = +duration;
- fewer phones win: score = -n_phones (from the alignments); every pair is a tie by construction.

A pair set free of length cues has intervals that contain 50 %. Also checks that gold.csv's
``duration`` / ``n_phones`` columns, where present, match the audio and the alignments.

    python benchmarks/pair_confounds.py PAIRS_DIR [--resamples 10000]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from spokenlm_plugin.core.phones import SIL
from spokenlm_plugin.ulm.discrimination import lexical_accuracy, pair_score, syntactic_accuracy


def per_id_scores(rows: list[dict], scores: dict[str, float], task: str) -> np.ndarray:
    """sLM21 score of each id: pair scores averaged over the id's voices."""
    group = (lambda r: (r["id"],)) if task == "lexical" else (lambda r: (r["type"], r["subtype"], r["id"]))
    members: dict[tuple, dict[str, str]] = defaultdict(dict)
    for r in rows:
        members[(*group(r), r["voice"])][r["correct"]] = r["filename"]
    by_id: dict[tuple, list[float]] = defaultdict(list)
    for key, m in members.items():
        by_id[key[:-1]].append(pair_score(scores[m["1"]], scores[m["0"]]))
    return np.array([np.mean(v) for _, v in sorted(by_id.items())])


def bootstrap(values: np.ndarray, *, resamples: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pairs", type=Path, help="folder made by spokenlm synth-pairs")
    parser.add_argument("--resamples", type=int, default=10000)
    args = parser.parse_args()

    print("| task | ids | voices | scorer | accuracy | 95 % CI (bootstrap over ids) |")
    print("|---|---|---|---|---|---|")
    for task in ("lexical", "syntactic"):
        gold = args.pairs / task / "gold.csv"
        with gold.open(newline="") as f:
            rows = list(csv.DictReader(f))
        duration, n_phones = {}, {}
        for r in rows:
            info = sf.info(str(args.pairs / task / f"{r['filename']}.flac"))
            duration[r["filename"]] = info.frames / info.samplerate
            ali = json.loads((args.pairs / "alignments" / f"{r['filename']}.json").read_text())
            n_phones[r["filename"]] = sum(p != SIL for _, _, p in ali["phones"])
            if "duration" in r:  # the extra columns of synth-pairs (absent from older or other sLM21 sets)
                assert abs(float(r["duration"]) - duration[r["filename"]]) < 1e-6, r
                assert int(r["n_phones"]) == n_phones[r["filename"]], r
        accuracy = lexical_accuracy if task == "lexical" else syntactic_accuracy
        n_ids = len({r["id"] for r in rows})
        n_voices = len({r["voice"] for r in rows})
        for name, scores in (
            ("shorter wins", {k: -v for k, v in duration.items()}),
            ("longer wins", duration),
            ("fewer phones win", {k: -float(v) for k, v in n_phones.items()}),
        ):
            values = per_id_scores(rows, scores, task)
            reference = accuracy(gold, scores).all
            assert abs(values.mean() - reference) < 1e-9, (values.mean(), reference)
            lo, hi = bootstrap(values, resamples=args.resamples)
            print(f"| {task} | {n_ids} | {n_voices} | {name} | {100 * reference:.1f} % | {100 * lo:.1f} - {100 * hi:.1f} % |")


if __name__ == "__main__":
    main()
