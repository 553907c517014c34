"""``ContrastiveTrainer`` and its arguments."""

from .arguments import ContrastiveTrainingArguments
from .trainer import ContrastiveTrainer

__all__ = ["ContrastiveTrainer", "ContrastiveTrainingArguments"]
