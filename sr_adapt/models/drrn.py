"""DRRN: Deep Recursive Residual Network (Tai, Yang, Liu, CVPR 2017).

A luma-only, same-size network: it refines the Y channel of the MATLAB-bicubic-upsampled
image. ``B`` recursive blocks, each an entry conv followed by ``U`` residual units that share
one pair of convs; pre-activation (ReLU before every conv), a local residual from every unit to
its block's entry, a global residual to the input; no biases, no normalisation.

State-dict keys of the first block and the output conv are those of the public PyTorch port
(``input.weight``, ``conv1.weight``, ``conv2.weight``, ``output.weight``), so a B1 checkpoint of
the port loads as is; blocks 2..B add ``extra_blocks.<i>.{input,conv1,conv2}.weight``.

Port semantics: the port's ``nn.ReLU(inplace=True)`` applied to the first unit's input also
rewrites the block's entry tensor, so its local residual is ReLU(entry) rather than the paper's
entry. ``relu_residual=True`` reproduces that (needed for the port's weights: checked against the
port's own forward in the tests); the default is the paper's form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize, rgb_to_ycbcr, ycbcr_to_rgb
from sr_adapt.ops.resize import imresize

DRRN_SCALES = (2, 3, 4)


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


def _recursive_block(
    x: Tensor, entry_conv: nn.Module, conv1: nn.Module, conv2: nn.Module, n_units: int, relu_residual: bool
) -> Tensor:
    """Pre-activation entry conv, then ``n_units`` residual units sharing (conv1, conv2)."""
    entry = entry_conv(F.relu(x))
    if relu_residual:
        entry = F.relu(entry)
    out = entry
    for _ in range(n_units):
        out = conv2(F.relu(conv1(F.relu(out)))) + entry
    return out


class RecursiveBlock(nn.Module):
    """Entry conv + ``n_units`` weight-shared residual units: (B, c_in, H, W) -> (B, C, H, W)."""

    def __init__(self, c_in: int, n_feats: int, n_units: int, relu_residual: bool = False) -> None:
        super().__init__()
        self.n_units = n_units
        self.relu_residual = relu_residual
        self.input = _conv(c_in, n_feats)
        self.conv1 = _conv(n_feats, n_feats)
        self.conv2 = _conv(n_feats, n_feats)

    def forward(self, x: Tensor) -> Tensor:
        return _recursive_block(x, self.input, self.conv1, self.conv2, self.n_units, self.relu_residual)


class DRRN(SRModel):
    """DRRN B``n_blocks``U``n_units`` with ``n_feats`` features (paper: B1U25, 128: 297,216 parameters).

    ``forward``: (B, 1, H, W) Y of the bicubic-upsampled image in [0, 1] -> (B, 1, H, W) Y, unclamped.
    ``super_resolve``: (B, 3, h, w) RGB LR in [0, 1] -> (B, 3, h*scale, w*scale) RGB with the network's
    Y and the bicubic Cb/Cr. One set of weights serves every scale in ``scales`` (``set_scale``).
    """

    arch = "drrn"
    y_only = True

    def __init__(
        self,
        scale: int = 3,
        n_blocks: int = 1,
        n_units: int = 25,
        n_feats: int = 128,
        scales: tuple[int, ...] | list[int] = DRRN_SCALES,
        relu_residual: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 1 or n_units < 1 or n_feats < 1:
            raise ValueError(f"DRRN needs n_blocks, n_units, n_feats >= 1, got {n_blocks}, {n_units}, {n_feats}")
        self.scales = tuple(int(s) for s in scales)
        if int(scale) not in self.scales:
            raise ValueError(f"DRRN scale x{scale} is not one of its scales {list(self.scales)}")
        self.scale = int(scale)
        self.n_blocks, self.n_units, self.n_feats = n_blocks, n_units, n_feats
        self.relu_residual = bool(relu_residual)
        # Block 1 lives directly on the model so that its keys are the port's (input / conv1 / conv2).
        self.input, self.conv1, self.conv2 = _conv(1, n_feats), _conv(n_feats, n_feats), _conv(n_feats, n_feats)
        self.extra_blocks = nn.ModuleList(
            RecursiveBlock(n_feats, n_feats, n_units, self.relu_residual) for _ in range(n_blocks - 1)
        )
        self.output = _conv(n_feats, 1)
        for m in self.modules():  # He et al. (fan-out), as the paper and the port
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def hparams(self) -> dict:
        return {
            "scale": self.scale,
            "n_blocks": self.n_blocks,
            "n_units": self.n_units,
            "n_feats": self.n_feats,
            "scales": list(self.scales),
            "relu_residual": self.relu_residual,
        }

    def supported_scales(self) -> tuple[int, ...]:
        return self.scales

    def tile_margin(self) -> int:
        """Receptive field in LR pixels at the current scale: every 3x3 conv reaches 1 HR pixel
        (B x (1 + 2U) + 1 convs), plus the MATLAB-bicubic upsampling (3 LR pixels with its taps)."""
        hr = self.n_blocks * (1 + 2 * self.n_units) + 1
        return -(-hr // self.scale) + 3

    def forward(self, y: Tensor) -> Tensor:
        out = _recursive_block(y, self.input, self.conv1, self.conv2, self.n_units, self.relu_residual)
        for block in self.extra_blocks:
            out = block(out)
        return self.output(F.relu(out)) + y

    def upsample_input(self, x: Tensor) -> Tensor:
        """(B, 3, h, w) RGB LR -> (B, 3, H, W) YCbCr of the 8-bit MATLAB-bicubic upsample (paper input)."""
        return rgb_to_ycbcr(quantize(imresize(x, scale=self.scale)))

    def super_resolve_y(self, x: Tensor) -> Tensor:
        """(B, 3, h, w) RGB LR in [0, 1] -> (B, 1, h*scale, w*scale) Y in [0, 1], unclamped."""
        y = quantize(self.upsample_input(x)[:, :1])  # MATLAB rgb2ycbcr on uint8 returns uint8
        return self(y)

    def super_resolve(self, x: Tensor) -> Tensor:
        ycbcr = self.upsample_input(x)
        y = self(quantize(ycbcr[:, :1]))
        return ycbcr_to_rgb(torch.cat([y, ycbcr[:, 1:]], dim=1))
