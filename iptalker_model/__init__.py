"""IPTalker: the network, SyncNet, losses and the per-step task layer. Imports only torch/numpy."""

from .config import ModelConfig
from .discriminator import PatchDiscriminator
from .iptalker import IPTalker
from .losses import LossConfig
from .mask import lower_face_mask, mask_source
from .syncnet import SyncNet, sync_offset_confidence, sync_scores

__all__ = ["ModelConfig", "LossConfig", "IPTalker", "SyncNet", "PatchDiscriminator",
           "lower_face_mask", "mask_source", "sync_offset_confidence", "sync_scores"]
