"""Phone alignments from the formats users have, as exact time segments.

Three formats, all keyed by utterance id (the audio file's stem, see :class:`~spokenlm_plugin.core.io.ManifestRow`):

- ``textgrid``: Montreal Forced Aligner output, a folder of ``<utt>.TextGrid`` (possibly nested by
  speaker), Praat long ("ooTextFile") or short format; the ``phones`` tier is used.
- ``frames``: frame-level text, ``utt_id<TAB>phone phone ...`` at a fixed rate (e.g. 100 Hz, as in
  the Libri-light / ZeroSpeech alignments); one file or a folder of such files.
- ``json``: the synthetic corpus' ``<utt>.json`` (``"phones": [[start, end, PHONE], ...]`` in seconds).

Times are kept as exact fractions (``Fraction("0.37")``, frame ``j`` at 100 Hz starts at ``j/100``), so
the 50 Hz frame-centre rule never depends on floating-point rounding: a TextGrid and the 100 Hz frame
file of the same alignment give the same labels.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

from ..core.errors import AlignmentError, DictionaryError
from ..core.io import utt_key
from ..core.phones import INVENTORY, normalize_phone

AlignmentFormat = Literal["textgrid", "frames", "json"]
FORMATS: tuple[AlignmentFormat, ...] = ("textgrid", "frames", "json")


@dataclass(frozen=True)
class Segment:
    """One phone interval ``[start, end)`` in seconds."""

    start: Fraction
    end: Fraction
    phone: str


@dataclass(frozen=True)
class Alignment:
    """The phone segments of one utterance, sorted and non-overlapping (gaps are silence)."""

    utt_id: str
    source: str  # file (and line) it was read from, for error messages
    segments: tuple[Segment, ...]
    speaker: str | None = None

    @property
    def end(self) -> Fraction:
        return self.segments[-1].end if self.segments else Fraction(0)


def _checked(utt_id: str, source: str, segments: Sequence[Segment], speaker: str | None = None) -> Alignment:
    """Build an :class:`Alignment` after checking that its segments are ordered and disjoint."""
    prev_end = Fraction(0)
    for s in segments:
        if s.start < 0 or s.end < s.start:
            raise AlignmentError(
                f"{source}: phone {s.phone!r} has bad times [{float(s.start)}, {float(s.end)}]; fix the alignment"
            )
        if s.start < prev_end:
            raise AlignmentError(
                f"{source}: phone {s.phone!r} starts at {float(s.start)} s before the previous one ends "
                f"({float(prev_end)} s); segments must not overlap"
            )
        prev_end = s.end
    return Alignment(utt_id, source, tuple(segments), speaker)


# --------------------------------------------------------------------------------------------- TextGrid

# Long and short TextGrids hold the same values in the same order; only the "key =" labels and
# "[i]" indices differ. Tokenizing values alone reads both formats with one parser.
_TG_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'  # quoted text; "" is an escaped quote
    r"|\[\s*\d*\s*\]"  # item [1]:, intervals [3]: (ignored)
    r"|(?P<flag><exists>|<absent>)"
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
)


@dataclass(frozen=True)
class Tier:
    """A TextGrid tier: intervals ``(xmin, xmax, text)``, or points ``(time, time, mark)``."""

    name: str
    kind: str  # "IntervalTier" or "TextTier"
    entries: tuple[tuple[Fraction, Fraction, str], ...]


class _Tokens:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self._it: Iterator[re.Match] = _TG_TOKEN.finditer(text)

    def _next(self, what: str) -> re.Match:
        for m in self._it:
            if m.lastgroup is not None:
                return m
        raise AlignmentError(
            f"{self.source}: TextGrid ends early (expected {what}); the file is truncated or not a TextGrid"
        )

    def string(self, what: str) -> str:
        m = self._next(what)
        if m.lastgroup != "str":
            raise AlignmentError(
                f"{self.source}: malformed TextGrid, expected {what} as quoted text, got {m.group()!r}"
            )
        return m.group("str").replace('""', '"')

    def number(self, what: str) -> Fraction:
        m = self._next(what)
        if m.lastgroup != "num":
            raise AlignmentError(f"{self.source}: malformed TextGrid, expected {what} as a number, got {m.group()!r}")
        return Fraction(m.group("num"))

    def flag(self) -> bool:
        m = self._next("<exists>")
        if m.lastgroup != "flag":
            raise AlignmentError(f"{self.source}: malformed TextGrid, expected <exists>, got {m.group()!r}")
        return m.group("flag") == "<exists>"


def _decode(data: bytes) -> str:
    # Praat writes UTF-16 (with BOM) when a label is not ASCII; MFA writes UTF-8.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def parse_textgrid(text: str, *, source: str = "<TextGrid>") -> dict[str, Tier]:
    """Tiers of a Praat TextGrid (long or short text format), by name."""
    tok = _Tokens(text, source)
    if not tok.string('File type "ooTextFile"').startswith("ooTextFile") or tok.string('"TextGrid"') != "TextGrid":
        raise AlignmentError(f"{source}: not a Praat text TextGrid (binary TextGrids are not supported; save as text)")
    tok.number("xmin"), tok.number("xmax")
    tiers: dict[str, Tier] = {}
    if not tok.flag():
        return tiers
    for _ in range(int(tok.number("number of tiers"))):
        kind, name = tok.string("tier class"), tok.string("tier name")
        tok.number("tier xmin"), tok.number("tier xmax")
        n = int(tok.number("number of intervals"))
        if kind not in ("IntervalTier", "TextTier"):
            raise AlignmentError(f"{source}: unknown tier class {kind!r}; expected IntervalTier or TextTier")
        entries = []
        for _ in range(n):
            if kind == "IntervalTier":
                entries.append((tok.number("xmin"), tok.number("xmax"), tok.string("text")))
            else:
                t = tok.number("time")
                entries.append((t, t, tok.string("mark")))
        tiers[name] = Tier(name, kind, tuple(entries))
    return tiers


def read_tier(path: str | os.PathLike, tier: str) -> Tier:
    """The interval tier ``tier`` of an MFA TextGrid (``"<speaker> - <tier>"`` in multi-speaker output)."""
    path = Path(path)
    try:
        tiers = parse_textgrid(_decode(path.read_bytes()), source=str(path))
    except UnicodeDecodeError:
        raise AlignmentError(f"{path}: not UTF-8 / UTF-16 text; is it a TextGrid?") from None
    names = [n for n in tiers if n.lower() == tier or n.lower().endswith(f" - {tier}")]
    if len(names) != 1:
        raise AlignmentError(
            f"{path}: expected one {tier!r} tier, found tiers {list(tiers)}; "
            "align with MFA (tiers 'words' and 'phones')"
        )
    t = tiers[names[0]]
    if t.kind != "IntervalTier":
        raise AlignmentError(f"{path}: tier {t.name!r} is a point tier; {tier} need an interval tier")
    return t


def read_textgrid(path: str | os.PathLike, *, tier: str = "phones") -> Alignment:
    """The ``phones`` tier of an MFA TextGrid (``"<speaker> - phones"`` in multi-speaker output)."""
    t = read_tier(path, tier)
    return _checked(utt_key(path), str(path), [Segment(a, b, p) for a, b, p in t.entries])


#: Word-tier labels of silence: MFA leaves them empty; Kaldi-style aligners write ``<eps>``.
SILENT_WORDS = frozenset({"", "<eps>"})


def read_textgrid_words(path: str | os.PathLike) -> tuple[list[Segment], Fraction]:
    """Words of an MFA TextGrid's ``words`` tier (silent intervals dropped, ``Segment.phone`` holds the
    word) and the tier's end, i.e. the duration of the aligned audio (MFA tiers span the whole file)."""
    t = read_tier(path, "words")
    checked = _checked(utt_key(path), str(path), [Segment(a, b, w) for a, b, w in t.entries])
    words = [s for s in checked.segments if s.phone.strip() not in SILENT_WORDS]
    return [replace(s, phone=s.phone.strip()) for s in words], checked.end


# --------------------------------------------------------------------------------------------- JSON


def _seconds(value: object, source: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AlignmentError(f"{source}: time {value!r} is not a number; fix the alignment")
    # repr() of a float is the shortest decimal that round-trips: the number the writer meant.
    return Fraction(repr(value) if isinstance(value, float) else value)


def read_json_alignment(path: str | os.PathLike) -> Alignment:
    """A synthetic-corpus alignment: ``{"utt_id", "speaker", "phones": [[start, end, PHONE], ...], ...}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        phones = data["phones"]
        segments = [Segment(_seconds(s, str(path)), _seconds(e, str(path)), str(p)) for s, e, p in phones]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AlignmentError(f"{path}: not valid JSON ({e}); regenerate the alignment") from None
    except (KeyError, TypeError, ValueError):
        raise AlignmentError(f"{path}: expected a JSON object with \"phones\": [[start, end, PHONE], ...]") from None
    key = utt_key(path)
    if data.get("utt_id", key) != key:
        raise AlignmentError(f"{path}: utt_id {data['utt_id']!r} differs from the file name; rename one of them")
    speaker = data.get("speaker")
    return _checked(key, str(path), segments, None if speaker is None else str(speaker))


# --------------------------------------------------------------------------------------------- frames


def frames_to_segments(phones: Sequence[str], frame_rate: Fraction) -> list[Segment]:
    """Runs of equal frame labels as segments; frame ``j`` covers ``[j / rate, (j + 1) / rate)``."""
    segments: list[Segment] = []
    start = 0
    for j in range(1, len(phones) + 1):
        if j == len(phones) or phones[j] != phones[start]:
            segments.append(Segment(start / frame_rate, j / frame_rate, phones[start]))
            start = j
    return segments


# --------------------------------------------------------------------------------------------- lookup


class Alignments:
    """The alignments found at ``path`` in format ``fmt``, looked up by utterance id.

    Files are indexed by utterance id when opened but parsed only on :meth:`load`, so preparing a
    small manifest against a large alignment folder stays fast.
    """

    def __init__(self, path: str | os.PathLike, fmt: AlignmentFormat, *, frame_rate: float = 100) -> None:
        self.path, self.fmt = Path(path), fmt
        if fmt not in FORMATS:
            raise AlignmentError(f"{path}: unknown alignment format {fmt!r}; use one of {', '.join(FORMATS)}")
        if not self.path.exists():
            raise AlignmentError(f"{path}: alignments not found; give the file or folder of {fmt} alignments")
        self.frame_rate = Fraction(str(frame_rate))
        if self.frame_rate <= 0:
            raise AlignmentError(f"{path}: --frame-rate must be positive, got {frame_rate}")
        self._files: dict[str, Path] = {}
        self._lines: dict[str, tuple[str, str]] = {}  # frames: utt -> (source, phones)
        if fmt == "frames":
            self._index_frames()
        else:
            suffix = ".textgrid" if fmt == "textgrid" else ".json"
            self._index_files(suffix)

    def _candidates(self, suffix: str | None) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(
            p
            for p in self.path.rglob("*")
            if p.is_file() and not p.name.startswith(".") and (suffix is None or p.suffix.lower() == suffix)
        )

    def _index_files(self, suffix: str) -> None:
        for p in self._candidates(suffix):
            key = utt_key(p)
            if key in self._files:
                raise AlignmentError(f"{p}: utterance {key!r} also aligned in {self._files[key]}; keep one of them")
            self._files[key] = p
        if not self._files:
            raise AlignmentError(
                f"{self.path}: no *{suffix} files found (recursively); check --alignments and --format"
            )

    def _index_frames(self) -> None:
        for p in self._candidates(None):
            try:
                lines = p.read_text().splitlines()
            except UnicodeDecodeError:
                raise AlignmentError(
                    f"{p}: not a text file; frame alignments are 'utt_id<TAB>phone phone ...' lines"
                ) from None
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    raise AlignmentError(f"{p}:{lineno}: expected 'utt_id<TAB>phone phone ...', got {line[:60]!r}")
                key, phones = parts
                if key in self._lines:
                    raise AlignmentError(f"{p}:{lineno}: utterance {key!r} already aligned at {self._lines[key][0]}")
                self._lines[key] = (f"{p}:{lineno}", phones)
        if not self._lines:
            raise AlignmentError(f"{self.path}: no frame alignment lines found; expected 'utt_id<TAB>phone phone ...'")

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in (self._lines if self.fmt == "frames" else self._files)

    def __len__(self) -> int:
        return len(self._lines if self.fmt == "frames" else self._files)

    def file_of(self, utt_id: str) -> Path | None:
        """The TextGrid / JSON file of ``utt_id`` (None if there is none; frame files: None)."""
        return self._files.get(utt_id)

    def load(self, utt_id: str) -> Alignment:
        """The alignment of ``utt_id``; :class:`AlignmentError` naming it if there is none."""
        if utt_id not in self:
            where = {"textgrid": f"{utt_id}.TextGrid", "json": f"{utt_id}.json", "frames": f"a line '{utt_id}<TAB>...'"}
            raise AlignmentError(
                f"{self.path}: no alignment for utterance {utt_id!r} (expected {where[self.fmt]}); "
                "align it, or pass --skip-bad to leave it out"
            )
        if self.fmt == "textgrid":
            return read_textgrid(self._files[utt_id])
        if self.fmt == "json":
            return read_json_alignment(self._files[utt_id])
        source, phones = self._lines[utt_id]
        return _checked(utt_id, source, frames_to_segments(phones.split(), self.frame_rate))


# --------------------------------------------------------------------------------------------- inventory


def load_inventory(path: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Phone inventory: :data:`~spokenlm_plugin.core.phones.INVENTORY` (SIL + ARPAbet-39) by default, or
    the first column of ``path`` (one phone per line; a fairseq ``dict.phn.txt`` works as is)."""
    if path is None:
        return INVENTORY
    path = Path(path)
    if not path.is_file():
        raise DictionaryError(f"{path}: inventory file not found")
    phones = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not phones or len(set(phones)) != len(phones):
        raise DictionaryError(f"{path}: inventory must list distinct phones, one per line")
    return tuple(phones)


def resolve_phones(alignment: Alignment, inventory: Sequence[str]) -> Alignment:
    """Map every phone onto ``inventory``: kept if listed as is, else normalised (stress digits
    stripped, MFA silences -> SIL, see :func:`~spokenlm_plugin.core.phones.normalize_phone`)."""
    known = set(inventory)
    segments = []
    for s in alignment.segments:
        phone = s.phone if s.phone in known else normalize_phone(s.phone)
        if phone not in known:
            raise AlignmentError(
                f"{alignment.source}: unknown phone {s.phone!r} (utterance {alignment.utt_id!r}, "
                f"at {float(s.start):.3f} s), not in the inventory; fix the alignment or pass --inventory FILE"
            )
        segments.append(replace(s, phone=phone))
    return replace(alignment, segments=tuple(segments))
