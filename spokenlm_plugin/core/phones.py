"""Phone inventories and the HuBERT frame arithmetic shared by every stage."""

from __future__ import annotations

import re

#: Silence label; MFA's "", "sil", "sp", "spn" and flite's "pau" all map here.
SIL = "SIL"

#: The 39 stress-free ARPAbet phones (CMUdict) used by the paper, plus SIL first.
ARPABET39: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
)
INVENTORY: tuple[str, ...] = (SIL, *ARPABET39)

SILENCE_ALIASES = frozenset({"", "sil", "sp", "spn", "pau", "h#", "<eps>", "sil0"})

#: Extra mappings from other ARPAbet dialects (TIMIT-style, flite) onto the 39.
ARPABET_FOLDS = {"AX": "AH", "AXR": "ER", "IX": "IH", "UX": "UW", "EL": "L", "EM": "M", "EN": "N"}

_STRESS = re.compile(r"[0-9]+$")

#: HuBERT (and wav2vec 2.0) CNN: 400-sample receptive field, 320-sample hop at 16 kHz.
SAMPLE_RATE = 16_000
RECEPTIVE_FIELD = 400
HOP = 320
FRAME_RATE = SAMPLE_RATE / HOP  # 50 Hz


def normalize_phone(phone: str) -> str:
    """Map a phone symbol onto the 39-phone ARPAbet + SIL convention.

    Strips stress digits and case, folds TIMIT/flite variants and maps silence aliases to SIL.
    The result may still be outside :data:`INVENTORY`; callers check membership.
    """
    p = phone.strip()
    if p.lower() in SILENCE_ALIASES:
        return SIL
    p = _STRESS.sub("", p.upper())
    return ARPABET_FOLDS.get(p, p)


def num_frames(num_samples: int) -> int:
    """Number of HuBERT output frames for ``num_samples`` samples at 16 kHz (0 if too short)."""
    if num_samples < RECEPTIVE_FIELD:
        return 0
    return (num_samples - RECEPTIVE_FIELD) // HOP + 1
