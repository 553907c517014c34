"""Objectives: ``nn.Module``s that hold training state and call the pure losses."""

from .base import ContrastiveObjective, ObjectiveOutput, pair_stats
from .byol import BYOL, Predictor
from .clip import CLIP, SigLIP
from .moco import MoCo
from .options import NegativeOptions
from .simclr import SimCLR
from .simcse import SimCSE
from .simsiam import SimSiam
from .state import KeyQueue, MomentumEncoder

__all__ = ["ContrastiveObjective", "KeyQueue", "MomentumEncoder", "ObjectiveOutput", "SimCSE", "pair_stats"]
__all__ += ["BYOL", "MoCo", "Predictor", "SimCLR", "SimSiam"]
__all__ += ["CLIP", "SigLIP"]
__all__ += ["NegativeOptions"]
