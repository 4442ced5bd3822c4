"""Synthetic aligned speech (flite through libflite): the embedded corpus (``spokenlm synth-corpus``)
and spoken minimal pairs for lexical / syntactic scoring (``spokenlm synth-pairs``)."""
