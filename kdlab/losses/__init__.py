"""Losses: pure functions and nn.Modules, tensors in, scalar out (no Lightning, no I/O)."""

from kdlab.losses.soft_target import KDLossOutput, SoftTargetKDLoss, hard_loss, soft_target_loss

__all__ = ["KDLossOutput", "SoftTargetKDLoss", "hard_loss", "soft_target_loss"]
