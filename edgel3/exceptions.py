"""Exception and warning classes raised by edgel3.

Every error the library raises on purpose derives from :class:`EdgeL3Error`;
the subclasses also inherit the builtin exception a caller would naturally
catch (``ValueError`` for bad parameters, ``OSError`` for files), so both
``except EdgeL3Error`` and ``except ValueError`` work. 0.2.1's module paths
:mod:`edgel3.edgel3_exceptions` and :mod:`edgel3.edgel3_warnings` re-export
these classes.
"""

__all__ = [
    "EdgeL3Error",
    "ParameterError",
    "AudioError",
    "WeightsError",
    "OutputError",
    "EdgeL3Warning",
    "TruncatedAudioWarning",
]


class EdgeL3Error(Exception):
    """Base class of every error raised by edgel3."""


class ParameterError(EdgeL3Error, ValueError):
    """An argument has an invalid value (model type, hop size, sample rate, ...)."""


class AudioError(EdgeL3Error, ValueError):
    """Audio data or an audio file cannot be used (empty, NaN/Inf, corrupt, ...)."""


class WeightsError(EdgeL3Error, OSError):
    """A weight file is missing, cannot be downloaded, or does not match its model."""


class OutputError(EdgeL3Error, OSError):
    """An output file or directory cannot be written."""


class EdgeL3Warning(UserWarning):
    """Warnings emitted by edgel3 (all-zero audio, audio shorter than one window, ...).

    0.2.1 derived it from ``Warning``; ``UserWarning`` is a subclass of
    ``Warning``, so 0.2.1's filters and ``except``/``pytest.warns(Warning)``
    clauses still match it.
    """


class TruncatedAudioWarning(EdgeL3Warning):
    """An audio file holds less audio than its header declares (an interrupted copy or download).

    What is present is embedded; the message names the file and both lengths
    (seconds and frames). ``strict=True`` (CLI ``--strict``) turns it into an
    :class:`AudioError`.
    """
