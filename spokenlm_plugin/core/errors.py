"""User-facing errors.

Every mistake a user can make (a bad file, a wrong option) raises a subclass of
:class:`SpokenLMError`. The ``spokenlm`` CLI prints such errors as one line, without a
traceback, and exits with status 2. Messages name the file and say what to do next.
"""

from __future__ import annotations


class SpokenLMError(Exception):
    """Base class of every user error raised by spokenlm_plugin."""


class OutputError(SpokenLMError):
    """An output path cannot be created or written (a folder under a regular file, no permission,
    a read-only or special file system)."""


class AudioFormatError(SpokenLMError):
    """An audio file is unreadable, empty, or not 16 kHz mono."""


class ManifestError(SpokenLMError):
    """A manifest is malformed or names files that do not exist."""


class AlignmentError(SpokenLMError):
    """An alignment file is missing, malformed or names unknown phones."""


class LabelMismatchError(SpokenLMError):
    """Frame labels disagree with the audio (length) or with a manifest (row count)."""


class DictionaryError(SpokenLMError):
    """A symbol (phone, unit) is missing from a dictionary."""


class CheckpointError(SpokenLMError):
    """A checkpoint is missing, unreadable, or not of the expected kind."""


class FeatureError(SpokenLMError):
    """Dumped features are inconsistent (shape, NaN, .npy/.len disagreement)."""


class IncompleteDumpError(FeatureError):
    """A feature dump stopped part-way (its ``.dump.json`` names more rows than its ``.len`` holds)."""


class AbxConditionError(FeatureError):
    """An ABX condition cannot be scored on this item file (e.g. across speaker with one speaker)."""


class ConfigError(SpokenLMError):
    """Options that contradict each other or name something that does not exist."""


class MissingToolError(SpokenLMError):
    """A system library or program (e.g. flite, espeak-ng) is not installed."""


class TrainingError(SpokenLMError):
    """A fairseq tool run as a subprocess (train, validate, preprocess, generate) failed."""
