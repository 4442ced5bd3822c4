"""espeak-ng through ``libespeak-ng`` and ctypes: speech with phone and word times from the engine.

The held-out check ("the same commands reach comparable numbers on voices the project
never saw") needs an aligned corpus spoken by another synthesizer: :class:`Espeak` returns the same
:class:`~.flite.Synthesis` as :meth:`Flite.synthesize` (16 kHz int16 samples, words and ARPAbet-39 +
SIL phones in seconds), and :data:`HELDOUT_ESPEAK` lists its speakers, disjoint from the espeak-ng
speakers of the pretraining corpus (:data:`.pretrain_corpus.ESPEAK`).

Where the times come from. espeak-ng runs in synchronous mode with phoneme events
(``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, espeakINITIALIZE_PHONEME_EVENTS)``); its
callback receives the 22,050 Hz samples and, per phoneme, an ``espeakEVENT_PHONEME`` whose ``sample``
is where the engine starts generating it, per word an ``espeakEVENT_WORD``. In ``Generate()``
(``synthesize.c``) a word's event comes first, then its first phoneme's "pre-pause" (a stop's
closure, a gap before a fricative: ``DoPause``, exactly zero samples), then the phoneme's event;
for a vowel after a liquid or nasal, the vowel's first (transition) frame comes before its event.
So a phone's start is its event moved back

- for the first phoneme of a word: to the word's event (pre-pause and transition included);
- for any other phoneme: over the run of zero samples (>= 2 ms) that ends at its event (its
  pre-pause: a stop's closure belongs to the stop);

but never into a pause (silence before a phone stays SIL) nor past the phone before's start. A
phone ends where the next starts, the last with the audio; the zeros before the first phone are SIL.
A phoneme with no sample of its own (a word-final l that espeak-ng renders as the ending of the
vowel before it) shares that vowel's interval in equal halves. Within a word, a vowel after a
liquid or nasal still loses its first frame (~10-25 ms) to the consonant.

Words. espeak-ng stamps each phoneme event with the text position of its word (the space before
the word, or 0 for the first, stand for the word too); a word spans its phones. A multi-word
dictionary entry ("of a", "for the", "did not") stamps all its phonemes with its first word: the
group is shared among its words by an edit-distance alignment of its mnemonics to the words'
pronunciations alone (``espeak_TextToPhonemes``), an inserted phoneme (a linking r) going with the
phoneme before. Word starts then coincide with the ``espeakEVENT_WORD`` samples (checked in the tests).

Phones. espeak-ng's English phoneme mnemonics (``en``, ``en-us``, ``en-n``, ``en-wm``, ``en-wi``,
``en-us-nyc`` tables) map to ARPAbet-39 by :data:`MNEMONICS`, a table of lexical categories in the
CMUdict convention of the flite corpus (BATH ``aa`` is AE, LOT ``0`` AA, START ``A@`` AA R, whatever
the accent makes of them); where an accent replaces a phoneme by another (Caribbean en-029 says TH
as dental ``t[`` and DH as ``d``, West Midlands drops h) the label is the phoneme spoken. An unknown
mnemonic is an :class:`AlignmentError`, never a guess. Composite mnemonics map to two phones that
split their interval in equal halves: syllabic ``@L`` -> AH L and ``n-`` -> AH N, ``aI@`` / ``aI3``
-> AY ER, ``aU@`` -> AW ER, and the centring diphthongs ``A@ O@ o@ e@ i@ U@`` -> vowel + R, except
before an r (``r``, ``r-``, ``r/``), which is then their R. A linking r after ER ("pillar of") is part
of the ER; the linking j between an i vowel and a vowel (``;``, "she [j]asked") is the onset of the
vowel after it. Pauses (``_``, ``_:``, ``_!``, ...) are SIL.

Variants with an ``echo`` (f2-f5, m2, ...) fill the pre-pauses with echo, so their closures would
stay with the phone before: :data:`HELDOUT_ESPEAK` has echo-free variants only. The library keeps
state from one utterance to the next (see :class:`_Session`): it is loaded afresh for each one.
"""

from __future__ import annotations

import _ctypes
import bisect
import ctypes
import math
import os
import re
import zlib
from ctypes import POINTER, c_char, c_char_p, c_int, c_short, c_size_t, c_uint, c_void_p
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np

from ..core.errors import AlignmentError, ConfigError, MissingToolError
from ..core.phones import INVENTORY, SAMPLE_RATE, SIL
from .flite import Synthesis

LIBRARY = "libespeak-ng.so.1"
INSTALL_HINT = "install it with 'sudo apt-get install espeak-ng' (Debian: package libespeak-ng1)"
#: Folder holding ``espeak-ng-data``; None = the library's default.
DATA_PATH_ENV = "SPOKENLM_ESPEAK_DATA"


@dataclass(frozen=True)
class EspeakSpeaker:
    """An espeak-ng voice (formant or Klatt synthesis): language voice + variant, rate (words/min),
    pitch (0-99, 50 = the voice's own)."""

    id: str
    voice: str
    rate: int
    pitch: int

    def as_dict(self) -> dict:
        return {**asdict(self), "engine": "espeak-ng"}


@dataclass(frozen=True)
class HeldOutSpeaker(EspeakSpeaker):
    """A speaker of the held-out corpus with its fixed split: ``train`` (fine-tuning) or ``test``."""

    split: Literal["train", "test"] = "train"


#: Speakers of the held-out aligned corpus (``spokenlm synth-corpus --engine espeak``): each its own
#: voice, none heard in pretraining. Accents (language voices) the pretraining corpus does not use
#: (Caribbean en-029, Lancaster, West Midlands, New York City: pretraining has en-us, en-gb,
#: en-gb-scotland, en-gb-x-rp) and variants it does not use (pretraining: m1-m4, f1-f4), without
#: echo (see the module docstring). The split is fixed here so that every run fine-tunes on the
#: same four voices and scores on the same two.
HELDOUT_ESPEAK: tuple[HeldOutSpeaker, ...] = (
    HeldOutSpeaker("hx-nyc-klatt", "en-us-nyc+klatt", 165, 45, "train"),  # Klatt synthesizer
    HeldOutSpeaker("hx-lan-anika", "en-gb-x-gbclan+anika", 160, 60, "train"),
    HeldOutSpeaker("hx-wi-m6", "en-029+m6", 155, 40, "train"),
    HeldOutSpeaker("hx-wmd-steph", "en-gb-x-gbcwmd+steph", 170, 55, "train"),
    HeldOutSpeaker("hx-lan-m7", "en-gb-x-gbclan+m7", 160, 45, "test"),
    HeldOutSpeaker("hx-wi-belinda", "en-029+belinda", 165, 58, "test"),
)


def heldout_speakers(ids: Sequence[str]) -> list[HeldOutSpeaker]:
    """The held-out speakers named (in :data:`HELDOUT_ESPEAK` order); at least one train and one test."""
    known = {s.id: s for s in HELDOUT_ESPEAK}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(
            f"--voices: unknown held-out espeak-ng speaker(s) {' '.join(unknown)}; choose from "
            f"{' '.join(known)} (pretraining's espeak-ng voices cannot speak an aligned corpus)"
        )
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--voices: {' '.join(ids)} names a speaker twice")
    chosen = [s for s in HELDOUT_ESPEAK if s.id in ids]
    for split in ("train", "test"):
        if not any(s.split == split for s in chosen):
            options = " ".join(s.id for s in HELDOUT_ESPEAK if s.split == split)
            raise ConfigError(f"--voices: no {split} speaker among {' '.join(ids)}; add one of {options}")
    return chosen


# --------------------------------------------------------------------------- phones

_VOWEL_R = {"A@": "AA", "O@": "AO", "o@": "AO", "e@": "EH", "i@": "IH", "U@": "UH"}
_R = frozenset({"r", "r-", "r/"})

#: espeak-ng English mnemonic -> ARPAbet-39 phone(s). Lexical categories, CMUdict convention.
MNEMONICS: dict[str, tuple[str, ...]] = {
    # consonants
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",),
    "f": ("F",), "v": ("V",), "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",),
    "S": ("SH",), "Z": ("ZH",), "h": ("HH",), "tS": ("CH",), "dZ": ("JH",),
    "m": ("M",), "n": ("N",), "N": ("NG",), "l": ("L",), "r": ("R",), "w": ("W",), "j": ("Y",),
    "t2": ("T",),  # t that does not reduce
    "t[": ("T",),  # dental t: en-029 speaks TH as t[ (and DH as d), labelled as heard
    "t#": ("T",),  # flap (en-us "city"): CMUdict writes T
    "?": ("T",),  # glottal stop standing for /t/ (en-us "button")
    "d#": ("D",), "z#": ("Z",), "z/2": ("Z",),  # -ed / -s suffixes before voicing assimilation
    "l/": ("L",), "l/2": ("L",),  # clear / dark l
    "r-": ("R",),  # linking r
    "r/": ("R",),
    "w#": ("W",),  # "wh" (which)
    "x": ("K",),  # velar fricative (loch): CMUdict K
    # vowels
    "@": ("AH",), "@-": ("AH",), "@2": ("AH",), "@5": ("AH",), "@#": ("AH",), "a#": ("AH",), "a#2": ("AH",),
    "3": ("ER",), "3:": ("ER",), "IR": ("ER",), "VR": ("ER",),
    "a": ("AE",), "a2": ("AE",), "aa": ("AE",),  # aa: the BATH set, AE in CMUdict
    "A:": ("AA",), "A#": ("AA",), "A~": ("AA",),  # A#: loanwords (mama, falafel)
    "E": ("EH",), "E2": ("EH",), "E#": ("EH",), "e#": ("EH",),
    "e:": ("EY",), "eI": ("EY",),
    "I": ("IH",), "I2": ("IH",), "I#": ("IH",), "I2#": ("IH",), "i@3": ("IH",),  # i@3: before r
    "i": ("IY",), "i:": ("IY",),  # i: the final vowel of "happy" (CMUdict IY)
    "0": ("AA",), "0#": ("AA",), "02": ("AA",), "O2": ("AA",),  # LOT: AA in CMUdict
    "O:": ("AO",), "O": ("AO",), "O~": ("AO",),
    "V": ("AH",), "U": ("UH",), "u:": ("UW",),
    "oU": ("OW",), "oU#": ("OW",), "o:": ("OW",),
    "aU": ("AW",), "aI": ("AY",), "OI": ("OY",),
    # composites: their interval is split in equal halves
    "@L": ("AH", "L"), "n-": ("AH", "N"),  # syllabic l, n (simple, button)
    "aI@": ("AY", "ER"), "aI3": ("AY", "ER"), "aU@": ("AW", "ER"),
    **{m: (v, "R") for m, v in _VOWEL_R.items()},
}
#: Pause mnemonics (short, long, clause pauses); all SIL.
PAUSES = frozenset({"_", "_:", "_::", "_!", "_|", "_;_", "_!_"})
#: Linking glides: the linking j between an i vowel and a following vowel ("she [j]asked") is the
#: onset of the vowel after it, whose word espeak-ng starts there (CMUdict has no phone for it);
#: alone (last) it would be a Y.
_LINKING: dict[str, tuple[str, ...]] = {";": ("Y",)}
#: Stress and length marks newer espeak-ng versions prefix to event mnemonics.
_STRESS_MARKS = re.compile(r"^[',%=]+")


def to_arpabet(mnemonic: str, next_mnemonic: str | None = None) -> tuple[str, ...]:
    """The ARPAbet-39 phone(s) of an espeak-ng English phoneme mnemonic (SIL for pauses).

    ``next_mnemonic``: the following phoneme's, for the centring diphthongs (``e@`` is EH R, but EH
    before an r that is then the R). An unknown mnemonic is an :class:`AlignmentError`.
    """
    m = _STRESS_MARKS.sub("", mnemonic)
    if m in PAUSES:
        return (SIL,)
    if m in _VOWEL_R and next_mnemonic is not None and _STRESS_MARKS.sub("", next_mnemonic) in _R:
        return (_VOWEL_R[m],)
    phones = MNEMONICS.get(m)
    if phones is None:
        raise AlignmentError(
            f"espeak-ng phoneme {mnemonic!r} has no ARPAbet-39 mapping; add it to "
            "spokenlm_plugin.synth.espeak.MNEMONICS (or use an English voice)"
        )
    return phones


# --------------------------------------------------------------------------- the library

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_RATE, _PITCH, _RANGE = 1, 3, 4
_EE_OK = 0
_SEPARATOR = "|"


class _EventId(ctypes.Union):
    _fields_ = [("number", c_int), ("name", c_char_p), ("string", c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h, API revision 12)."""

    _fields_ = [
        ("type", c_int),
        ("unique_identifier", c_uint),
        ("text_position", c_int),
        ("length", c_int),
        ("audio_position", c_int),
        ("sample", c_int),
        ("user_data", c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(c_int, POINTER(c_short), c_int, POINTER(_Event))


@dataclass(frozen=True)
class RawEvent:
    """A word or phoneme event: ``sample`` at the engine's rate; ``text_position`` 1-based characters."""

    kind: str  # "word" or "phoneme"
    sample: int
    text_position: int
    mnemonic: str = ""


@dataclass(frozen=True)
class EngineOutput:
    """What espeak-ng made of a text: samples at ``sample_rate``, events, and the mnemonics of
    each asked-for word spoken alone (``espeak_TextToPhonemes``, stress marks removed)."""

    samples: np.ndarray
    sample_rate: int
    events: tuple[RawEvent, ...]
    lone: dict[str, tuple[str, ...]]


def _signature(lib: ctypes.CDLL, name: str, restype, *argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_LIBC = ctypes.CDLL(None)
_signature(_LIBC, "srand", None, c_uint)


def check_library() -> None:
    """:class:`MissingToolError` unless ``libespeak-ng.so.1`` loads (it is unloaded again)."""
    try:
        handle = _ctypes.dlopen(LIBRARY, ctypes.DEFAULT_MODE)
    except OSError as e:
        raise MissingToolError(f"{LIBRARY}: not found ({e}); {INSTALL_HINT}") from None
    _ctypes.dlclose(handle)


class _Session:
    """One freshly loaded and initialised libespeak-ng, unloaded on exit.

    The library keeps state from one synthesis to the next (the phase of its pitch "flutter",
    wave-generator state): the same text then comes out a few samples longer or shorter depending on
    what was spoken before. Loading it afresh for each utterance (a few ms) makes the audio depend on
    (speaker, text) only, as from the ``espeak-ng`` program.
    """

    def __init__(self, data_path: str | None) -> None:
        self.data_path = data_path
        self.chunks: list[np.ndarray] = []
        self.events: list[RawEvent] = []

    def __enter__(self) -> "_Session":
        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as e:
            raise MissingToolError(f"{LIBRARY}: not found ({e}); {INSTALL_HINT}") from None
        _signature(lib, "espeak_Initialize", c_int, c_int, c_int, c_char_p, c_int)
        _signature(lib, "espeak_Terminate", c_int)
        _signature(lib, "espeak_SetSynthCallback", None, _CALLBACK)
        _signature(lib, "espeak_SetVoiceByName", c_int, c_char_p)
        _signature(lib, "espeak_SetParameter", c_int, c_int, c_int, c_int)
        _signature(lib, "espeak_TextToPhonemes", c_char_p, POINTER(c_void_p), c_int, c_int)
        _signature(lib, "espeak_Synth", c_int, c_char_p, c_size_t, c_uint, c_int, c_uint, c_uint, c_void_p, c_void_p)
        self.lib = lib
        path = self.data_path.encode() if self.data_path else None
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            self._unload()
            raise MissingToolError(f"espeak-ng: initialisation failed (espeak-ng-data not found); {INSTALL_HINT}")
        self._callback = _CALLBACK(self._on_audio)  # alive while the library may call it
        lib.espeak_SetSynthCallback(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        self.lib.espeak_Terminate()
        self._unload()

    def _unload(self) -> None:
        _ctypes.dlclose(self.lib._handle)

    def _on_audio(self, wav, n, events) -> int:
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD:
                self.events.append(RawEvent("word", e.sample, e.text_position))
            elif e.type == _EVENT_PHONEME:
                name = bytes(e.id.string).split(b"\0", 1)[0].decode("utf-8", errors="replace")
                self.events.append(RawEvent("phoneme", e.sample, e.text_position, name))
            i += 1
        return 0

    def set_speaker(self, speaker: EspeakSpeaker) -> None:
        if self.lib.espeak_SetVoiceByName(speaker.voice.encode()) != _EE_OK:
            raise ConfigError(f"espeak-ng voice {speaker.voice!r}: not found; list them with 'espeak-ng --voices=en'")
        for param, value in ((_RATE, speaker.rate), (_PITCH, speaker.pitch), (_RANGE, 50)):
            self.lib.espeak_SetParameter(param, value, 0)

    def synthesize(self, text: str) -> np.ndarray:
        data = text.encode("utf-8")
        if self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != _EE_OK:
            raise AlignmentError(f"espeak-ng: synthesis of {text!r} failed")
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)

    def text_phonemes(self, text: str) -> tuple[str, ...]:
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = c_void_p(ctypes.addressof(buffer))
        phonemes: list[str] = []
        while pointer.value:
            # ASCII mnemonics joined by the separator (bits 8-23 of phonememode); words by spaces.
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, ord(_SEPARATOR) << 8)
            for chunk in (out or b"").decode("utf-8", errors="replace").split():
                phonemes += [m for m in (_bare(x) for x in chunk.split(_SEPARATOR)) if m]
        return tuple(phonemes)


class Espeak:
    """espeak-ng's English voices, with phone and word alignments (see the module docstring).

    ``data_path``: folder holding ``espeak-ng-data`` (default ``$SPOKENLM_ESPEAK_DATA``, else the
    library's own). A missing library is a :class:`MissingToolError`, raised here.
    """

    def __init__(self, data_path: str | os.PathLike | None = None) -> None:
        path = data_path if data_path is not None else os.environ.get(DATA_PATH_ENV) or None
        self.data_path = str(path) if path is not None else None
        check_library()

    def run(self, text: str, speaker: EspeakSpeaker, *, lone_words: Sequence[str] = ()) -> EngineOutput:
        """The engine's raw output for ``text`` and the lone pronunciations of ``lone_words``."""
        with _Session(self.data_path) as session:
            session.set_speaker(speaker)
            # Noise (breath, frication) draws from C's rand(): seeded per utterance.
            _LIBC.srand(zlib.crc32(f"{speaker.id}\t{text}".encode("utf-8")))
            samples = session.synthesize(text)
            lone = {w: session.text_phonemes(w) for w in lone_words}
            return EngineOutput(samples, session.sample_rate, tuple(session.events), lone)

    def synthesize(self, text: str, speaker: EspeakSpeaker) -> Synthesis:
        """Speak ``text``; words are its whitespace tokens (punctuation stripped, lowercased)."""
        words = [w for _, _, w in _tokens(text)]
        out = self.run(text, speaker, lone_words=words)
        return align(
            out.samples, out.sample_rate, out.events, text, what=f"{speaker.voice}: {text!r}",
            word_phonemes=out.lone.__getitem__,
        )


#: Shortest run of zero samples taken for a pre-pause (a waveform crosses zero on a sample or two).
MIN_PREPAUSE_S = 0.002


def _tokens(text: str) -> list[tuple[int, int, str]]:
    """(first, last) 1-based character positions and lowercased word (trailing punctuation
    stripped) of each whitespace token of ``text``."""
    return [
        (m.start() + 1, m.end(), re.sub(r"[^A-Za-z']+$", "", m.group()).lower()) for m in re.finditer(r"\S+", text)
    ]


def _bare(mnemonic: str) -> str:
    return _STRESS_MARKS.sub("", mnemonic)


def phone_starts(samples: np.ndarray, rate: int, events: Sequence[RawEvent]) -> list[tuple[int, str, int]]:
    """(start sample, mnemonic, text position) of each phoneme event, its start moved back to where
    its sound begins, but never into a pause (the silence stays SIL) nor before the start of the
    phone before (which :func:`align` treats as having no sample of its own when they meet):

    - the first phoneme of a word starts at the word's event (before its pre-pause, and before the
      first frame of a vowel after a liquid or nasal, which espeak-ng emits ahead of the vowel's event);
    - any other phoneme starts at the run of zero samples (its pre-pause, at least
      :data:`MIN_PREPAUSE_S`) that ends at its event, if there is one.
    """
    nonzero = np.flatnonzero(samples)
    min_run = round(MIN_PREPAUSE_S * rate)
    starts: list[tuple[int, str, int]] = []
    word_sample: int | None = None
    for e in events:
        if e.kind == "word":
            word_sample = e.sample
            continue
        if e.kind != "phoneme":
            continue
        start = min(e.sample, len(samples))
        if starts and start < starts[-1][0]:
            raise AlignmentError(f"espeak-ng: phoneme events out of order at sample {e.sample}")
        if starts and _bare(starts[-1][1]) not in PAUSES:
            if word_sample is not None:
                # At the phone before's own start: that phone made no sound before this word (an
                # l rendered as the ending of the vowel before it); it is then of zero length.
                if starts[-1][0] <= word_sample <= start:
                    start = word_sample
            else:
                i = np.searchsorted(nonzero, start) - 1  # the last non-zero sample before the event
                zero_from = int(nonzero[i]) + 1 if i >= 0 else 0
                if start - zero_from >= min_run and starts[-1][0] < zero_from:
                    start = zero_from
        word_sample = None
        starts.append((start, e.mnemonic, e.text_position))
    return starts


def _edit_alignment(spoken: Sequence[str], reference: Sequence[str]) -> list[int | None]:
    """For each spoken mnemonic, the index of the reference mnemonic it aligns to (None: inserted),
    by a Levenshtein alignment (substitution, insertion, deletion cost 1; ties prefer substitution)."""
    n, m = len(spoken), len(reference)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(
                cost[i - 1, j - 1] + (spoken[i - 1] != reference[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1
            )
    match: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + (spoken[i - 1] != reference[j - 1]):
            match[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return match


def word_of_phonemes(
    starts: Sequence[tuple[int, str, int]], text: str, word_phonemes, *, what: str
) -> list[int | None]:
    """The token index of each phoneme (None for pauses).

    espeak-ng stamps a phoneme with the text position of its word. A multi-word dictionary entry
    ("of a", "did not") stamps all its phonemes with one position: such a group is shared among its
    words by aligning its mnemonics (edit distance) to the words' own pronunciations spoken alone
    (``word_phonemes``) one after the other; a phoneme the lone pronunciations lack (a linking r)
    goes with the phoneme before it.
    """
    tokens = _tokens(text)
    firsts = [first for first, _, _ in tokens]
    owner: list[int | None] = []
    for _, mnemonic, position in starts:
        if _bare(mnemonic) in PAUSES:
            owner.append(None)
            continue
        k = bisect.bisect_right(firsts, position) - 1  # the token holding that character
        if k < 0 or position > tokens[k][1]:
            k += 1  # the space before a word, or 0 before the first, stands for that word
        if k >= len(tokens):
            raise AlignmentError(f"espeak-ng {what}: phoneme {mnemonic!r} at character {position}, after the last word")
        owner.append(k)
    heard = [o for o in owner if o is not None]
    if not heard or heard != sorted(heard) or heard[0] != 0:
        raise AlignmentError(f"espeak-ng {what}: phonemes out of word order")
    distinct = sorted(set(heard))
    for first, following in zip(distinct, distinct[1:] + [len(tokens)]):
        if following == first + 1:
            continue
        group = range(first, following)  # words first+1 .. following-1 have no phoneme of their own
        members = [k for k, o in enumerate(owner) if o == first]
        reference: list[str] = []
        reference_word: list[int] = []
        for token in group:
            lone = [_bare(m) for m in word_phonemes(tokens[token][2])]
            lone = [m for m in lone if m not in PAUSES]
            reference += lone
            reference_word += [token] * len(lone)
        match = _edit_alignment([_bare(starts[k][1]) for k in members], reference)
        current = first
        for k, j in zip(members, match):
            if j is not None:
                current = max(current, reference_word[j])  # keep the words in order
            owner[k] = current
        missing = sorted(set(group) - {owner[k] for k in members})
        if missing:
            raise AlignmentError(
                f"espeak-ng {what}: no phoneme for {' '.join(tokens[t][2] for t in missing)!r} "
                f"in the group {' '.join(starts[k][1] for k in members)!r}"
            )
    return owner


def align(
    samples: np.ndarray, rate: int, events: Sequence[RawEvent], text: str, *, what: str, word_phonemes
) -> Synthesis:
    """The :class:`Synthesis` of espeak-ng's output: resampled to 16 kHz, phones in ARPAbet-39 + SIL,
    words the text's tokens. ``word_phonemes(word)``: the mnemonics of a word spoken alone."""
    if len(samples) == 0:
        raise AlignmentError(f"espeak-ng {what}: no audio")
    starts = phone_starts(samples, rate, events)
    if not starts:
        raise AlignmentError(f"espeak-ng {what}: no phoneme events")
    owner = word_of_phonemes(starts, text, word_phonemes, what=what)
    intervals = _phone_intervals(starts, owner, n=len(samples), what=what)
    out, up, down = _resample(samples, rate)
    words_text = [w for _, _, w in _tokens(text)]
    phones_out, spans = _timed_phones(intervals, total=len(out), up=up, down=down)
    unknown = sorted({p for _, _, p in phones_out if p not in INVENTORY})
    if unknown:  # MNEMONICS holds ARPAbet-39 only: a guard against a bad edit of the table
        raise AlignmentError(f"espeak-ng {what}: phones {' '.join(unknown)} are outside ARPAbet-39 + SIL")
    if [t for _, _, t in spans] != list(range(len(words_text))):
        raise AlignmentError(
            f"espeak-ng {what}: the words' phones are not contiguous or some word has none "
            f"(token order {[t for _, _, t in spans]})"
        )
    words = tuple((s, e, words_text[t]) for s, e, t in spans)
    return Synthesis(samples=out, words=words, phones=tuple(phones_out))


def _phone_intervals(
    starts: Sequence[tuple[int, str, int]], owner: Sequence[int | None], *, n: int, what: str
) -> list[list]:
    """Intervals at the engine's rate of the ``n`` samples: [start, end, ARPAbet phone, token index or None]."""
    mnemonics = [_bare(m) for _, m, _ in starts]
    intervals: list[list] = []
    if starts[0][0] > 0:
        intervals.append([0, starts[0][0], SIL, None])
    carried: int | None = None
    for k, (start, _, _) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else n
        m = mnemonics[k]
        if carried is not None:
            start, carried = carried, None
        if m in _LINKING and k + 1 < len(starts):
            if end > start:
                carried = start  # the on-glide of the vowel after it
            continue
        if m == "r-" and intervals and intervals[-1][2] == "ER" and end > start:
            intervals[-1][1] = end  # a linking r after ER ("pillar of") is ER's r-colour: CMUdict has no R there
            continue
        following = next((x for x in mnemonics[k + 1 :] if x not in _LINKING), None)
        phones = _LINKING.get(m) or to_arpabet(m, following)
        if end <= start:
            if phones == (SIL,):
                continue  # a pause event at the very end, or between two others
            # No samples of its own: rendered as the ending of the phone before (a vowel + l
            # ending), which it shares in equal halves.
            if not intervals or intervals[-1][2] == SIL:
                raise AlignmentError(f"espeak-ng {what}: phoneme {starts[k][1]!r} has no audio and no phone before it")
            prev = intervals.pop()
            start, end = prev[0], prev[1]
            phones = (prev[2], *phones)
            tokens_of = [prev[3]] + [owner[k]] * (len(phones) - 1)
        else:
            tokens_of = [None if phones == (SIL,) else owner[k]] * len(phones)
        cuts = [start + (end - start) * j // len(phones) for j in range(len(phones) + 1)]
        for j, phone in enumerate(phones):
            if cuts[j + 1] > cuts[j]:
                intervals.append([cuts[j], cuts[j + 1], phone, tokens_of[j]])
    return intervals


def _resample(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int, int]:
    """``samples`` at 16 kHz (int16), and the factors ``up`` / ``down`` that took them there."""
    g = math.gcd(SAMPLE_RATE, rate)
    up, down = SAMPLE_RATE // g, rate // g
    if (up, down) != (1, 1):
        from scipy.signal import resample_poly  # scipy.signal takes ~1 s to import: only when used

        out = resample_poly(samples.astype(np.float32), up, down)
        out = np.clip(np.round(out), -32768, 32767).astype(np.int16)
    else:
        out = samples.astype(np.int16)
    return out, up, down


def _timed_phones(
    intervals: Sequence[list], *, total: int, up: int, down: int
) -> tuple[list[tuple[float, float, str]], list[list]]:
    """The intervals in seconds of the resampled audio (``total`` samples; times scale with the
    samples, rounded to the output sample): phones (pauses merged) and each token's [start, end, index]."""
    phones_out: list[tuple[float, float, str]] = []
    spans: list[list] = []  # [start, end, token index]
    start_t = 0.0
    for i, (_, end, phone, token) in enumerate(intervals):
        end_t = total / SAMPLE_RATE if i == len(intervals) - 1 else min(round(end * up / down), total) / SAMPLE_RATE
        if end_t <= start_t:
            continue
        if phones_out and phones_out[-1][2] == phone == SIL:
            phones_out[-1] = (phones_out[-1][0], end_t, SIL)
        else:
            phones_out.append((start_t, end_t, phone))
        if token is not None:
            if spans and spans[-1][2] == token:
                spans[-1][1] = end_t
            else:
                spans.append([start_t, end_t, token])
        start_t = end_t
    return phones_out, spans
