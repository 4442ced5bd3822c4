"""Synthetic-corpus speed: flite synthesis through libflite, and ``spokenlm synth-corpus`` end to end.

Rows (x real time = seconds of audio per second of time; the baseline is the first row):

- flite, one voice: ``Flite.synthesize`` with slt's own settings (CPU time);
- flite, all speakers: the 12 default speakers, F0 / tempo changes and the resampling warp (CPU time);
- + flac and JSON: the above plus writing each utterance as the corpus does (CPU time);
- synth-corpus --jobs 1 / --jobs 2: a whole corpus, derived files included (wall time; on a
  machine shared with other jobs, --jobs 2 gains less than 2x).

    python benchmarks/synth_speed.py [--sentences 40] [--hours 0.1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from spokenlm_plugin.synth.corpus import build_corpus
from spokenlm_plugin.synth.flite import Flite
from spokenlm_plugin.synth.speakers import SPEAKERS, speakers_for
from spokenlm_plugin.synth.text import load_sentences, shuffled
from spokenlm_plugin.synth.utterance import save_utterance


def cpu(fn) -> tuple[float, float]:
    """(audio seconds returned by fn, CPU seconds it took)."""
    start = time.process_time()
    audio = fn()
    return audio, time.process_time() - start


def wall(fn) -> tuple[float, float]:
    start = time.perf_counter()
    audio = fn()
    return audio, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=40, help="sentences per synthesis row")
    parser.add_argument("--hours", type=float, default=0.1, help="size of the corpora built by the last rows")
    args = parser.parse_args()

    engine = Flite()
    sentences = shuffled(load_sentences(), seed=0)[: args.sentences]
    speakers = speakers_for(list(SPEAKERS), per_voice=4)
    engine.synthesize("Warm up.", speakers[0])

    def one_voice() -> float:
        return sum(engine.synthesize(s.text, speakers[0]).duration for s in sentences)

    def all_speakers() -> float:
        return sum(engine.synthesize(s.text, speakers[i % len(speakers)]).duration for i, s in enumerate(sentences))

    tmp = Path(tempfile.mkdtemp(prefix="synth_speed_"))

    def with_files() -> float:
        total = 0.0
        for i, s in enumerate(sentences):
            spk = speakers[i % len(speakers)]
            synthesis = engine.synthesize(s.text, spk)
            save_utterance(
                synthesis, audio_path=tmp / "a" / f"{i}.flac", alignment_path=tmp / "j" / f"{i}.json",
                utt_id=str(i), speaker=spk.id, text=s.text,
            )
            total += synthesis.duration
        return total

    def corpus(jobs: int) -> float:
        meta = build_corpus(tmp / f"corpus{jobs}", hours=args.hours, jobs=jobs)
        return sum(s["seconds"] for s in meta["splits"].values())

    rows = [
        ("flite, one voice (slt)", "CPU", *cpu(one_voice)),
        ("flite, all 12 speakers (F0, tempo, warp)", "CPU", *cpu(all_speakers)),
        ("+ flac and JSON writing", "CPU", *cpu(with_files)),
        (f"synth-corpus --hours {args.hours} --jobs 1", "wall", *wall(lambda: corpus(1))),
        (f"synth-corpus --hours {args.hours} --jobs 2", "wall", *wall(lambda: corpus(2))),
    ]
    base = rows[0][2] / rows[0][3]
    print("| step | time | audio (s) | time (s) | x real time | vs baseline |")
    print("|---|---|---:|---:|---:|---:|")
    for name, kind, audio, seconds in rows:
        speed = audio / seconds
        print(f"| {name} | {kind} | {audio:.1f} | {seconds:.2f} | {speed:.1f} | {speed / base:.2f} |")


if __name__ == "__main__":
    main()
