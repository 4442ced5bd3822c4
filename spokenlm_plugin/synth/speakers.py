"""Synthetic speakers: a voice plus prosody settings and a vocal-tract warp.

flite's clustergen voices take a target F0 mean / standard deviation and a duration stretch
(``rms`` predicts its F0 with a model that ignores the targets, so its variants differ by tempo and
warp only). ``warp`` resamples the waveform, scaling pitch and formants by the factor and duration
by its inverse, as a shorter or longer vocal tract would; alignment times are scaled with it.
Speaker ids are stable (``slt-a``, ``rms-c``): a corpus or a pair set names them in its metadata.

The first :data:`ALIGNED_VARIANTS` variants of each voice (``a``-``d``) speak the aligned corpus and
the minimal pairs; the later ones (and the ``kal16`` diphone voice) speak only the unlabelled
pretraining corpus, so a pretrained model never heard an evaluation speaker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker."""

    id: str
    voice: str
    #: Target F0 mean and standard deviation in Hz (None: the voice's own).
    f0_mean: float | None = None
    f0_stddev: float | None = None
    #: Duration multiplier (>1 is slower).
    stretch: float = 1.0
    #: Pitch and formant scale applied by resampling (>1 sounds smaller and faster).
    warp: float = 1.0

    @property
    def warp_ratio(self) -> Fraction:
        """Resampling ratio (output samples per input sample) = 1 / warp, as a small fraction."""
        return Fraction(1 / self.warp).limit_denominator(64)

    def as_dict(self) -> dict:
        return asdict(self)


def _variants(voice: str, rows: list[tuple[float | None, float | None, float, float]]) -> list[Speaker]:
    return [
        Speaker(f"{voice}-{chr(ord('a') + i)}", voice, f0_mean=m, f0_stddev=s, stretch=d, warp=w)
        for i, (m, s, d, w) in enumerate(rows)
    ]


#: Variants per voice, in a fixed order; a corpus with ``speakers_per_voice=n`` uses the first n.
SPEAKERS: dict[str, list[Speaker]] = {
    # US English female; own F0 around 170 Hz.
    "slt": _variants("slt", [
        (None, None, 1.00, 1.00),
        (150.0, 18.0, 1.10, 0.95),
        (205.0, 35.0, 0.92, 1.04),
        (180.0, 12.0, 1.05, 0.98),
        (165.0, 28.0, 0.97, 1.07),
        (225.0, 22.0, 1.12, 1.01),
        (195.0, 40.0, 1.02, 0.93),
        (160.0, 15.0, 0.90, 1.03),
    ]),
    # US English male.
    "rms": _variants("rms", [
        (None, None, 1.00, 1.00),
        (None, None, 1.12, 0.94),
        (None, None, 0.92, 1.05),
        (None, None, 1.05, 0.97),
        (None, None, 0.96, 1.09),
        (None, None, 1.15, 1.02),
        (None, None, 1.00, 0.91),
        (None, None, 0.88, 0.99),
    ]),
    # Scottish English male.
    "awb": _variants("awb", [
        (None, None, 1.00, 1.00),
        (95.0, 12.0, 1.08, 0.96),
        (135.0, 25.0, 0.93, 1.03),
        (115.0, 8.0, 1.04, 1.00),
        (105.0, 20.0, 0.97, 1.06),
        (150.0, 15.0, 1.10, 0.98),
        (125.0, 30.0, 1.00, 0.92),
        (100.0, 10.0, 0.90, 1.08),
    ]),
}
#: Voices of the aligned corpus and the pairs.
VOICES: tuple[str, ...] = tuple(SPEAKERS)
#: Variants per voice that may speak the aligned corpus and the pairs; the rest are pretraining's.
ALIGNED_VARIANTS = 4
#: Voices heard only in pretraining (flite's US male diphone voice).
PRETRAIN_ONLY_VOICES: dict[str, list[Speaker]] = {
    "kal16": _variants("kal16", [
        (None, None, 1.00, 1.00),
        (120.0, 15.0, 1.08, 0.96),
        (150.0, 25.0, 0.94, 0.90),
        (100.0, 12.0, 1.02, 1.05),
    ]),
}


def aligned_speakers() -> list[Speaker]:
    """Every speaker that may appear in an aligned corpus or a pair set."""
    return [s for variants in SPEAKERS.values() for s in variants[:ALIGNED_VARIANTS]]


def pretrain_speakers() -> list[Speaker]:
    """The flite speakers of the pretraining corpus (disjoint from :func:`aligned_speakers`)."""
    reserved = [s for variants in SPEAKERS.values() for s in variants[ALIGNED_VARIANTS:]]
    return reserved + [s for variants in PRETRAIN_ONLY_VOICES.values() for s in variants]


def speakers_for(voices: list[str], *, per_voice: int) -> list[Speaker]:
    """The first ``per_voice`` variants of each voice, voice by voice."""
    unknown = [v for v in voices if v not in SPEAKERS]
    if unknown:
        raise ConfigError(f"--voices: unknown voice(s) {', '.join(unknown)}; choose from {', '.join(VOICES)}")
    if len(set(voices)) != len(voices):
        raise ConfigError(f"--voices: {' '.join(voices)} names a voice twice")
    if not 1 <= per_voice <= ALIGNED_VARIANTS:
        raise ConfigError(
            f"--speakers-per-voice: {per_voice} is outside 1..{ALIGNED_VARIANTS} "
            "(the later variants are reserved for the pretraining corpus)"
        )
    return [s for v in voices for s in SPEAKERS[v][:per_voice]]


def speaker(name: str) -> Speaker:
    """An aligned-corpus speaker by id (``slt-c``), or a voice's first variant by voice name (``slt``)."""
    if name in SPEAKERS:
        return SPEAKERS[name][0]
    for s in aligned_speakers():
        if s.id == name:
            return s
    if any(s.id == name for s in pretrain_speakers()):
        raise ConfigError(f"speaker {name!r} is reserved for the pretraining corpus; choose one of variants a-d")
    known = ", ".join(s.id for s in aligned_speakers())
    raise ConfigError(f"unknown voice or speaker {name!r}; choose a voice ({', '.join(VOICES)}) or one of {known}")
