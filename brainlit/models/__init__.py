"""Plain PyTorch modules: LMAE and contrastive pretraining, random-walk MoE, Mamba predictor (no Lightning)."""

from brainlit.models.contrastive import SubjectContrastiveHead, nt_xent, reidentification_accuracy
from brainlit.models.encoder import PatchEncoder
from brainlit.models.lmae import LocalMaskedAutoencoder
from brainlit.models.predictor import BrainRegressor
from brainlit.models.rwmoe import RandomWalkMoE, fc_transition_matrix, random_walk
from brainlit.models.ssm import MambaBlock, selective_scan, selective_scan_ref

__all__ = [
    "BrainRegressor",
    "LocalMaskedAutoencoder",
    "MambaBlock",
    "PatchEncoder",
    "RandomWalkMoE",
    "SubjectContrastiveHead",
    "fc_transition_matrix",
    "nt_xent",
    "random_walk",
    "reidentification_accuracy",
    "selective_scan",
    "selective_scan_ref",
]
