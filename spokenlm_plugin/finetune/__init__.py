"""Phoneme fine-tuning of HuBERT (the core method of Poli, Chemla & Dupoux 2024) as fairseq components.

- :mod:`.task` ``phoneme_frame_cls``, :mod:`.model` ``hubert_frame_cls``, :mod:`.criterion`
  ``frame_phoneme_ce``: frame-level phone classification on 50 Hz labels;
- :mod:`.ctc` ``phoneme_ctc`` + ``hubert_phone_ctc``: the CTC variant, with fairseq's ``ctc`` criterion;
- :mod:`.pretrained` (reading HuBERT checkpoints, self-contained rebuilds), :mod:`.evaluate`.

Label files are checked by :mod:`spokenlm_plugin.data.frame_labels`; the metrics (frame accuracy,
greedy PER) are :mod:`spokenlm_plugin.core.phone_metrics`. The base model comes from
:mod:`spokenlm_plugin.pretrain` or :mod:`spokenlm_plugin.convert`.
"""
