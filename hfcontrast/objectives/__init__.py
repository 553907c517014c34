"""Objectives: ``nn.Module``s that hold training state and call the pure losses."""

from .base import ContrastiveObjective, Encoder, Modality, ObjectiveOutput, encode, pair_stats
from .byol import BYOL
from .clip import CLIP, SigLIP
from .clusters import ClusterRefreshCallback
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .contrast import InfoNCEObjective
from .cpc import CPC
from .dino import DINO
from .distill import InBatchKL, MarginMSE
from .guide import Guide
from .hybrid import SupervisedHybrid
from .long_tail import BCL, KCL
from .moco import MoCo
from .nnclr import NNCLR
from .pcl import PCL
from .redundancy import BarlowTwins, VICReg
from .scored import ScoredPairs
from .selfcon import SelfCon
from .simclr import SimCLR
from .simcse import SimCSE
from .simsiam import SimSiam
from .state import KeyQueue, MomentumEncoder
from .swav import SwAV

__all__ = [
    "BCL",
    "BYOL",
    "CLIP",
    "CPC",
    "DINO",
    "KCL",
    "NNCLR",
    "PCL",
    "BarlowTwins",
    "ChunkingConfig",
    "ClusterRefreshCallback",
    "ContrastiveObjective",
    "Encoder",
    "Guide",
    "InBatchKL",
    "InfoNCEObjective",
    "KeyQueue",
    "MarginMSE",
    "MatryoshkaConfig",
    "MoCo",
    "Modality",
    "MomentumEncoder",
    "NegativeConfig",
    "ObjectiveOutput",
    "ScoredPairs",
    "SelfCon",
    "SigLIP",
    "SimCLR",
    "SimCSE",
    "SimSiam",
    "SupervisedHybrid",
    "SwAV",
    "VICReg",
    "encode",
    "pair_stats",
]
