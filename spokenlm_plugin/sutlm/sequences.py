"""The four sequence kinds of the joint LM (the paper's Table 1), as joint tokens.

- speech-only ``[SPEECH] u ...``; text-only ``[TEXT] w ...``;
- CST, concatenated speech-text: ``[SPEECH] u ... [TEXT] w ...`` (``cst``) and the reverse order
  (``tsc``), an utterance's units and its own transcript;
- AST, alternating speech-text: the utterance cut at word boundaries into spans, each span in one
  modality, a marker at every modality change (and at the start).

AST defaults (:class:`AstConfig`): spans of 2-5 words, a switch at every span boundary, first span's
modality drawn 50/50, two renderings per utterance. Why: the corpus' sentences have 6-16 words, so
2-5 word spans give 2-5 spans and nearly every sentence switches at least once; a 2-word span
still holds ~10+ deduplicated units (one-word spans would often be a handful of units and mostly
teach the marker); and a cut near the middle of a sentence, which CRA's prompt / continuation
split uses, is then a common switch point in training. Each rendering is seeded by utterance id
and index, so a rebuild is identical.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Literal, Sequence

from ..core.errors import ConfigError
from .align import AlignedUtterance
from .tokens import MARKER_OF, Modality, Tokenizer

Kind = Literal["speech", "text", "cst", "tsc", "ast"]
KINDS: tuple[Kind, ...] = ("speech", "text", "cst", "tsc", "ast")
#: The speech-text kinds (the share of the mixture that pairs the modalities).
PAIRED_KINDS: tuple[Kind, ...] = ("cst", "tsc", "ast")


@dataclass(frozen=True)
class AstConfig:
    """How AST sequences are cut (see the module docstring for the defaults' reasons)."""

    min_span: int = field(default=2, metadata={"help": "fewest words in an AST span"})
    max_span: int = field(default=5, metadata={"help": "most words in an AST span"})
    switch_prob: float = field(default=1.0, metadata={"help": "probability of a modality switch at each span "
                                                              "boundary (spans without a switch merge)"})
    per_utterance: int = field(default=2, metadata={"help": "AST renderings of each training utterance"})
    seed: int = field(default=0, metadata={"help": "seed of the span draws (with the utterance id)"})

    def check(self) -> None:
        if not 1 <= self.min_span <= self.max_span:
            raise ConfigError(f"AST spans {self.min_span}-{self.max_span}: need 1 <= min <= max")
        if not 0.0 <= self.switch_prob <= 1.0:
            raise ConfigError(f"AST switch probability {self.switch_prob}: must be within [0, 1]")
        if self.per_utterance < 0:
            raise ConfigError(f"AST renderings per utterance {self.per_utterance}: must be >= 0")


Segment = tuple[Modality, list[str]]


def render(segments: Sequence[Segment]) -> list[str]:
    """Joint tokens of segments: a marker wherever the modality changes (and first); empty segments vanish."""
    out: list[str] = []
    current: Modality | None = None
    for modality, tokens in segments:
        if not tokens:
            continue
        if modality != current:
            out.append(MARKER_OF[modality])
            current = modality
        out.extend(tokens)
    return out


class Renderer:
    """Turns aligned utterances into joint tokens with a unit and a text tokenizer."""

    def __init__(self, *, units: Tokenizer, text: Tokenizer) -> None:
        self.units, self.text = units, text

    def segment(self, utt: AlignedUtterance, first: int, last: int, modality: Modality, *, where: str = "") -> Segment:
        """Words ``first .. last - 1`` of ``utt`` in one modality."""
        if modality == "speech":
            return "speech", self.units.encode_units(utt.word_units(first, last), where=where)
        return "text", self.text.encode_words(utt.words[first:last], where=where)

    def kind(self, utt: AlignedUtterance, kind: Kind, *, ast: AstConfig | None = None, index: int = 0,
             where: str = "") -> list[str]:
        n = len(utt.words)
        speech = lambda: self.segment(utt, 0, n, "speech", where=where)  # noqa: E731
        text = lambda: self.segment(utt, 0, n, "text", where=where)  # noqa: E731
        if kind == "speech":
            return render([speech()])
        if kind == "text":
            return render([text()])
        if kind == "cst":
            return render([speech(), text()])
        if kind == "tsc":
            return render([text(), speech()])
        spans = ast_spans(n, ast or AstConfig(), key=f"{utt.utt_id}/{index}")
        return render([self.segment(utt, a, b, m, where=where) for a, b, m in spans])


def ast_spans(n_words: int, cfg: AstConfig, *, key: str) -> list[tuple[int, int, Modality]]:
    """Spans ``(first word, end word, modality)`` tiling ``n_words`` words; adjacent spans of the
    same modality are merged, so consecutive spans always differ in modality."""
    rng = random.Random(zlib.crc32(f"{cfg.seed}/{key}".encode()))
    modality: Modality = rng.choice(("speech", "text"))
    spans: list[tuple[int, int, Modality]] = []
    start = 0
    while start < n_words:
        end = min(n_words, start + rng.randint(cfg.min_span, cfg.max_span))
        if spans and spans[-1][2] == modality:
            spans[-1] = (spans[-1][0], end, modality)
        else:
            spans.append((start, end, modality))
        start = end
        if rng.random() < cfg.switch_prob:
            modality = "text" if modality == "speech" else "speech"
    return spans
