"""``spokenlm subset``: speaker-balanced limited-supervision subsets by duration (10 min, 1 h, 10 h, ...).

Utterances are drawn speaker by speaker, always from the speaker with the least selected audio so
far (speaker order and each speaker's utterances shuffled by the seed), and an utterance that would
overshoot the target is passed over. The subset therefore never exceeds the target, speakers get
equal amounts of audio within about one utterance, and the same seed gives the same subset.
Speakers are the corpus's own ids (:mod:`.speakers`): a speaker map, or the utterance id / folders.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError, DictionaryError, LabelMismatchError
from ..core.io import Manifest, atomic_path, atomic_write, read_lines, read_manifest, write_manifest
from ..core.phones import SAMPLE_RATE, num_frames
from .speakers import SpeakerFrom, add_speaker_arguments, speaker_map_for, speaker_of


def select_balanced(
    durations: Sequence[float], speakers: Sequence[str], *, seconds: float, seed: int
) -> list[int]:
    """Indices (sorted) of a speaker-balanced selection of at most ``seconds`` of audio."""
    rng = random.Random(seed)
    queues: dict[str, list[int]] = defaultdict(list)
    for i, spk in enumerate(speakers):
        queues[spk].append(i)
    order = sorted(queues)
    rng.shuffle(order)
    for spk in order:
        rng.shuffle(queues[spk])
    # (seconds selected so far, shuffled rank as tie-break, speaker): the poorest speaker goes next.
    heap = [(0.0, rank, spk) for rank, spk in enumerate(order)]
    chosen: list[int] = []
    total = 0.0
    while heap and total < seconds:
        got, rank, spk = heapq.heappop(heap)
        i = queues[spk].pop()
        if total + durations[i] <= seconds:
            chosen.append(i)
            total += durations[i]
            got += durations[i]
        if queues[spk]:
            heapq.heappush(heap, (got, rank, spk))
    return sorted(chosen)


def _check_phones(dict_path: Path, labels: Path, lines: Sequence[str]) -> None:
    """Every phone of the frame labels must be in the dictionary copied beside the subset:
    fine-tuning on the subset would otherwise stop at the first unknown phone."""
    known = {line.split()[0] for line in read_lines(dict_path) if line.strip()}
    for lineno, line in enumerate(lines, start=1):
        unknown = set(line.split()) - known
        if unknown:
            raise DictionaryError(
                f"{labels}:{lineno}: phone {sorted(unknown)[0]!r} is not in {dict_path}; "
                "make the labels and the dictionary together (spokenlm labels)"
            )


@dataclass(frozen=True)
class SubsetReport:
    """What :func:`make_subset` wrote."""

    manifest: Path
    labels: Path
    seconds: float
    target_seconds: float
    speakers: dict[str, float]  # speaker -> selected seconds


def make_subset(
    manifest: str | os.PathLike,
    labels: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    seconds: float,
    seed: int = 0,
    speaker_from: SpeakerFrom = "auto",
    speaker_map: str | os.PathLike | None = None,
) -> SubsetReport:
    """Write ``out_dir/<stem>.tsv`` + ``.phn`` (+ ``.phnseq`` and ``dict.phn.txt`` when they are
    beside ``labels``) and ``<stem>.subset.json`` (seed, durations, speakers). Speakers as
    :func:`.speakers.speaker_of` says (``speaker_map``: a ``--speaker-map`` file)."""
    manifest, labels, out_dir = Path(manifest), Path(labels), Path(out_dir)
    man = read_manifest(manifest)
    spk_map = speaker_map_for(speaker_from, speaker_map)
    lines, seq_lines = _read_labels(man, manifest=manifest, labels=labels)
    durations = [r.num_samples / SAMPLE_RATE for r in man.rows]
    available = sum(durations)
    if seconds <= 0:
        raise ConfigError(f"--minutes/--hours must be positive, got {seconds / 60:g} min")
    if seconds > available + 1e-9:
        raise ConfigError(
            f"{manifest}: asked for {seconds / 60:.2f} min but only {available / 60:.2f} min are available; "
            "ask for less or use a larger manifest"
        )
    # Line 1 of a manifest is its root: row k is on line k + 2.
    speakers = [
        speaker_of(r, speaker_from, where=f"{manifest}:{k + 2}", speaker_map=spk_map) for k, r in enumerate(man.rows)
    ]
    chosen = select_balanced(durations, speakers, seconds=seconds, seed=seed)
    if not chosen:
        raise ConfigError(
            f"{manifest}: {seconds:.1f} s is shorter than every utterance "
            f"({min(durations):.1f} s at least); ask for more"
        )

    out_manifest, out_labels = _write_subset(out_dir, man=man, manifest=manifest, labels=labels, lines=lines,
                                             seq_lines=seq_lines, chosen=chosen)
    per_speaker: dict[str, float] = defaultdict(float)
    for i in chosen:
        per_speaker[speakers[i]] += durations[i]
    total = sum(durations[i] for i in chosen)
    with atomic_write(out_dir / f"{manifest.stem}.subset.json") as f:
        json.dump(
            {
                "manifest": str(manifest),
                "labels": str(labels),
                "seed": seed,
                "speaker_from": "map" if spk_map else speaker_from,
                "speaker_map": str(spk_map.path) if spk_map else None,
                "target_seconds": seconds,
                "seconds": round(total, 3),
                "utterances": len(chosen),
                "speakers": {k: round(v, 3) for k, v in sorted(per_speaker.items())},
            },
            f,
            indent=1,
        )
    return SubsetReport(out_manifest, out_labels, total, seconds, dict(per_speaker))


def _read_labels(man: Manifest, *, manifest: Path, labels: Path) -> tuple[list[str], list[str] | None]:
    """The frame label lines of ``labels`` and of the ``.phnseq`` beside it (None without one), checked
    against the manifest (and the phones against the ``dict.phn.txt`` beside them)."""
    lines = read_lines(labels)
    if len(lines) != len(man):
        raise LabelMismatchError(
            f"{labels}: {len(lines)} lines but {manifest} has {len(man)} utterances; "
            "make the labels from this manifest (spokenlm labels)"
        )
    for lineno, (row, line) in enumerate(zip(man.rows, lines, strict=True), start=1):
        n, expected = len(line.split()), num_frames(row.num_samples)
        if abs(n - expected) > 1:
            raise LabelMismatchError(
                f"{labels}:{lineno}: {n} label frames for utterance {row.utt_id!r} whose audio has {expected} frames; "
                "the labels do not belong to this manifest"
            )
    seq_path = labels.with_suffix(".phnseq")
    seq_lines = read_lines(seq_path) if seq_path.is_file() else None
    if seq_lines is not None and len(seq_lines) != len(man):
        raise LabelMismatchError(f"{seq_path}: {len(seq_lines)} lines but {manifest} has {len(man)} utterances")
    src_dict = labels.parent / "dict.phn.txt"
    if src_dict.is_file():
        _check_phones(src_dict, labels, lines)
    return lines, seq_lines


def _write_subset(out_dir: Path, *, man: Manifest, manifest: Path, labels: Path, lines: Sequence[str],
                  seq_lines: Sequence[str] | None, chosen: Sequence[int]) -> tuple[Path, Path]:
    """The chosen rows' manifest, labels and phone sequences (a stale one removed), and a copy of the
    dictionary beside ``labels``; returns the manifest and labels written."""
    stem = manifest.stem
    seq_path = labels.with_suffix(".phnseq")
    out_manifest, out_labels, out_seq = (out_dir / f"{stem}{ext}" for ext in (".tsv", ".phn", ".phnseq"))
    inputs = {p.resolve() for p in (manifest, labels, seq_path)}
    for out in (out_manifest, out_labels, out_seq):
        if out.resolve() in inputs:
            raise ConfigError(f"{out}: the subset would overwrite its input; choose another --out")
    write_manifest(out_manifest, man.root, [man.rows[i] for i in chosen])
    with atomic_write(out_labels) as f:
        f.writelines(f"{lines[i]}\n" for i in chosen)
    if seq_lines is not None:
        with atomic_write(out_seq) as f:
            f.writelines(f"{seq_lines[i]}\n" for i in chosen)
    else:
        # A sequence file left by an earlier run would not match this subset.
        out_seq.unlink(missing_ok=True)
    src_dict, out_dict = labels.parent / "dict.phn.txt", out_dir / "dict.phn.txt"
    if src_dict.is_file() and src_dict.resolve() != out_dict.resolve():
        with atomic_path(out_dict) as tmp:
            shutil.copyfile(src_dict, tmp)
    return out_manifest, out_labels


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="fairseq manifest (TSV) to draw from")
    parser.add_argument("--labels", required=True, help="frame labels (.phn) of that manifest, one line per row")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--minutes", type=float, help="amount of audio to select, in minutes (e.g. 10)")
    amount.add_argument("--hours", type=float, help="amount of audio to select, in hours (e.g. 1, 10)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same subset (default: 0)"
    )
    add_speaker_arguments(parser, alignment=False)
    parser.add_argument(
        "--out", required=True, help="output folder (gets <manifest stem>.tsv/.phn[/.phnseq], dict.phn.txt)"
    )


def run(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60 if args.minutes is not None else args.hours * 3600
    report = make_subset(
        args.manifest,
        args.labels,
        args.out,
        seconds=seconds,
        seed=args.seed,
        speaker_from=args.speaker_from,
        speaker_map=args.speaker_map,
    )
    print(
        f"wrote {report.manifest} and {report.labels}: {report.seconds / 60:.2f} min "
        f"(target {report.target_seconds / 60:.2f} min) from {len(report.speakers)} speakers"
    )
    return 0
