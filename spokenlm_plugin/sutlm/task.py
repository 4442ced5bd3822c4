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

from fairseq.data import ConcatDataset, Dictionary, ResamplingDataset
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


#: What to do about a data folder or subset that cannot be read, ending the messages below.
_REBUILD = "make the data with 'spokenlm sutlm-data' and train on one of its units-raw / units-spN folders"


def check_data_folder(data: str) -> str:
    """``data/dict.txt``, checked: the folder and a readable fairseq dictionary exist (fairseq
    itself fails with a traceback). Returns its path."""
    path = os.path.join(data, "dict.txt")
    if not os.path.isdir(data):
        raise FeatureError(f"{data}: data folder not found; {_REBUILD}")
    if not os.path.isfile(path):
        # the usual slip: sutlm-data's output folder instead of a joint-LM folder inside it
        inside = sorted(d for d in os.listdir(data) if d.startswith("units-")
                        and os.path.isfile(os.path.join(data, d, "dict.txt")))
        hint = f"train on a joint-LM folder inside it, e.g. {os.path.join(data, inside[0])}" if inside else _REBUILD
        raise DictionaryError(f"{path}: dictionary not found; {hint}")
    try:
        Dictionary.load(path)
    except (ValueError, RuntimeError) as e:  # fairseq's "Incorrect dictionary format" / "Duplicate word"
        raise DictionaryError(f"{path}: not a fairseq dictionary ({str(e).splitlines()[0][:120]}); {_REBUILD}") from None
    return path


def check_subset(data: str, name: str) -> None:
    """Refuse a subset fairseq cannot load: an empty ``.bin`` (numpy cannot map 0 bytes) or no ``.idx``."""
    prefix = os.path.join(data, name)
    if not os.path.isfile(f"{prefix}.idx"):
        raise FeatureError(f"{prefix}.idx: index of subset {name!r} not found beside its .bin; {_REBUILD}")
    if os.path.getsize(f"{prefix}.bin") == 0 or os.path.getsize(f"{prefix}.idx") == 0:
        empty = f"{prefix}.bin" if os.path.getsize(f"{prefix}.bin") == 0 else f"{prefix}.idx"
        raise FeatureError(f"{empty}: empty subset {name!r} (0 bytes: no sequence); rebuild the data with 'spokenlm "
                           "sutlm-data', or leave the subset out (its kind's ratio 0, --paired-kinds, --valid-subset)")


@register_task("speech_text_lm", dataclass=SpeechTextLMConfig)
class SpeechTextLMTask(LanguageModelingTask):
    """fairseq's language_modeling task reading the SUTLM subsets with mixing ratios."""

    @classmethod
    def setup_task(cls, args, **kwargs):
        kind_ratios(args)  # refuse bad ratios before any data is read
        path = check_data_folder(args.data.split(os.pathsep)[0])
        task = super().setup_task(args, **kwargs)
        missing = [m for m in MARKERS if task.dictionary.index(m) == task.dictionary.unk()]
        if missing:
            raise DictionaryError(f"{path}: the modality marker(s) {' '.join(missing)} are missing from the dictionary; "
                                  "make the data with 'spokenlm sutlm-data'")
        return task

    def _load_one(self, name: str, epoch: int, combine: bool, data: str):
        check_subset(data, name)
        super().load_dataset(name, epoch=epoch, combine=combine)
        return self.datasets.pop(name)

    def load_dataset(self, split: str, epoch=1, combine=False, **kwargs):
        data = self.args.data.split(os.pathsep)[(epoch - 1) % len(self.args.data.split(os.pathsep))]
        if os.path.isfile(os.path.join(data, f"{split}.bin")):
            check_subset(data, split)
            return super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        ratios = kind_ratios(self.args)
        parts = {}
        for kind in ratios:
            if not os.path.isfile(os.path.join(data, f"{split}_{kind}.bin")):
                raise FeatureError(f"{os.path.join(data, f'{split}_{kind}.bin')}: subset not found (kind {kind!r} has "
                                   f"a ratio > 0); make it with 'spokenlm sutlm-data' or set its ratio to 0")
            parts[kind] = self._load_one(f"{split}_{kind}", epoch, combine, data)
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
