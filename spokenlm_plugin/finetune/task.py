"""Task ``phoneme_frame_cls``: frame-level phone classification on 50 Hz labels.

Reads a fairseq manifest ``{data}/{split}.tsv``, frame labels ``{label_dir}/{split}.phn`` and the
dictionary ``{label_dir}/dict.phn.txt``. Whole utterances are padded to the longest of their batch
(never cropped) and batched by length (``--max-tokens`` counts audio samples). The labels are
checked against the manifest when a split is loaded, so a mismatch stops the run before training.

Classes are the dictionary's symbols without fairseq's four special ones (``<s> <pad> </s> <unk>``),
in dictionary order: class ``c`` is ``task.phones[c]``.
"""

# No `from __future__ import annotations`: fairseq reads config field types at run time.
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from fairseq.data import AddTargetDataset, Dictionary, FileAudioDataset
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..core.audio import audio_info
from ..core.errors import AudioFormatError, ManifestError
from ..core.io import read_manifest
from ..data.frame_labels import load_dictionary, read_frame_labels
from .pretrained import keep_pretrained_cfg

logger = logging.getLogger(__name__)

#: Target value of padding frames (the default ``ignore_index`` of ``F.cross_entropy``).
PAD_LABEL = -100


@dataclass
class PhonemeFrameClsConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "folder of the fairseq manifests {split}.tsv"})
    label_dir: Optional[str] = field(
        default=None, metadata={"help": "folder of {split}.{labels} and dict.{labels}.txt; default: data"}
    )
    labels: str = field(default="phn", metadata={"help": "extension of the 50 Hz frame label files"})
    sample_rate: int = field(default=16_000, metadata={"help": "audio sample rate (files must already have it)"})
    normalize: bool = field(
        default=False,
        metadata={"help": "normalize each waveform to zero mean, unit variance (must match the pretrained model)"},
    )
    label_tolerance: int = field(
        default=1,
        metadata={"help": "largest accepted difference, in frames, between a label line and the CNN output"},
    )
    speed_perturb: float = field(
        default=0.0,
        metadata={"help": "train-time speed perturbation: each utterance of --perturb-split is resampled by a "
                  "factor drawn from [1 - x, 1 + x] (steps of 0.01) at every epoch, so tempo, pitch and formants "
                  "move together as with another speaker; its frame labels are stretched to match. 0: off"},
    )
    perturb_split: str = field(default="train", metadata={"help": "the split that --speed-perturb applies to"})
    seed: int = field(default=II("common.seed"), metadata={"help": "seed of the perturbation draws"})


def trim_to_labels(
    logits: torch.Tensor, padding_mask: torch.Tensor | None, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut logits ``(B, T, C)`` and targets ``(B, L)`` to their common length and return the mask
    of frames that carry a label and are not audio padding."""
    length = min(logits.size(1), target.size(1))
    logits, target = logits[:, :length], target[:, :length]
    mask = target != PAD_LABEL
    if padding_mask is not None:
        mask &= ~padding_mask[:, :length]
    return logits, target, mask


def check_split_audio(manifest_path: Path, *, sample_rate: int) -> None:
    """Check every audio file of a split before training: readable, complete, at ``sample_rate``,
    as long as the manifest says (its frame labels were checked against that length).

    fairseq's audio datasets open a file only when it is batched, and fail in a traceback
    ("sample rate: 8000, need 16000", "Failed to load ..." after three retries). The check reads
    each header and last block (:func:`audio_info`): about a millisecond a file.
    """
    manifest = read_manifest(manifest_path)
    for row in manifest.rows:
        path = manifest.path(row)
        if not path.is_file():
            raise ManifestError(f"{manifest_path}: audio file {path} does not exist; check the manifest's root line")
        info = audio_info(path, skip_bad=False)
        if info.sample_rate != sample_rate:
            raise AudioFormatError(
                f"{path}: sample rate {info.sample_rate} Hz, the task reads {sample_rate} Hz (--sample-rate); "
                "write 16 kHz copies with 'spokenlm manifest --resample-to-dir DIR' and train on that manifest"
            )
        if info.num_samples != row.num_samples:
            raise ManifestError(
                f"{path}: {info.num_samples} samples but {manifest_path} says {row.num_samples}; the file changed "
                "since the manifest was made: make the manifest (and the labels) again"
            )


def _as_long(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(label.astype(np.int64))


def speed_perturb(
    wave: torch.Tensor, labels: np.ndarray, factor: float, *, sample_rate: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Play ``wave`` ``factor`` times faster (resampling: pitch and formants scale by ``factor``) and
    stretch its 50 Hz ``labels`` to the new duration: new frame ``j`` takes the label of the old
    frame under its centre, ``floor((j + 0.5) * factor)``."""
    import torchaudio.functional as AF

    source_rate = int(round(sample_rate * factor))
    if source_rate == sample_rate:
        return wave, labels
    out = AF.resample(wave, orig_freq=source_rate, new_freq=sample_rate)
    n = max(1, int(round(len(labels) / factor)))
    old = np.minimum(np.floor((np.arange(n) + 0.5) * factor).astype(np.int64), len(labels) - 1)
    return out, labels[old]


class FrameLabelDataset(AddTargetDataset):
    """fairseq's ``AddTargetDataset`` holding labels already encoded (arrays, not text lines), with
    optional speed perturbation (:func:`speed_perturb`), drawn per (seed, epoch, utterance)."""

    def __init__(self, *args, perturb: float = 0.0, sample_rate: int = 16_000, seed: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.perturb, self.sample_rate, self.seed, self.epoch = perturb, sample_rate, seed, 1

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        if self.perturb <= 0:
            return super().__getitem__(index)
        item = self.dataset[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        factor = 1.0 + round(float(rng.uniform(-self.perturb, self.perturb)), 2)
        item["source"], label = speed_perturb(item["source"], self.labels[index], factor,
                                              sample_rate=self.sample_rate)
        item["label"] = label if self.process_label is None else self.process_label(label)
        return item

    def get_label(self, index: int, process_fn=None):
        label = self.labels[index]
        return label if process_fn is None else process_fn(label)

    def size(self, index: int) -> int:
        # Frame labels follow the audio, whose length in samples is the size (as --max-tokens counts).
        return self.dataset.size(index)


@register_task("phoneme_frame_cls", dataclass=PhonemeFrameClsConfig)
class PhonemeFrameClsTask(FairseqTask):
    cfg: PhonemeFrameClsConfig

    def __init__(self, cfg: PhonemeFrameClsConfig) -> None:
        super().__init__(cfg)
        # A state factory: the dictionary is saved in the checkpoint's task state, so a
        # fine-tuned model reloads without the label folder.
        self.state.add_factory("target_dictionary", self._load_dictionary)

    @classmethod
    def setup_task(cls, cfg: PhonemeFrameClsConfig, **kwargs) -> "PhonemeFrameClsTask":
        return cls(cfg)

    @property
    def label_dir(self) -> Path:
        return Path(self.cfg.label_dir or self.cfg.data)

    @property
    def dictionary_path(self) -> Path:
        return self.label_dir / f"dict.{self.cfg.labels}.txt"

    def _load_dictionary(self) -> Dictionary:
        return load_dictionary(self.dictionary_path)

    @property
    def source_dictionary(self) -> None:
        return None

    @property
    def target_dictionary(self) -> Dictionary:
        return self.state.target_dictionary

    @property
    def phones(self) -> tuple[str, ...]:
        """The class symbols, in class order."""
        d = self.target_dictionary
        return tuple(d.symbols[d.nspecial :])

    def load_dataset(self, split: str, **kwargs) -> None:
        manifest = Path(self.cfg.data) / f"{split}.tsv"
        labels = read_frame_labels(
            manifest,
            self.label_dir / f"{split}.{self.cfg.labels}",
            phones=self.phones,
            dict_path=self.dictionary_path,
            tolerance=self.cfg.label_tolerance,
        )
        check_split_audio(manifest, sample_rate=self.cfg.sample_rate)
        audio = FileAudioDataset(
            str(manifest),
            sample_rate=self.cfg.sample_rate,
            pad=True,  # pad to the longest utterance of the batch; max_sample_size=None: never crop
            normalize=self.cfg.normalize,
            min_sample_size=0,
        )
        self.datasets[split] = FrameLabelDataset(
            audio,
            labels,
            pad=PAD_LABEL,
            eos=PAD_LABEL,
            batch_targets=True,
            process_label=_as_long,
            label_len_fn=len,
            perturb=self.cfg.speed_perturb if split == self.cfg.perturb_split else 0.0,
            sample_rate=self.cfg.sample_rate,
            seed=self.cfg.seed,
        )
        logger.info(f"{split}: {len(labels)} utterances, {sum(len(x) for x in labels)} label frames")

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        keep_pretrained_cfg(cfg, model)
        return model

    def max_positions(self) -> None:
        return None
