"""Objectives: ``nn.Module``s that hold training state and call the pure losses."""

from .base import ContrastiveObjective, ObjectiveOutput, pair_stats
from .simcse import SimCSE
from .state import KeyQueue, MomentumEncoder

__all__ = ["ContrastiveObjective", "KeyQueue", "MomentumEncoder", "ObjectiveOutput", "SimCSE", "pair_stats"]
