"""``spokenlm labels``: 50 Hz frame phone labels (``.phn``) and ``dict.phn.txt`` from alignments.

Timing ``center`` (default): frame ``i`` covers ``[0.02 i, 0.02 (i + 1))`` s and is labelled with the
phone at its centre ``0.02 i + 0.01`` (a centre on a boundary belongs to the phone that starts there;
uncovered time is SIL). The alignment gives ``ceil(50 t_end - 1/2)`` frames; HuBERT gives
``num_frames(num_samples)``. A difference of one frame is absorbed (the last label is dropped, or
repeated); more is an error.

Timing ``paper``: the rule of the paper's code (bootphon/spokenlm-phoneme ``data.subsample_tokens``):
100 Hz alignment tokens (token ``j`` = the phone at the centre ``0.01 j + 0.005`` of its 10 ms slot,
which is the token itself for a 100 Hz frame file), then ``tokens[::2]``: frame ``i`` takes the slot
at ``20 i`` ms, i.e. the phone at ``0.02 i + 0.005`` s, a quarter frame after the frame's start rather
than its centre. Its length rule too: ``ceil(n_tokens / 2)`` labels, one more than the audio's frames
is cut, any other difference is an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

from ..core.errors import ConfigError, LabelMismatchError, ManifestError, SpokenLMError
from ..core.io import Manifest, ManifestRow, atomic_write, read_manifest, write_manifest
from ..core.phones import HOP, SAMPLE_RATE, SIL, num_frames
from .alignments import FORMATS, Alignment, AlignmentFormat, Alignments, load_inventory, resolve_phones
from ..core.audio import check_audio
from .manifest import skipped_list_path

#: Label frames per second (HuBERT's frame rate), exact.
LABEL_RATE = Fraction(SAMPLE_RATE, HOP)

#: The paper's alignment token rate (10 ms slots), read every ``PAPER_RATE / LABEL_RATE`` = 2 tokens.
PAPER_RATE = Fraction(100)

LabelTiming = Literal["center", "paper"]
TIMINGS: tuple[LabelTiming, ...] = ("center", "paper")


def frames_before(t: Fraction, *, rate: Fraction = LABEL_RATE) -> int:
    """Number of frames whose centre ``(i + 1/2) / rate`` lies before ``t``: ``ceil(rate t - 1/2)``."""
    # Integer arithmetic on numerators and denominators: exact, and about 3x faster than Fraction operators.
    num = 2 * rate.numerator * t.numerator - rate.denominator * t.denominator
    return max(0, -(-num // (2 * rate.denominator * t.denominator)))


def check_alignment_length(alignment: Alignment, num_samples: int) -> int:
    """The alignment's label frame count, checked against the audio's HuBERT frames.

    The rule ``labels`` and ``items`` share: the alignment may end at most one frame before or
    after the audio; more means it belongs to other audio (:class:`LabelMismatchError`).
    """
    n_align = frames_before(alignment.end)
    expected = num_frames(num_samples)
    if abs(n_align - expected) > 1:
        raise LabelMismatchError(
            f"{alignment.source}: utterance {alignment.utt_id!r} has {n_align} label frames "
            f"(alignment ends at {float(alignment.end):.3f} s) but its audio has {expected} frames "
            f"({num_samples} samples); check that the alignment belongs to this audio, or pass --skip-bad"
        )
    return n_align


def check_row_audio(manifest: Manifest, row: ManifestRow, *, where: str) -> None:
    """Open the audio of a manifest row: 16 kHz mono, readable, and as long as the manifest says.

    Labels and items are computed from the manifest's sample count; a file that is not audio, is
    truncated or has another rate would get labels that match no features.
    """
    path = manifest.path(row)
    if not path.is_file():
        raise ManifestError(f"{where}: audio file {path} does not exist; fix the manifest root or pass --skip-bad")
    info = check_audio(path)
    if info.num_samples != row.num_samples:
        raise ManifestError(
            f"{where}: {path} has {info.num_samples} samples but the manifest says {row.num_samples}; "
            "make the manifest again (spokenlm manifest) or pass --skip-bad"
        )


def frame_labels(alignment: Alignment, num_samples: int, *, timing: LabelTiming = "center") -> list[str]:
    """The 50 Hz label of every HuBERT frame of an utterance of ``num_samples`` samples.

    ``timing``: ``"center"`` (the phone at each frame's centre) or ``"paper"`` (:func:`paper_frame_labels`).
    Raises :class:`LabelMismatchError` when the alignment and the audio differ by more than one frame.
    """
    if timing == "paper":
        return paper_frame_labels(alignment, num_samples)
    n_align = check_alignment_length(alignment, num_samples)
    labels = [SIL] * n_align
    for s in alignment.segments:
        a, b = frames_before(s.start), frames_before(s.end)
        labels[a:b] = [s.phone] * (b - a)
    expected = num_frames(num_samples)
    if n_align > expected:
        labels = labels[:expected]
    elif n_align < expected:
        labels.append(labels[-1] if labels else SIL)
    return labels


def paper_frame_labels(alignment: Alignment, num_samples: int) -> list[str]:
    """The paper's labels: 100 Hz tokens (the phone at each 10 ms slot's centre), every second one.

    As its ``subsample_tokens``: ``tokens[::2]`` must give the audio's frame count or one more (then
    the last is cut); anything else raises :class:`LabelMismatchError`.
    """
    tokens = [SIL] * frames_before(alignment.end, rate=PAPER_RATE)
    for s in alignment.segments:
        a, b = frames_before(s.start, rate=PAPER_RATE), frames_before(s.end, rate=PAPER_RATE)
        tokens[a:b] = [s.phone] * (b - a)
    step = int(PAPER_RATE / LABEL_RATE)
    labels = tokens[::step]
    expected = num_frames(num_samples)
    if len(labels) == expected + 1:
        labels = labels[:-1]
    elif len(labels) != expected:
        raise LabelMismatchError(
            f"{alignment.source}: utterance {alignment.utt_id!r} gives {len(labels)} labels under the paper's "
            f"rule ({len(tokens)} 10 ms tokens, every second one; alignment ends at {float(alignment.end):.3f} s) "
            f"but its audio has {expected} frames ({num_samples} samples), and the paper's rule accepts "
            f"{expected} or {expected + 1}; check the alignment, use --timing center (tolerates one frame "
            "either way), or pass --skip-bad"
        )
    return labels


def phone_sequence(labels: Sequence[str]) -> list[str]:
    """CTC targets from frame labels: runs collapsed, then SIL dropped (a phone repeated across a
    pause counts twice). Derived from the frames, so greedy decoding of perfect frame predictions
    gives exactly this sequence."""
    return [p for k, p in enumerate(labels) if p != SIL and (k == 0 or labels[k - 1] != p)]


def write_dictionary(path: str | os.PathLike, inventory: Sequence[str], counts: Counter[str]) -> None:
    """fairseq Dictionary file ``PHONE COUNT``, every inventory phone in inventory order (so the
    class index of a phone never depends on which phones a split happens to contain)."""
    with atomic_write(path) as f:
        f.writelines(f"{p} {counts.get(p, 0)}\n" for p in inventory)


@dataclass(frozen=True)
class LabelsReport:
    """What :func:`make_labels` wrote."""

    labels: Path
    dictionary: Path
    sequence: Path | None
    num_utterances: int
    num_frames: int
    skipped: tuple[tuple[str, str], ...]  # (utt_id, reason)
    manifest: Path | None  # filtered manifest matching the labels, when rows were skipped


def make_labels(
    manifest: str | os.PathLike,
    alignments: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fmt: AlignmentFormat,
    frame_rate: float = 100,
    inventory: str | os.PathLike | None = None,
    sequence: bool = False,
    skip_bad: bool = False,
    timing: LabelTiming = "center",
) -> LabelsReport:
    """Write ``out_dir/<manifest stem>.phn`` (one line per manifest row) and ``out_dir/dict.phn.txt``.

    ``timing``: which time of each frame picks its phone (module doc): ``"center"``, or ``"paper"``
    (the paper's ``tokens[::2]`` of 100 Hz tokens).

    Alignments are matched to rows by utterance id (the audio file's stem). With ``skip_bad``, rows
    whose audio or alignment is missing or bad are left out and counted; the labels then match the
    filtered manifest written as ``out_dir/<manifest stem>.tsv``.
    """
    manifest, out_dir = Path(manifest), Path(out_dir)
    man = read_manifest(manifest)
    phones = load_inventory(inventory)
    source = Alignments(alignments, fmt, frame_rate=frame_rate)
    stem = manifest.stem
    labelled = _label_rows(man, manifest=manifest, source=source, phones=phones, timing=timing, sequence=sequence,
                           skip_bad=skip_bad)
    filtered = _write_filtered_manifest(out_dir / f"{stem}.tsv", man=man, manifest=manifest, labelled=labelled)
    labels_path = out_dir / f"{stem}.phn"
    with atomic_write(labels_path) as f:
        f.writelines(f"{line}\n" for line in labelled.lines)
    seq_path = None
    if sequence:
        seq_path = out_dir / f"{stem}.phnseq"
        with atomic_write(seq_path) as f:
            f.writelines(f"{line}\n" for line in labelled.seqs)
    dict_path = out_dir / "dict.phn.txt"
    write_dictionary(dict_path, phones, labelled.counts)
    return LabelsReport(
        labels=labels_path,
        dictionary=dict_path,
        sequence=seq_path,
        num_utterances=len(labelled.kept),
        num_frames=sum(labelled.counts.values()),
        skipped=tuple(labelled.skipped),
        manifest=filtered if labelled.skipped else None,
    )


@dataclass
class _Labelled:
    """The rows that could be labelled, their label lines (frames, and phone sequences when asked for)
    and phone counts, and the rows skipped."""

    kept: list[ManifestRow] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    seqs: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (utt_id, reason)


def _label_rows(man: Manifest, *, manifest: Path, source: Alignments, phones: Sequence[str], timing: LabelTiming,
                sequence: bool, skip_bad: bool) -> _Labelled:
    """The frame labels of every row; with ``skip_bad`` a row whose audio or alignment is bad is
    skipped (with the reason), else its error raised. Labelling no row at all is an error."""
    done = _Labelled()
    for lineno, row in enumerate(man.rows, start=2):
        try:
            check_row_audio(man, row, where=f"{manifest}:{lineno}")
            ali = resolve_phones(source.load(row.utt_id), phones)
            labels = frame_labels(ali, row.num_samples, timing=timing)
        except SpokenLMError as e:
            if not skip_bad:
                raise
            done.skipped.append((row.utt_id, str(e)))
            continue
        done.kept.append(row)
        done.lines.append(" ".join(labels))
        done.counts.update(labels)
        if sequence:
            done.seqs.append(" ".join(phone_sequence(labels)))
    if not done.kept:
        raise LabelMismatchError(
            f"{manifest}: none of its {len(man)} utterances could be labelled; the first problem: {done.skipped[0][1]}"
        )
    return done


def _write_filtered_manifest(filtered: Path, *, man: Manifest, manifest: Path, labelled: _Labelled) -> Path:
    """``filtered`` (``out_dir/<stem>.tsv``) and its list of skipped rows, as the rows labelled require;
    returns ``filtered``."""
    # out_dir/<stem>.tsv, when there is one, is always the manifest the labels belong to: written
    # when rows were skipped, and refreshed (never left stale) when an earlier run had skipped some.
    same = filtered.resolve() == manifest.resolve()
    if labelled.skipped and same:
        raise ConfigError(
            f"{manifest}: rows were skipped and the filtered manifest would overwrite it; choose another --out"
        )
    if not same and (labelled.skipped or filtered.exists()):
        write_manifest(filtered, man.root, labelled.kept)
    if labelled.skipped:
        with atomic_write(skipped_list_path(filtered)) as f:
            f.writelines(f"{utt}\t{reason}\n" for utt, reason in labelled.skipped)
    else:
        with contextlib.suppress(FileNotFoundError):
            skipped_list_path(filtered).unlink()
    return filtered


def add_alignment_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``labels`` and ``items``."""
    parser.add_argument("--manifest", required=True, help="fairseq manifest (TSV) of the utterances")
    parser.add_argument(
        "--alignments",
        required=True,
        help="alignments: folder of MFA .TextGrid, frame file(s) 'utt_id<TAB>phone ...', or folder of .json",
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="alignment format")
    parser.add_argument(
        "--frame-rate", type=float, default=100, help="frames per second of --format frames (default: 100)"
    )
    parser.add_argument(
        "--inventory",
        metavar="FILE",
        help="phone inventory, one phone per line (default: SIL + 39 stress-free ARPAbet)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out utterances whose audio or alignment is missing or bad, and count them",
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_alignment_arguments(parser)
    parser.add_argument(
        "--sequence", action="store_true", help="also write <stem>.phnseq (phones, repeats collapsed, no SIL) for CTC"
    )
    parser.add_argument(
        "--timing", choices=TIMINGS, default="center",
        help="which time labels a 50 Hz frame: center = the phone at the frame's centre (default); paper = the "
        "paper's code: 100 Hz tokens, every second one (the phone 5 ms after the frame's start)",
    )
    parser.add_argument("--out", required=True, help="output folder for <manifest stem>.phn and dict.phn.txt")


def run(args: argparse.Namespace) -> int:
    report = make_labels(
        args.manifest,
        args.alignments,
        args.out,
        fmt=args.format,
        frame_rate=args.frame_rate,
        inventory=args.inventory,
        sequence=args.sequence,
        skip_bad=args.skip_bad,
        timing=args.timing,
    )
    extra = f" and {report.sequence}" if report.sequence else ""
    print(
        f"wrote {report.labels}{extra}: {report.num_utterances} utterances, {report.num_frames} frames; "
        f"{report.dictionary}"
    )
    if report.skipped and report.manifest is not None:  # the filtered manifest exists iff rows were skipped
        print(
            f"skipped {len(report.skipped)} utterances (listed in {skipped_list_path(report.manifest)}); "
            f"the labels match the filtered manifest {report.manifest}, not {args.manifest}"
        )
    return 0
