"""Criterion ``frame_phoneme_ce``: frame-level cross-entropy over labelled, non-padding frames.

Logs the loss (base 2, per frame) and frame accuracy; on validation also the greedy phone error
rate (see :mod:`spokenlm_plugin.core.phone_metrics` for the decoding and the SIL convention).
"""

# No `from __future__ import annotations`: fairseq reads config field types at run time.
import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from ..core.phones import SIL
from ..core.phone_metrics import PhoneScores
from .task import PAD_LABEL, trim_to_labels


@dataclass
class FramePhonemeCeConfig(FairseqDataclass):
    per_on_valid: bool = field(
        default=True, metadata={"help": "compute the greedy phone error rate on validation (slower)"}
    )
    per_keeps_sil: bool = field(
        default=False, metadata={"help": "keep SIL in the PER hypothesis and reference (default: drop it)"}
    )


@register_criterion("frame_phoneme_ce", dataclass=FramePhonemeCeConfig)
class FramePhonemeCrossEntropy(FairseqCriterion):
    def __init__(self, cfg: FramePhonemeCeConfig, task) -> None:
        super().__init__(task)
        self.per_on_valid = cfg.per_on_valid
        phones = task.phones
        self.sil = phones.index(SIL) if SIL in phones and not cfg.per_keeps_sil else None

    def forward(self, model, sample, reduce: bool = True):
        net_output = model(**sample["net_input"])
        logits, target, mask = trim_to_labels(net_output["logits"], net_output["padding_mask"], sample["target"])
        target = target.masked_fill(~mask, PAD_LABEL)
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=PAD_LABEL, reduction="sum"
        )
        frames = int(mask.sum())
        predicted = logits.argmax(-1)
        logging_output = {
            "loss": loss.item(),
            "ntokens": frames,
            "nsentences": sample["id"].numel(),
            "sample_size": frames,
            "n_correct": int(((predicted == target) & mask).sum()),
        }
        if not model.training and self.per_on_valid:
            scores = PhoneScores()
            scores.add(predicted, target, mask, sil=self.sil)
            logging_output["phone_edits"] = scores.edits
            logging_output["ref_phones"] = scores.ref_phones
        return loss, frames, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key: str) -> float:
            return sum(log.get(key, 0) for log in logging_outputs)

        frames = total("sample_size")
        metrics.log_scalar("loss", total("loss") / max(frames, 1) / math.log(2), frames, round=3)
        metrics.log_scalar("_n_correct", total("n_correct"))
        metrics.log_scalar("_frames", frames)
        metrics.log_derived(
            "accuracy",
            lambda meters: meters["_n_correct"].sum / meters["_frames"].sum if meters["_frames"].sum else float("nan"),
        )
        if any("ref_phones" in log for log in logging_outputs):
            metrics.log_scalar("_phone_edits", total("phone_edits"))
            metrics.log_scalar("_ref_phones", total("ref_phones"))
            metrics.log_derived(
                "per",
                lambda meters: meters["_phone_edits"].sum / meters["_ref_phones"].sum
                if meters["_ref_phones"].sum
                else float("nan"),
            )

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
