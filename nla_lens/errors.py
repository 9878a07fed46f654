"""The one exception hierarchy of nla_lens.

Every error the library raises on bad input is an ``NLALensError``; the subclasses also derive
from the builtin a Python user would catch (``ValueError``, ``KeyError``, ...), so
``except ValueError`` keeps working. Messages say what is wrong and how to fix it. Warnings about
results that ran but may mislead are ``NLALensWarning`` subclasses (``UserWarning``).
"""

from __future__ import annotations


class NLALensError(Exception):
    """Base class of every error nla_lens raises on purpose."""


class HookNameError(NLALensError, KeyError):
    """A hook name that the model does not have, or a layer out of range."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class InputError(NLALensError, ValueError):
    """Bad user input: empty text lists, non-string items, wrong shapes, NaNs."""


class ShapeError(InputError):
    """A tensor whose shape does not match what the model or checkpoint expects."""


class SubjectLoadError(NLALensError, RuntimeError):
    """The subject model (or the embedded default) could not be loaded."""


class CacheError(NLALensError, RuntimeError):
    """A cache folder is unusable (and could not be rebuilt)."""


class DatasetError(NLALensError, ValueError):
    """An activation dataset on disk is missing files or is inconsistent."""


class CheckpointError(NLALensError, ValueError):
    """An NLA checkpoint is missing files, is inconsistent, or is in a refused format."""


class MarkerError(NLALensError, ValueError):
    """The injection marker is missing, ambiguous, or does not match the vectors to inject.

    Raised when the number of valid marker positions (marker token with the recorded left and
    right neighbours) differs from the number of vectors, or when a tokenizer offers no usable
    marker token. A silent miss here would make the AV read a literal marker character instead
    of the vector, so it is always an error.
    """


class TeacherError(NLALensError, RuntimeError):
    """A warm-start teacher could not produce explanations (no API key, an endpoint that keeps
    failing, a malformed reply, or a teacher returning the wrong number of explanations)."""


class MissingDependencyError(NLALensError, ImportError):
    """An optional package, or a class of another TransformerLens line, that the call needs is not
    installed (SAELens, ``HookedTransformer`` on TransformerLens 4.x, nnsight, ...). The message
    names the extra or the install command, and the route that works without it."""


class SAEInterfaceError(InputError):
    """An SAE object lacks the small interface nla_lens reads (see :mod:`nla_lens.sae`)."""


class NLALensWarning(UserWarning):
    """Base class of the warnings nla_lens issues about a result that ran but may mislead."""


class FluencyWarning(NLALensWarning):
    """Steered text is no longer fluent (see :mod:`nla_lens.analysis.fluency` for the thresholds):
    a steering gain measured on garbage says little; lower the coefficient."""


class NormRangeWarning(NLALensWarning):
    """A vector given to an NLA has an L2 norm far outside the norms it was trained on (see
    :mod:`nla_lens.norm_range`): it probably comes from another layer, hook or model."""
