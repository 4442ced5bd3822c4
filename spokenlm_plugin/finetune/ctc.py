"""The paper's CTC variant, on phone-sequence labels: task ``phoneme_ctc`` and model
``hubert_phone_ctc``, used with fairseq's own ``ctc`` criterion.

The model is fairseq's ``hubert_ctc`` with one missing config field added (its encoder reads
``cfg.autoregressive``, which ``HubertCtcConfig`` does not declare, so fairseq 0.12's ``hubert_ctc``
fails to build). The task is fairseq's ``hubert_pretraining`` in fine-tuning mode
(``fine_tuning: true``, ``pad_audio: true``, ``random_crop: false``, ``single_target: true``, labels
``phnseq``) plus what it lacks for this use:

- the phone dictionary is ``dict.phn.txt`` (shared with the frame labels) rather than
  ``dict.phnseq.txt``; CTC's blank is fairseq's ``<s>`` (index 0);
- labels and the pretrained checkpoint are checked before training (fairseq asserts late or not at all);
- the fine-tuned checkpoint is self-contained: ``hubert_ctc`` keeps the pretrained config
  (``w2v_args``) only in its private copy of the config, and rebuilding the pretrained model needs
  the pretraining label dictionaries, which fairseq reads again from ``w2v_path``. Both are saved
  here (the config in the model config, the dictionaries in the task state), so a reload never
  opens the pretrained file.
"""

# No `from __future__ import annotations`: fairseq reads config field types at run time.
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from fairseq.models import register_model
from fairseq.models.hubert.hubert_asr import HubertCtc, HubertCtcConfig
from fairseq.tasks import register_task
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig, HubertPretrainingTask

from ..core.errors import ConfigError
from ..data.frame_labels import check_sequence_labels, load_dictionary
from .pretrained import check_normalize, keep_pretrained_cfg, load_pretrained
from .task import check_split_audio


@dataclass
class HubertPhoneCtcConfig(HubertCtcConfig):
    autoregressive: bool = field(
        default=False, metadata={"help": "always false: CTC has no decoder (read by fairseq's HubertEncoder)"}
    )


@register_model("hubert_phone_ctc", dataclass=HubertPhoneCtcConfig)
class HubertPhoneCtc(HubertCtc):
    """fairseq's ``hubert_ctc`` (encoder + linear layer to the dictionary, blank = ``<s>``), with the
    read-out interface of ``hubert_frame_cls`` (any layer, and the logits) for ``dump-features``."""

    @property
    def num_layers(self) -> int:
        return len(self.w2v_encoder.w2v_model.encoder.layers)

    def extract_features(self, source, padding_mask=None, *, output_layer: int | None = None):
        layer = self.num_layers if output_layer is None else output_layer
        if not 1 <= layer <= self.num_layers:
            raise ConfigError(f"layer {layer}: the encoder has layers 1..{self.num_layers}")
        return self.w2v_encoder.w2v_model.extract_features(source, padding_mask=padding_mask, mask=False,
                                                           output_layer=layer)

    def forward(self, **kwargs):
        out = self.w2v_encoder(**kwargs)
        # fairseq's encoder output is T x B x C; the read-out takes B x T x C (the ctc criterion reads encoder_out)
        return {**out, "logits": out["encoder_out"].transpose(0, 1)}


@dataclass
class PhonemeCtcConfig(HubertPretrainingConfig):
    fine_tuning: bool = field(default=True, metadata={"help": "always true: this task fine-tunes"})
    labels: List[str] = field(
        default_factory=lambda: ["phnseq"],
        metadata={"help": "extension of the phone-sequence label files (repeats collapsed, no SIL)"},
    )
    dictionary: str = field(
        default="dict.phn.txt", metadata={"help": "phone dictionary file name, in label_dir (default: data)"}
    )
    pad_audio: Optional[bool] = field(
        default=True, metadata={"help": "pad audio to the longest of the batch (never crop)"}
    )
    random_crop: Optional[bool] = field(default=False, metadata={"help": "crop from the start if cropping"})
    single_target: Optional[bool] = field(
        default=True, metadata={"help": "one label set, batched as 'target' (what the ctc criterion reads)"}
    )


@register_task("phoneme_ctc", dataclass=PhonemeCtcConfig)
class PhonemeCtcTask(HubertPretrainingTask):
    cfg: PhonemeCtcConfig

    def __init__(self, cfg: PhonemeCtcConfig) -> None:
        if not cfg.fine_tuning or len(cfg.labels) != 1:
            raise ConfigError(f"task phoneme_ctc: needs fine_tuning=true and one label set, got {list(cfg.labels)}")
        super().__init__(cfg)

    @classmethod
    def setup_task(cls, cfg: PhonemeCtcConfig, **kwargs) -> "PhonemeCtcTask":
        return cls(cfg)

    @property
    def dictionary_path(self) -> Path:
        return Path(self.get_label_dir()) / self.cfg.dictionary

    def load_dictionaries(self):
        return load_dictionary(self.dictionary_path)

    def load_dataset(self, split: str, **kwargs) -> None:
        d = self.target_dictionary
        check_sequence_labels(
            Path(self.cfg.data) / f"{split}.tsv",
            Path(self.get_label_dir()) / f"{split}.{self.cfg.labels[0]}",
            phones=d.symbols[d.nspecial :],
            dict_path=self.dictionary_path,
        )
        check_split_audio(Path(self.cfg.data) / f"{split}.tsv", sample_rate=self.cfg.sample_rate)
        super().load_dataset(split, **kwargs)

    def build_model(self, cfg, from_checkpoint: bool = False):
        if cfg.get("w2v_args") is None:
            pretrained = load_pretrained(cfg.w2v_path)
            check_normalize(pretrained.cfg, normalize=self.cfg.normalize, path=cfg.w2v_path)
            # hubert_ctc rebuilds the pretrained model from these dictionaries; [None] (a converted
            # checkpoint has none) builds it without the pretraining label embeddings.
            self.state.merge_state_dict({"dictionaries": pretrained.task_state.get("dictionaries", [None])})
        model = super().build_model(cfg, from_checkpoint)
        keep_pretrained_cfg(cfg, model)
        return model
