"""Primitives every stage shares: errors, atomic file IO, the phone inventory and frame rate,
audio reading, running fairseq tools, phone-recognition metrics."""
