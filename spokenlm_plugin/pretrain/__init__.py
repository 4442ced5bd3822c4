"""Pretraining a small HuBERT on unlabelled synthetic speech (``spokenlm pretrain-small``), with MFCC
and feature-cluster targets as in fairseq examples/hubert."""
