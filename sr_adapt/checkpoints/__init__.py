"""Checkpoint formats: read any supported file (ours, official DRN, PaddleGAN, DRRN port) safely,
recognise its architecture, build the model; write the official DRN format.

Layout: :mod:`.formats` reads files into tensors, :mod:`.archs` has one adapter per architecture
(detect, infer config, build, describe), :mod:`.keys` the key-diff messages, :mod:`.load` ties
them together, :mod:`.official` writes the official format and our weights-only file.
"""

from sr_adapt.checkpoints.archs import LoadedModel
from sr_adapt.checkpoints.archs.drn import infer_drn_config, variant_name
from sr_adapt.checkpoints.archs.drrn import infer_drrn_config
from sr_adapt.checkpoints.load import build_drn_like, build_like, load_checkpoint
from sr_adapt.checkpoints.official import save_official, save_weights

__all__ = [
    "LoadedModel",
    "build_drn_like",
    "build_like",
    "infer_drn_config",
    "infer_drrn_config",
    "load_checkpoint",
    "save_official",
    "save_weights",
    "variant_name",
]
