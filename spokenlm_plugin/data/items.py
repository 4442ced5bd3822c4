"""``spokenlm items``: ABX item files (ZeroSpeech 2021 / Libri-light format) from phone alignments.

One row per token: ``#file onset offset #phone prev-phone next-phone speaker``, where ``#file`` is
the utterance id (features are ``<utt_id>.npy``), times are in seconds and ``speaker`` is the
corpus's own speaker id (:mod:`.speakers`: the JSON alignment's ``"speaker"``, a speaker map, or the
utterance id / folders where they agree).

- ``triphone`` (ABX within context): one item per phone whose neighbours are both phones, spanning
  the three phones (onset of the previous phone to offset of the next), as in the ZeroSpeech 2021
  triphone files. Phones next to silence (or an unaligned gap) have no triphone context and are left
  out, like SIL itself, as in Libri-light.
- ``phoneme`` (ABX any context): one item per phone, spanning that phone only; ``prev-phone`` /
  ``next-phone`` still name its neighbours (SIL at a pause or an utterance edge).

fastabx slices frames ``ceil(50 onset - 1/2)`` to ``floor(50 offset - 1/2)`` (inclusive; one frame
less with ``FASTABX_WITH_LIBRILIGHT_BUG=1``): items that select no frame ("shorter than one 20 ms
frame"), or end past the utterance's last HuBERT frame, cannot be scored and are left out and counted.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from ..core.errors import SpokenLMError
from ..core.io import atomic_write, read_manifest
from ..core.phones import HOP, SAMPLE_RATE, SIL, num_frames
from .alignments import Alignment, AlignmentFormat, Alignments, Segment, load_inventory, resolve_phones
from .labels import add_alignment_arguments, check_alignment_length, check_row_audio
from .speakers import SpeakerFrom, add_speaker_arguments, speaker_map_for, speaker_of

ItemKind = Literal["triphone", "phoneme"]
ITEM_KINDS: tuple[ItemKind, ...] = ("triphone", "phoneme")
HEADER = "#file onset offset #phone prev-phone next-phone speaker"
#: Item times are written with this many decimals (0.1 ms at most off a 10 ms grid: exact).
DECIMALS = 6


@dataclass(frozen=True)
class Item:
    file: str
    onset: str
    offset: str
    phone: str
    prev: str
    next: str
    speaker: str

    def line(self) -> str:
        return " ".join((self.file, self.onset, self.offset, self.phone, self.prev, self.next, self.speaker))


@dataclass
class ItemCounts:
    """Items written and left out (by reason) for one or many utterances."""

    written: int = 0
    short: int = 0  # no 20 ms frame selected by fastabx
    beyond_end: int = 0  # ends after the last HuBERT frame of the utterance
    skipped_utterances: int = 0

    def __iadd__(self, other: ItemCounts) -> ItemCounts:
        self.written += other.written
        self.short += other.short
        self.beyond_end += other.beyond_end
        self.skipped_utterances += other.skipped_utterances
        return self


def format_time(t: Fraction) -> str:
    """Seconds as a plain decimal string (fastabx reads item times as exact decimals)."""
    return format(Decimal(round(t * 10**DECIMALS)).scaleb(-DECIMALS).normalize(), "f")


def fastabx_slice(onset: str, offset: str, *, frequency: int = SAMPLE_RATE // HOP) -> tuple[int, int]:
    """Frames ``[start, end)`` that fastabx selects for an item (its ``item_frontiers`` rule)."""
    f = Decimal(frequency)
    start = math.ceil(Decimal(onset) * f - Decimal("0.5"))
    end = math.floor(Decimal(offset) * f - Decimal("0.5"))
    if os.getenv("FASTABX_WITH_LIBRILIGHT_BUG", "0") != "1":
        end += 1
    return start, end


def _with_silences(segments: tuple[Segment, ...]) -> list[Segment]:
    """Non-empty segments with every gap turned into SIL, so neighbours are really adjacent."""
    out: list[Segment] = []
    t = Fraction(0)
    for s in segments:
        if s.end <= s.start:
            continue
        if s.start > t:
            out.append(Segment(t, s.start, SIL))
        out.append(s)
        t = s.end
    return out


def utterance_items(
    alignment: Alignment, *, kind: ItemKind, speaker: str, num_samples: int
) -> tuple[list[Item], ItemCounts]:
    """Items of one utterance (phones already resolved onto the inventory)."""
    segs = _with_silences(alignment.segments)
    n_frames = num_frames(num_samples)
    items: list[Item] = []
    counts = ItemCounts()
    for k, s in enumerate(segs):
        prev = segs[k - 1] if k > 0 else None
        nxt = segs[k + 1] if k + 1 < len(segs) else None
        prev_phone = prev.phone if prev else SIL
        next_phone = nxt.phone if nxt else SIL
        if s.phone == SIL:
            continue
        if kind == "triphone":
            if prev is None or nxt is None or prev_phone == SIL or next_phone == SIL:  # no neighbour: SIL
                continue
            onset, offset = format_time(prev.start), format_time(nxt.end)
        else:
            onset, offset = format_time(s.start), format_time(s.end)
        start, end = fastabx_slice(onset, offset)
        if end <= start:
            counts.short += 1
            continue
        if end > n_frames:
            counts.beyond_end += 1
            continue
        items.append(Item(alignment.utt_id, onset, offset, s.phone, prev_phone, next_phone, speaker))
    counts.written = len(items)
    return items, counts


def make_items(
    manifest: str | os.PathLike,
    alignments: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fmt: AlignmentFormat,
    kind: ItemKind = "triphone",
    frame_rate: float = 100,
    inventory: str | os.PathLike | None = None,
    speaker_from: SpeakerFrom = "auto",
    speaker_map: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> ItemCounts:
    """Write the item file ``out`` for every manifest row (in manifest order, then time order);
    speakers as :func:`.speakers.speaker_of` says (``speaker_map``: a ``--speaker-map`` file)."""
    man = read_manifest(manifest)
    spk_map = speaker_map_for(speaker_from, speaker_map)
    phones = load_inventory(inventory)
    source = Alignments(alignments, fmt, frame_rate=frame_rate)
    total = ItemCounts()
    lines: list[str] = []
    for index, row in enumerate(man.rows):
        try:
            check_row_audio(man, row, where=f"{manifest}:{index + 2}")
            ali = resolve_phones(source.load(row.utt_id), phones)
            check_alignment_length(ali, row.num_samples)
        except SpokenLMError:
            if not skip_bad:
                raise
            total.skipped_utterances += 1
            continue
        # Line 1 of a manifest is its root: row `index` is on line index + 2.
        speaker = speaker_of(row, speaker_from, where=f"{manifest}:{index + 2}", alignment=ali, speaker_map=spk_map)
        items, counts = utterance_items(ali, kind=kind, speaker=speaker, num_samples=row.num_samples)
        lines.extend(item.line() for item in items)
        total += counts
    with atomic_write(out) as f:
        f.write(HEADER + "\n")
        f.writelines(f"{line}\n" for line in lines)
    return total


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_alignment_arguments(parser)
    parser.add_argument(
        "--kind", choices=ITEM_KINDS, default="triphone", help="ABX task the items are for (default: triphone)"
    )
    add_speaker_arguments(parser, alignment=True)
    parser.add_argument("--out", required=True, help="item file to write (e.g. dev.triphone.item)")


def run(args: argparse.Namespace) -> int:
    counts = make_items(
        args.manifest,
        args.alignments,
        args.out,
        fmt=args.format,
        kind=args.kind,
        frame_rate=args.frame_rate,
        inventory=args.inventory,
        speaker_from=args.speaker_from,
        speaker_map=args.speaker_map,
        skip_bad=args.skip_bad,
    )
    print(
        f"wrote {args.out}: {counts.written} {args.kind} items; left out {counts.short} shorter than one 20 ms frame "
        f"and {counts.beyond_end} ending after the last frame"
    )
    if counts.skipped_utterances:
        print(f"skipped {counts.skipped_utterances} utterances with bad audio or a missing or bad alignment")
    return 0
