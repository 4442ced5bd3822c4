"""Data-preparation speed: the manifest's audio check and the 50 Hz labelling, against baselines.

- manifest check: header + last block (``check_audio``) vs decoding every file whole (``sf.read``),
  the obvious way to prove a file is readable;
- labels: exact frame-centre rule (``frame_labels``, fractions) vs a float loop over frame centres.

    python benchmarks/data_prep.py [--files 200] [--seconds 12] [--utterances 2000]

Prints a markdown table; ratios are baseline time / our time (higher is faster).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from spokenlm_plugin.data.alignments import Alignment, Segment
from spokenlm_plugin.core.audio import check_audio
from spokenlm_plugin.data.labels import frame_labels
from spokenlm_plugin.core.phones import ARPABET39, SIL, num_frames


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def float_labels(segments: list[tuple[float, float, str]], n: int) -> list[str]:
    """Baseline: per frame, scan forward for the segment holding the centre (floats)."""
    out, k = [], 0
    for i in range(n):
        c = 0.02 * i + 0.01
        while k < len(segments) and segments[k][1] <= c:
            k += 1
        out.append(segments[k][2] if k < len(segments) and segments[k][0] <= c else SIL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--utterances", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(args.files):
            p = Path(tmp) / f"u{k}.flac"
            sf.write(p, (0.1 * rng.standard_normal(int(args.seconds * 16000))).astype("float32"), 16000)
            paths.append(p)
        ours = timed(lambda: [check_audio(p) for p in paths])
        base = timed(lambda: [sf.read(p, dtype="float32") for p in paths])
        hours = args.files * args.seconds / 3600
        rows.append((f"manifest check, {args.files} flac x {args.seconds:g} s", "full decode (sf.read)", base, ours,
                     f"{hours / ours * 3600:.0f} h audio/s"))

    r = random.Random(0)
    alignments = []
    for _ in range(args.utterances):
        t, segs = 0, []
        while t < args.seconds * 1000:
            d = r.randint(3, 20) * 10
            segs.append((t / 1000, (t + d) / 1000, r.choice((SIL, *ARPABET39))))
            t += d
        alignments.append((segs, round(t * 16)))
    exact = [Alignment("u", "b", tuple(Segment(Fraction(str(a)), Fraction(str(b)), p) for a, b, p in s)) for s, _ in alignments]
    ours = timed(lambda: [frame_labels(a, n) for a, (_, n) in zip(exact, alignments)])
    base = timed(lambda: [float_labels(s, num_frames(n)) for s, n in alignments])
    rows.append((f"labels, {args.utterances} utt x {args.seconds:g} s", "float loop over centres", base, ours,
                 f"{args.utterances / ours:.0f} utt/s"))

    print("| step | baseline | baseline s | ours s | ratio | throughput |")
    print("|---|---|---|---|---|---|")
    for step, name, b, o, thr in rows:
        print(f"| {step} | {name} | {b:.3f} | {o:.3f} | {b / o:.2f}x | {thr} |")


if __name__ == "__main__":
    main()
