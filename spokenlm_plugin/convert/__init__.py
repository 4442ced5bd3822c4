"""HuBERT weights of other layouts (torchaudio, Hugging Face) -> fairseq checkpoints
(``spokenlm convert-hubert``)."""
