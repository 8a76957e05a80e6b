"""Losses: pure functions and nn.Modules, tensors in, scalar out (no Lightning, no I/O)."""

from kdlab.losses.annealed import annealed_loss, annealed_target
from kdlab.losses.contrastive import simcse_loss
from kdlab.losses.embedding_mse import MultilingualLossOutput, multilingual_mse
from kdlab.losses.hidden_states import HiddenStateMSE, default_layer_map, masked_mse
from kdlab.losses.pseudo_labels import PAIR_LOSSES, pseudo_label_loss
from kdlab.losses.soft_target import KDLossOutput, SoftTargetKDLoss, hard_loss, soft_target_loss

__all__ = [
    "annealed_loss", "annealed_target",
    "HiddenStateMSE", "MultilingualLossOutput", "multilingual_mse", "KDLossOutput", "SoftTargetKDLoss", "default_layer_map", "hard_loss", "masked_mse", "soft_target_loss",
    "PAIR_LOSSES", "pseudo_label_loss", "simcse_loss",
]
