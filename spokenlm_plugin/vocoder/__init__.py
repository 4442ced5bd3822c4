"""Units back to speech: the code HiFi-GAN unit vocoder (facebookresearch/speech-resynthesis), in
fairseq's own checkpoint format, and the resynthesis metrics of Poli, Chemla & Dupoux 2024 (MCD, F0, PER).

Modules, in data-flow order: :mod:`.config` (generator shape = fairseq's vocoder JSON, training
recipe), :mod:`.model` (fairseq's ``CodeGenerator`` + multi-period / multi-scale discriminators),
:mod:`.losses`, :mod:`.data` (units + audio segments), :mod:`.checkpoint` (fairseq-loadable files),
:mod:`.train` (``spokenlm vocoder-train``), :mod:`.synth` (``spokenlm vocoder-synth``),
:mod:`.metrics` and :mod:`.evaluate` (``spokenlm resynth-eval``).
"""
