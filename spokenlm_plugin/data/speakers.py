"""Who speaks an utterance, from where its audio file is (no metadata file needed)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

from ..errors import ConfigError
from ..io import ManifestRow

SpeakerFrom = Literal["parent", "prefix"]
SPEAKER_FROM: tuple[SpeakerFrom, ...] = ("parent", "prefix")

_PREFIX = re.compile(r"[-_]")


def speaker_of(row: ManifestRow, mode: SpeakerFrom = "parent") -> str:
    """``parent``: name of the folder holding the audio (``audio/<speaker>/<utt>.flac``);
    ``prefix``: the utterance id up to its first ``-`` or ``_`` (LibriSpeech ``1272-128104-0000``)."""
    if mode == "parent":
        parent = PurePosixPath(row.relpath).parent.name
        if not parent:
            raise ConfigError(
                f"{row.relpath}: audio is not in a speaker folder; pass --speaker-from prefix "
                "(speaker = utterance id up to its first '-' or '_')"
            )
        return parent
    if mode == "prefix":
        return _PREFIX.split(row.utt_id, maxsplit=1)[0]
    raise ConfigError(f"unknown --speaker-from {mode!r}; use one of {', '.join(SPEAKER_FROM)}")
