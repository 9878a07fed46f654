"""The NLA models: ``ActivationVerbalizer``, ``ActivationReconstructor`` and the ``NLA`` pair."""

from nla_lens.models.nla import NLA
from nla_lens.models.reconstructor import ActivationReconstructor
from nla_lens.models.verbalizer import ActivationVerbalizer

__all__ = ["NLA", "ActivationReconstructor", "ActivationVerbalizer"]
