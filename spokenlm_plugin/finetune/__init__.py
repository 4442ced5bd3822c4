"""Phoneme fine-tuning of HuBERT (paper 1's core method) as fairseq components, and the small
pretrained HuBERT of the demo.

- :mod:`.task` ``phoneme_frame_cls``, :mod:`.model` ``hubert_frame_cls``, :mod:`.criterion`
  ``frame_phoneme_ce``: frame-level phone classification on 50 Hz labels;
- :mod:`.ctc` ``phoneme_ctc`` + ``hubert_phone_ctc``: the CTC variant, with fairseq's ``ctc`` criterion;
- :mod:`.pretrained` (reading HuBERT checkpoints, self-contained rebuilds), :mod:`.labels`
  (label checks), :mod:`.metrics` (frame accuracy, greedy PER), :mod:`.evaluate`;
- :mod:`.pretrain` (``spokenlm pretrain-small``, with :mod:`.mfcc` targets) and :mod:`.runner`
  (fairseq CLIs as subprocesses);
- :mod:`.convert`: HuBERT weights of other layouts -> fairseq checkpoint.
"""
