"""The ``speech_text_lm`` fairseq task: one LM over a mixture of speech-only, speech-text and text-only data.

A data folder from ``spokenlm sutlm-data`` holds ``{split}_{kind}.bin`` per sequence kind. Loading
a split that has no ``{split}.bin`` of its own (``train``) builds the mixture: each kind is
fairseq's usual LM dataset (``TokenBlockDataset`` + ``MonolingualDataset``, one sequence per
sample with ``--sample-break-mode eos``), drawn with replacement by fairseq's ``ResamplingDataset``
so that, per epoch, each share gets its ratio of the tokens of the kinds in use, and the kinds are
joined by ``ConcatDataset``. Shares (the paper's default 1/3 each): ``--speech-ratio`` (speech-only),
``--paired-ratio`` (speech-text: split equally among ``--paired-kinds``, e.g. ``cst,tsc`` or
``cst,tsc,ast``), ``--text-ratio`` (text-only). They must sum to one. Any other split with its own
``.bin`` (``valid_speech``, ``valid_ast``, ``test_cst``, ...) loads as is: give
``--valid-subset valid_speech,valid_text,...`` for a validation loss per subset.

Epoch size: the tokens of the kinds in use, so one epoch reads about as much as the data holds;
the draws change every epoch (``ResamplingDataset.set_epoch``).
"""

# No ``from __future__ import annotations``: fairseq reads the config fields' types at runtime.
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from fairseq.data import ConcatDataset, ResamplingDataset
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from ..core.errors import ConfigError, DictionaryError, FeatureError
from .tokens import MARKERS

logger = logging.getLogger(__name__)

SINGLE_KINDS = {"speech": "speech_ratio", "text": "text_ratio"}
PAIRED = ("cst", "tsc", "ast")


@dataclass
class SpeechTextLMConfig(LanguageModelingConfig):
    speech_ratio: float = field(default=1 / 3, metadata={"help": "share of speech-only tokens in a training epoch"})
    paired_ratio: float = field(default=1 / 3, metadata={
        "help": "share of speech-text tokens (CST / reverse / AST), split equally among --paired-kinds"})
    text_ratio: float = field(default=1 / 3, metadata={"help": "share of text-only tokens in a training epoch"})
    paired_kinds: str = field(default="cst,tsc,ast", metadata={
        "help": "comma-separated speech-text kinds of the paired share: cst (speech then text), tsc (text then "
                "speech), ast (alternating)"})
    mix_seed: int = field(default=1, metadata={"help": "seed of the resampling draws"})


def kind_ratios(cfg: SpeechTextLMConfig) -> dict[str, float]:
    """The share of every kind in use (ratio > 0), checked."""
    ratios = {"speech": cfg.speech_ratio, "paired": cfg.paired_ratio, "text": cfg.text_ratio}
    if any(r < 0 for r in ratios.values()) or abs(sum(ratios.values()) - 1.0) > 1e-3:
        raise ConfigError(
            f"mixing ratios --speech-ratio {cfg.speech_ratio:g} --paired-ratio {cfg.paired_ratio:g} "
            f"--text-ratio {cfg.text_ratio:g} sum to {sum(ratios.values()):.4f}: they must be >= 0 and sum to 1")
    kinds = [k for k in str(cfg.paired_kinds).split(",") if k]
    unknown = [k for k in kinds if k not in PAIRED]
    if unknown or len(set(kinds)) != len(kinds):
        raise ConfigError(f"--paired-kinds {cfg.paired_kinds}: distinct kinds among {','.join(PAIRED)}")
    if cfg.paired_ratio > 0 and not kinds:
        raise ConfigError("--paired-ratio > 0 needs at least one --paired-kinds")
    out = {k: ratios[k] for k in SINGLE_KINDS if ratios[k] > 0}
    out |= {k: cfg.paired_ratio / len(kinds) for k in kinds if cfg.paired_ratio > 0}
    return out


@register_task("speech_text_lm", dataclass=SpeechTextLMConfig)
class SpeechTextLMTask(LanguageModelingTask):
    """fairseq's language_modeling task reading the SUTLM subsets with mixing ratios."""

    @classmethod
    def setup_task(cls, args, **kwargs):
        kind_ratios(args)  # refuse bad ratios before any data is read
        task = super().setup_task(args, **kwargs)
        path = os.path.join(args.data.split(os.pathsep)[0], "dict.txt")
        missing = [m for m in MARKERS if task.dictionary.index(m) == task.dictionary.unk()]
        if missing:
            raise DictionaryError(f"{path}: the modality marker(s) {' '.join(missing)} are missing from the dictionary; "
                                  "make the data with 'spokenlm sutlm-data'")
        return task

    def _load_one(self, name: str, epoch: int, combine: bool):
        super().load_dataset(name, epoch=epoch, combine=combine)
        return self.datasets.pop(name)

    def load_dataset(self, split: str, epoch=1, combine=False, **kwargs):
        data = self.args.data.split(os.pathsep)[(epoch - 1) % len(self.args.data.split(os.pathsep))]
        if os.path.isfile(os.path.join(data, f"{split}.bin")):
            return super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        ratios = kind_ratios(self.args)
        parts = {}
        for kind in ratios:
            if not os.path.isfile(os.path.join(data, f"{split}_{kind}.bin")):
                raise FeatureError(f"{os.path.join(data, f'{split}_{kind}.bin')}: subset not found (kind {kind!r} has "
                                   f"a ratio > 0); make it with 'spokenlm sutlm-data' or set its ratio to 0")
            parts[kind] = self._load_one(f"{split}_{kind}", epoch, combine)
        total = sum(float(np.sum(d.sizes)) for d in parts.values())
        mixed = []
        for i, (kind, ds) in enumerate(parts.items()):
            mean_len = float(np.mean(ds.sizes))
            draws = ratios[kind] * total / mean_len
            mixed.append(ResamplingDataset(ds, replace=True, size_ratio=draws / len(ds), seed=self.args.mix_seed + i,
                                           epoch=epoch))
            logger.info("%s_%s: %d sequences, %d drawn per epoch (%.1f %% of tokens)", split, kind, len(ds),
                        mixed[-1].actual_size, 100 * ratios[kind])
        self.datasets[split] = ConcatDataset(mixed)
