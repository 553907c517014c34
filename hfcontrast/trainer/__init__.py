"""``ContrastiveTrainer`` and its arguments."""

from .arguments import ContrastiveTrainingArguments
from .runs import train_with_before_after, use_all_cpu_cores_when_alone
from .trainer import ContrastiveTrainer

__all__ = ["ContrastiveTrainer", "ContrastiveTrainingArguments", "train_with_before_after", "use_all_cpu_cores_when_alone"]
