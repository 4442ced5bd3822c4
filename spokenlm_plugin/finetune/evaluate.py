"""Frame accuracy and greedy PER of a fine-tuned ``hubert_frame_cls`` checkpoint on a labelled split.

The checkpoint is loaded with fairseq's ``load_model_ensemble_and_task`` (self-contained: no
pretrained file needed); the split is read by the ``phoneme_frame_cls`` task with the same checks
as in training. Masking and dropout are off (eval mode). Utterances are scored one at a time: HuBERT's
first CNN layer normalises over the whole (padded) input, so padding would make a score depend on
the batching (``fairseq-validate --batch-size 1`` gives the same numbers).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.checkpoints import model_name, read_checkpoint
from ..core.errors import CheckpointError
from ..core.phones import SIL
from ..core.phone_metrics import PhoneScores


def load_frame_classifier(checkpoint: str | os.PathLike, **arg_overrides):
    """``(model, task)`` of a ``hubert_frame_cls`` checkpoint, the model in eval mode on CPU."""
    checkpoint = Path(checkpoint)
    hint = "give a checkpoint written by fairseq-train with --arch hubert_frame_cls (examples/finetune)"
    state = read_checkpoint(checkpoint, hint=hint, arg_overrides=arg_overrides)
    if model_name(state) != "hubert_frame_cls":
        raise CheckpointError(f"{checkpoint}: a {model_name(state)!r} model, not a hubert_frame_cls fine-tuned checkpoint")
    from fairseq import checkpoint_utils  # after read_checkpoint has registered the plugin

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], state=state)
    return models[0].eval(), task


@torch.inference_mode()
def evaluate_phones(
    checkpoint: str | Path,
    *,
    data: str | Path,
    split: str,
    label_dir: str | Path | None = None,
    keep_sil: bool = False,
    switch_prob: float | None = None,
) -> PhoneScores:
    """Scores of ``checkpoint`` on ``{data}/{split}.tsv`` with labels ``{label_dir}/{split}.phn``
    (with ``switch_prob``, also the PER of Viterbi-smoothed decoding: ``per_smoothed``)."""
    from .task import trim_to_labels

    model, task = load_frame_classifier(
        checkpoint, data=str(Path(data).resolve()), label_dir=str(Path(label_dir or data).resolve())
    )
    task.load_dataset(split)
    batches = task.get_batch_iterator(task.dataset(split), max_sentences=1).next_epoch_itr(shuffle=False)
    sil = task.phones.index(SIL) if SIL in task.phones and not keep_sil else None
    scores = PhoneScores()
    for sample in batches:
        out = model(**sample["net_input"])
        logits, target, mask = trim_to_labels(out["logits"], out["padding_mask"], sample["target"])
        scores.add(logits.argmax(-1), target, mask, sil=sil,
                   log_probs=None if switch_prob is None else logits.double().log_softmax(-1),
                   switch_prob=switch_prob)
    return scores
