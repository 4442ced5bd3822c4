"""flite (CMU Festival-lite) through ``libflite`` and ctypes: speech with exact phone and word times.

The utterance structure flite builds while synthesizing holds every segment's end time; the
waveform is generated from those very durations, so the alignment is exact (within 4 ms of the
audio for the clustergen voices slt, rms and awb; the kal diphone voices are 116-241 ms off and
are not offered). Only the runtime libraries of Debian's ``libflite1`` are needed.
"""

from __future__ import annotations

import ctypes
import os
import zlib
from ctypes import POINTER, c_char_p, c_float, c_int, c_short, c_void_p
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import AlignmentError, ConfigError, MissingToolError
from ..core.phones import INVENTORY, SAMPLE_RATE, SIL, normalize_phone
from .speakers import Speaker

#: Folder of the flite libraries; None = the dynamic linker's search path.
LIB_DIR_ENV = "SPOKENLM_FLITE_LIBDIR"
INSTALL_HINT = "install it with 'sudo apt-get install libflite1'"
_CORE_LIBS = ("libflite.so.1", "libflite_usenglish.so.1", "libflite_cmulex.so.1")
_TOKEN_PATH = b"R:SylStructure.parent.parent.R:Token.parent"


class _Wave(ctypes.Structure):
    _fields_ = [
        ("type", c_char_p),
        ("sample_rate", c_int),
        ("num_samples", c_int),
        ("num_channels", c_int),
        ("samples", POINTER(c_short)),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("features", c_void_p), ("ffunctions", c_void_p), ("utt_init", c_void_p)]


class _SynthModule(ctypes.Structure):
    """``cst_synth_module``: a hook name and its default function (used when the voice sets none)."""

    _fields_ = [("hookname", c_char_p), ("defhook", c_void_p)]


@dataclass(frozen=True)
class Synthesis:
    """A synthesized utterance: 16-bit samples at 16 kHz with its word and phone alignment.

    Phones are contiguous from 0 to the end of the audio and in :data:`INVENTORY` (pauses are SIL);
    words are the text's tokens, each spanning its phones.
    """

    samples: np.ndarray
    words: tuple[tuple[float, float, str], ...]
    phones: tuple[tuple[float, float, str], ...]

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _signature(lib: ctypes.CDLL, name: str, restype, *argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


class Flite:
    """The flite library with its US English voices and the CMU lexicon.

    ``lib_dir``: folder holding ``libflite.so.1`` and the voices; default ``$SPOKENLM_FLITE_LIBDIR``,
    else the dynamic linker's search path. A missing library is a :class:`MissingToolError`.
    """

    def __init__(self, lib_dir: str | os.PathLike | None = None) -> None:
        lib_dir = lib_dir if lib_dir is not None else os.environ.get(LIB_DIR_ENV) or None
        self.lib_dir = Path(lib_dir) if lib_dir is not None else None
        # Voices and the lexicon resolve symbols of the core libraries: load those globally.
        libs = [self._load(name, mode=ctypes.RTLD_GLOBAL) for name in _CORE_LIBS]
        self._lib, _, self._cmulex = libs
        lib = self._lib
        _signature(lib, "flite_init", c_int)
        _signature(lib, "flite_synth_text", c_void_p, c_char_p, POINTER(_Voice))
        _signature(lib, "flite_synth_phones", c_void_p, c_char_p, POINTER(_Voice))
        _signature(lib, "utt_wave", POINTER(_Wave), c_void_p)
        _signature(lib, "utt_relation", c_void_p, c_void_p, c_char_p)
        _signature(lib, "relation_head", c_void_p, c_void_p)
        _signature(lib, "item_next", c_void_p, c_void_p)
        _signature(lib, "item_feat_string", c_char_p, c_void_p, c_char_p)
        _signature(lib, "item_feat_float", c_float, c_void_p, c_char_p)
        _signature(lib, "path_to_item", c_void_p, c_void_p, c_char_p)
        _signature(lib, "delete_utterance", None, c_void_p)
        _signature(lib, "new_utterance", c_void_p)
        _signature(lib, "utt_set_input_text", None, c_void_p, c_char_p)
        _signature(lib, "flite_do_synth", c_void_p, c_void_p, POINTER(_Voice), c_void_p)
        _signature(lib, "apply_synth_method", c_void_p, c_void_p, POINTER(_SynthModule))
        _signature(lib, "feat_set_float", None, c_void_p, c_char_p, c_float)
        _signature(lib, "feat_remove", c_int, c_void_p, c_char_p)
        _signature(lib, "lex_lookup", c_void_p, c_void_p, c_char_p, c_char_p, c_void_p)
        _signature(lib, "val_car", c_void_p, c_void_p)
        _signature(lib, "val_cdr", c_void_p, c_void_p)
        _signature(lib, "val_string", c_char_p, c_void_p)
        _signature(lib, "delete_val", None, c_void_p)
        _signature(self._cmulex, "cmu_lex_init", c_void_p)
        # flite draws the noise of unvoiced excitation from C's rand(): seeding it per utterance
        # makes the audio independent of what the process synthesized before (resume, --jobs).
        self._libc = ctypes.CDLL(None)
        _signature(self._libc, "srand", None, ctypes.c_uint)
        lib.flite_init()
        self._lexicon = self._cmulex.cmu_lex_init()
        self._voices: dict[str, ctypes._Pointer] = {}

    def _load(self, name: str, *, mode: int = ctypes.DEFAULT_MODE) -> ctypes.CDLL:
        path = str(self.lib_dir / name) if self.lib_dir is not None else name
        try:
            return ctypes.CDLL(path, mode=mode)
        except OSError as e:
            where = self.lib_dir if self.lib_dir is not None else "the library path"
            raise MissingToolError(
                f"{name}: not found in {where} ({e}); {INSTALL_HINT}"
                + (f" or point {LIB_DIR_ENV} at the folder holding it" if self.lib_dir is not None else "")
            ) from None

    def voice(self, name: str) -> ctypes._Pointer:
        """The ``cst_voice*`` of a US English voice (``slt``, ``rms``, ``awb``)."""
        if name not in self._voices:
            if not name.isalnum():
                raise ConfigError(f"flite voice {name!r}: not a voice name")
            lib = self._load(f"libflite_cmu_us_{name}.so.1")
            _signature(lib, f"register_cmu_us_{name}", POINTER(_Voice), c_void_p)
            self._voices[name] = getattr(lib, f"register_cmu_us_{name}")(None)
        return self._voices[name]

    def _configure(self, speaker: Speaker, what: str) -> ctypes._Pointer:
        """Set the speaker's features on its voice and seed the noise from (speaker, text)."""
        voice = self.voice(speaker.voice)
        self._libc.srand(zlib.crc32(f"{speaker.id}\t{what}".encode("utf-8")))
        feats = voice.contents.features
        # Features persist on the voice object: set (or clear) every one on each call.
        for key, value in ((b"int_f0_target_mean", speaker.f0_mean), (b"int_f0_target_stddev", speaker.f0_stddev)):
            if value is None:
                self._lib.feat_remove(feats, key)
            else:
                self._lib.feat_set_float(feats, key, value)
        self._lib.feat_set_float(feats, b"duration_stretch", speaker.stretch)
        return voice

    def synthesize(self, text: str, speaker: Speaker) -> Synthesis:
        """Speak ``text``; words are its whitespace tokens (punctuation stripped, lowercased)."""
        voice = self._configure(speaker, text)
        utt = self._lib.flite_synth_text(text.encode("utf-8"), voice)
        try:
            return self._collect(utt, speaker, with_words=True, what=text)
        finally:
            self._lib.delete_utterance(utt)

    def synthesize_phones(self, phones: Sequence[str], speaker: Speaker) -> Synthesis:
        """Speak a phone string (ARPAbet-39, SIL for pauses) with no word structure (for non-words)."""
        bad = [p for p in phones if p not in INVENTORY]
        if bad:
            raise AlignmentError(f"phones {' '.join(phones)}: {' '.join(bad)} not in the ARPAbet-39 + SIL inventory")
        flite_phones = " ".join("pau" if p == SIL else p.lower() for p in phones)
        voice = self._configure(speaker, flite_phones)
        utt = self._lib.flite_synth_phones(flite_phones.encode("ascii"), voice)
        try:
            return self._collect(utt, speaker, with_words=False, what=flite_phones)
        finally:
            self._lib.delete_utterance(utt)

    def text_phones(self, text: str, speaker: Speaker) -> tuple[str, ...]:
        """The phones (pauses as SIL) ``synthesize`` would give ``text``, from flite's front end
        alone (tokens, part-of-speech tags, lexicon, pauses, post-lexical rules): no audio is made,
        so this costs well under a millisecond. Homographs are resolved as in synthesis
        (``the record`` R EH K ER D, ``record the`` R IH K AO R D)."""
        voice = self.voice(speaker.voice)
        utt = self._lib.new_utterance()
        self._lib.utt_set_input_text(utt, text.encode("utf-8"))
        # flite's own text-to-segments method, then the voice's post-lexical rules ("the" before a vowel).
        utt = self._lib.flite_do_synth(utt, voice, ctypes.cast(self._lib.utt_synth_text2segs, c_void_p))
        if not utt:
            raise AlignmentError(f"flite: no phones for {text!r}")
        try:
            postlex = (_SynthModule * 2)(_SynthModule(b"postlex_func", None), _SynthModule(None, None))
            utt = self._lib.apply_synth_method(utt, postlex)
            phones = []
            seg = self._lib.relation_head(self._lib.utt_relation(utt, b"Segment"))
            while seg:
                phones.append(normalize_phone(self._lib.item_feat_string(seg, b"name").decode()))
                seg = self._lib.item_next(seg)
        finally:
            self._lib.delete_utterance(utt)
        return tuple(phones)

    def pronounce(self, word: str) -> tuple[str, ...]:
        """The lexicon's (or letter-to-sound rules') ARPAbet-39 pronunciation of a word."""
        val = self._lib.lex_lookup(self._lexicon, word.lower().encode("utf-8"), None, None)
        phones = []
        node = val
        while node:
            phones.append(normalize_phone(self._lib.val_string(self._lib.val_car(node)).decode()))
            node = self._lib.val_cdr(node)
        self._lib.delete_val(val)
        return tuple(phones)

    def _collect(self, utt: int, speaker: Speaker, *, with_words: bool, what: str) -> Synthesis:
        wave = self._lib.utt_wave(utt).contents
        if wave.sample_rate != SAMPLE_RATE or wave.num_channels != 1:
            raise MissingToolError(
                f"flite voice {speaker.voice}: makes {wave.sample_rate} Hz x {wave.num_channels} audio, "
                f"expected {SAMPLE_RATE} Hz mono; use the slt, rms or awb voice"
            )
        samples = np.ctypeslib.as_array(wave.samples, shape=(wave.num_samples,)).copy()
        segments = []  # (end, phone, token id or None, token name)
        seg = self._lib.relation_head(self._lib.utt_relation(utt, b"Segment"))
        while seg:
            name = self._lib.item_feat_string(seg, b"name").decode()
            end = float(self._lib.item_feat_float(seg, b"end"))
            token = self._lib.path_to_item(seg, _TOKEN_PATH) if with_words and name != "pau" else None
            token_name = self._lib.item_feat_string(token, b"name").decode() if token else ""
            segments.append((end, normalize_phone(name), token, token_name))
            seg = self._lib.item_next(seg)
        if not segments:
            raise AlignmentError(f"flite: no phones for {what!r}")
        unknown = sorted({p for _, p, _, _ in segments if p not in INVENTORY})
        if unknown:
            raise AlignmentError(f"flite: phones {' '.join(unknown)} of {what!r} are outside ARPAbet-39 + SIL")

        scale = 1.0
        if speaker.warp != 1.0:
            from scipy.signal import resample_poly  # scipy.signal takes ~1 s to import: only when used

            ratio = speaker.warp_ratio
            samples = resample_poly(samples.astype(np.float32), ratio.numerator, ratio.denominator)
            samples = np.clip(np.round(samples), -32768, 32767).astype(np.int16)
            scale = ratio.numerator / ratio.denominator
        total = len(samples) / SAMPLE_RATE

        phones: list[tuple[float, float, str]] = []
        words: list[tuple[float, float, str]] = []
        start, open_token = 0.0, None
        for i, (end, phone, token, token_name) in enumerate(segments):
            # Times are rounded to the sample; the last phone absorbs the (< 5 ms) rounding at the end.
            end = total if i == len(segments) - 1 else min(round(end * scale * SAMPLE_RATE) / SAMPLE_RATE, total)
            if end <= start:
                continue
            if phones and phones[-1][2] == phone == SIL:
                phones[-1] = (phones[-1][0], end, SIL)
            else:
                phones.append((start, end, phone))
            if token and token == open_token:
                words[-1] = (words[-1][0], end, words[-1][2])
            elif token:
                words.append((start, end, token_name.lower()))
            open_token = token
            start = end
        return Synthesis(samples=samples, words=tuple(words), phones=tuple(phones))
