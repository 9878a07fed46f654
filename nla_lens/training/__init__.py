"""Training: warm starts (AR and AV SFT) and joint GRPO, on a notebook-native trainer base."""

from nla_lens.training.base import Trainer, TrainerConfig
from nla_lens.training.callbacks import StopFileCallback, TrainerCallback
from nla_lens.training.grpo import GRPOConfig, GRPOTrainer
from nla_lens.training.sft import ARWarmStart, AVWarmStart, WarmStartConfig

__all__ = [
    "ARWarmStart",
    "AVWarmStart",
    "GRPOConfig",
    "GRPOTrainer",
    "StopFileCallback",
    "Trainer",
    "TrainerCallback",
    "TrainerConfig",
    "WarmStartConfig",
]
