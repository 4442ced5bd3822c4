"""Who speaks an utterance: the corpus's own speaker id, never a guess that could merge speakers.

ABX "across speaker" and speaker-balanced subsets are computed on these ids, so two speakers must
never become one (``slt-a`` and ``slt-b`` are not ``slt``) and a chapter must never pass for a
speaker. Sources (``--speaker-from``, or ``--speaker-map FILE``):

- ``--speaker-map FILE``: lines ``utt_id<TAB>speaker``; every manifest row must be listed.
- ``alignment`` (``spokenlm items --format json`` only): the alignment's ``"speaker"`` field.
- ``prefix``: the speaker written at the start of the utterance id, by the first convention the id
  follows:

  1. LibriSpeech / Libri-light: three all-digit fields joined by ``-`` (or by ``_``),
     ``<speaker>-<chapter>-<utterance>``: ``84-121123-0000`` -> ``84``;
  2. exactly one ``_``, ``<speaker>_<utterance>``, where the speaker may hold ``-`` and the
     utterance may not: ``slt-a_01234`` -> ``slt-a`` (the synthetic corpus, ``spokenlm synth-corpus``);
  3. no ``_`` and exactly one ``-``, ``<speaker>-<utterance>``: ``spk1-0001`` -> ``spk1``.

  Any other id (``slt-a-01234``, ``a_b_c``, ``u1``) is ambiguous: a :class:`ConfigError` names the
  manifest row.
- ``parent``: the name of the folder holding the audio (``audio/<speaker>/<utt>.flac``).
- ``auto`` (default): the alignment's speaker when it carries one (JSON alignments, ``items`` only);
  otherwise the ``prefix`` speaker, provided the audio lies at the manifest root or under a folder of
  that very name (``slt-a/slt-a_01234.flac``, ``84/121123/84-121123-0000.flac``). When the id and the
  folders do not agree on one speaker (``spk/u1.flac``, ``slt/slt-a_0001.flac``), it is an error
  asking for an explicit source, rather than a guess.

A speaker id must be non-empty and hold no whitespace (item files are space-separated).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ..core.errors import ConfigError
from ..core.io import ManifestRow
from .alignments import Alignment

SpeakerFrom = Literal["auto", "alignment", "prefix", "parent"]
SPEAKER_FROM: tuple[SpeakerFrom, ...] = ("auto", "alignment", "prefix", "parent")

_LIBRISPEECH = re.compile(r"(\d+)([-_])\d+\2\d+")


def _explicit(*modes: str) -> str:
    return f"pass {' or '.join(f'--speaker-from {m}' for m in modes)}, or --speaker-map FILE (utt_id<TAB>speaker)"


def id_speaker(utt_id: str) -> str | None:
    """The speaker at the start of ``utt_id`` by the ``prefix`` conventions, or None if ambiguous."""
    m = _LIBRISPEECH.fullmatch(utt_id)
    if m:
        return m.group(1)
    if utt_id.count("_") == 1:
        head, tail = utt_id.split("_")
        return head if head and tail and "-" not in tail else None
    if "_" not in utt_id and utt_id.count("-") == 1:
        head, tail = utt_id.split("-")
        return head if head and tail else None
    return None


def _valid(speaker: str, where: str) -> str:
    if not speaker or any(c.isspace() for c in speaker):
        raise ConfigError(f"{where}: speaker {speaker!r} is empty or holds whitespace; item files cannot hold it")
    return speaker


@dataclass(frozen=True)
class SpeakerMap:
    """The speakers listed in a ``--speaker-map`` file, by utterance id."""

    path: Path
    speakers: Mapping[str, str]


def read_speaker_map(path: str | os.PathLike) -> SpeakerMap:
    """``utt_id<TAB>speaker`` lines (blank lines and ``#`` comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: speaker map not found; give a file of utt_id<TAB>speaker lines")
    speakers: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\r").split("\t")
        if len(parts) != 2 or not parts[0]:
            raise ConfigError(f"{path}:{lineno}: expected 'utt_id<TAB>speaker', got {line[:60]!r}")
        utt, spk = parts
        spk = _valid(spk, f"{path}:{lineno}")
        if speakers.setdefault(utt, spk) != spk:
            raise ConfigError(f"{path}:{lineno}: utterance {utt!r} already has speaker {speakers[utt]!r}; keep one")
    return SpeakerMap(path, speakers)


def speaker_map_for(speaker_from: SpeakerFrom, speaker_map: str | os.PathLike | None) -> SpeakerMap | None:
    """The map of ``--speaker-map`` (None without one); it cannot be combined with ``--speaker-from``."""
    if speaker_map is None:
        return None
    if speaker_from != "auto":
        raise ConfigError(f"--speaker-map {speaker_map} and --speaker-from {speaker_from} exclude each other; give one")
    return read_speaker_map(speaker_map)


def speaker_of(
    row: ManifestRow,
    mode: SpeakerFrom = "auto",
    *,
    where: str,
    alignment: Alignment | None = None,
    speaker_map: SpeakerMap | None = None,
) -> str:
    """The speaker of ``row`` by the rules of this module; ``where`` (``manifest:line``) names the
    row in errors. A ``speaker_map`` overrides ``mode``."""
    if speaker_map is not None:
        if row.utt_id not in speaker_map.speakers:
            raise ConfigError(f"{where}: utterance {row.utt_id!r} is not in the speaker map {speaker_map.path}; add it")
        return speaker_map.speakers[row.utt_id]
    if mode not in SPEAKER_FROM:
        raise ConfigError(f"unknown --speaker-from {mode!r}; use one of {', '.join(SPEAKER_FROM)}")
    folders = PurePosixPath(row.relpath).parent.parts
    if mode == "parent":
        if not folders:
            raise ConfigError(f"{where}: {row.relpath} is not in a speaker folder; {_explicit('prefix')}")
        return _valid(folders[-1], where)
    if mode in ("alignment", "auto") and alignment is not None and alignment.speaker is not None:
        return _valid(alignment.speaker, alignment.source)
    if mode == "alignment":
        source = alignment.source if alignment is not None else where
        raise ConfigError(
            f"{source}: no speaker in the alignment (only JSON alignments with a \"speaker\" field have one); "
            f"{_explicit('prefix', 'parent')}"
        )
    speaker = id_speaker(row.utt_id)
    if speaker is None:
        raise ConfigError(
            f"{where}: utterance id {row.utt_id!r} does not split into speaker and utterance unambiguously "
            f"('<spk>-<chapter>-<utt>' digits, '<spk>_<utt>' or '<spk>-<utt>'); {_explicit('parent')}"
        )
    if mode == "auto" and folders and speaker not in folders:
        raise ConfigError(
            f"{where}: utterance id {row.utt_id!r} names speaker {speaker!r} but {row.relpath} is in no folder of "
            f"that name; {_explicit('prefix', 'parent')}"
        )
    return _valid(speaker, where)


def add_speaker_arguments(parser: argparse.ArgumentParser, *, alignment: bool) -> None:
    """``--speaker-from`` (with ``alignment`` among its choices when the command reads alignments)
    and ``--speaker-map``, which exclude each other."""
    modes = [m for m in SPEAKER_FROM if alignment or m != "alignment"]
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--speaker-from",
        choices=modes,
        default="auto",
        help="where speaker ids come from (see manifests/README.md): "
        + ("'alignment' = the JSON alignment's \"speaker\"; " if alignment else "")
        + "'prefix' = the utterance id's speaker part (84-121123-0000 -> 84, slt-a_01234 -> slt-a; "
        "ambiguous ids are refused); 'parent' = the audio's folder; 'auto' (default) = "
        + ("the alignment's speaker if any, else " if alignment else "")
        + "the id's speaker part when the audio is at the root or under a folder of that name, else an error",
    )
    group.add_argument(
        "--speaker-map", metavar="FILE", help="utt_id<TAB>speaker lines giving every utterance's speaker"
    )
