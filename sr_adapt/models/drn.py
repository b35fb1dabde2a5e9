"""DRN: Dual Regression Networks (Guo et al., CVPR 2020).

The primal network P maps an LR image to a list of outputs at every 2x level
(x1, x2, ..., x_scale); one dual network D_i per 2x step maps level i+1 back
to level i. Module and parameter names follow the official release so that
its state_dicts load without renaming (see ``sr_adapt.io.checkpoints``).

Value range: images in and out are in [0, 1]. The official network works on
0..255 images; ours multiplies the input by 255 and divides the output by 255 as
fixed constants at its boundary, so every parameter (the trainable 1x1 "mean shift"
convs included) is identical to the official one: official state_dicts load
unchanged and every parameter trains at the official rate under Adam.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

from sr_adapt.models.base import GlobalMeanPool, LRFilter, SRModel
from sr_adapt.ops.resize import upsample_bicubic

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
OFFICIAL_RGB_RANGE = 255.0

# (n_blocks, n_feats) of the released variants, keyed by (size, scale).
DRN_VARIANTS: dict[tuple[str, int], tuple[int, int]] = {
    ("s", 4): (30, 16),
    ("l", 4): (40, 20),
    ("s", 8): (30, 8),
    ("l", 8): (36, 10),
}


def variant_config(size: str, scale: int) -> tuple[int, int]:
    """``(n_blocks, n_feats)`` of a released variant: ``size`` "s"/"l", also spelled "S", "drn_s", "DRN-L".

    Raises:
        ValueError: no such released variant (the message lists them).
    """
    key = (str(size).lower().removeprefix("drn").lstrip("-_"), int(scale))
    if key not in DRN_VARIANTS:
        known = ", ".join(f"DRN-{s.upper()} x{k}" for s, k in DRN_VARIANTS)
        raise ValueError(f"no released DRN variant {size!r} at x{scale}; known: {known}")
    return DRN_VARIANTS[key]


def _conv(c_in: int, c_out: int, k: int = 3, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=bias)


def _mean_shift(subtract: bool) -> nn.Conv2d:
    """1x1 conv on the 0..255 scale that removes (or adds back) the DIV2K mean colour."""
    layer = nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        layer.bias.copy_((-1.0 if subtract else 1.0) * OFFICIAL_RGB_RANGE * torch.tensor(DIV2K_RGB_MEAN))
    return layer


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate: (B, C, H, W) -> same shape, scaled per channel."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.pool = GlobalMeanPool()  # no parameters: state_dict keys are the official ones
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(self.pool(x))


class RCAB(nn.Module):
    """Residual channel-attention block: x + CA(conv(relu(conv(x))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels),
            nn.ReLU(inplace=True),
            _conv(channels, channels),
            ChannelAttention(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class StridedDown(nn.Module):
    """Halves the resolution: stride-2 conv + LeakyReLU, then a 3x3 conv (no biases).

    Used both inside the primal encoder and as the dual model D (3 -> 3 channels).
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, negval: float = 0.2) -> None:
        super().__init__()
        self.dual_module = nn.Sequential(
            nn.Sequential(_conv(c_in, c_mid, bias=False, stride=2), nn.LeakyReLU(negval, inplace=True)),
            _conv(c_mid, c_out, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.dual_module(x)


class DualRegressor(StridedDown):
    """Dual model D: (B, 3, 2H, 2W) in [0,1] -> (B, 3, H, W) in [0,1] (unclamped)."""

    def __init__(self, n_feats: int, n_colors: int = 3, negval: float = 0.2) -> None:
        super().__init__(n_colors, n_feats, n_colors, negval)


@dataclass(frozen=True)
class DRNConfig:
    scale: int = 4
    n_blocks: int = 30
    n_feats: int = 16
    n_colors: int = 3
    negval: float = 0.2
    input_filter: int = 0


class DRN(SRModel):
    """Primal DRN network.

    Args:
        scale: 4 or 8 (any power of two >= 2 works).
        n_blocks: RCABs per up-sampling stage.
        n_feats: base channel count.
        train_mean_shift: the official trainer updates the mean-shift convs, PaddleGAN freezes them.
        input_filter: size of an :class:`LRFilter` applied to the input first (0: none; an adapted
            model's input correction, :meth:`set_input_filter`). Not part of the official network.

    forward: (B, 3, h, w) in [0,1] -> list of (B, 3, h*2^k, w*2^k), k = 0..log2(scale).
    Any h, w work: the input is upsampled to h*scale first, which every stride-2 stage divides evenly.
    """

    arch = "drn"

    def __init__(
        self,
        scale: int = 4,
        n_blocks: int = 30,
        n_feats: int = 16,
        n_colors: int = 3,
        negval: float = 0.2,
        train_mean_shift: bool = True,
        input_filter: int = 0,
    ) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"DRN scale must be a power of two >= 2, got {scale}")
        if n_colors != 3:
            raise ValueError("DRN works on RGB images (n_colors=3)")
        self.config = DRNConfig(scale, n_blocks, n_feats, n_colors, negval, int(input_filter))
        self.input_filter = LRFilter(input_filter) if input_filter else None
        self.scale = scale
        self.n_levels = int(math.log2(scale))
        phases = self.n_levels

        self.sub_mean = _mean_shift(subtract=True)
        self.head = _conv(n_colors, n_feats)
        self.down = nn.ModuleList(
            StridedDown(n_feats * 2**p, n_feats * 2**p, n_feats * 2 ** (p + 1), negval) for p in range(phases)
        )

        self.up_blocks = nn.ModuleList()
        for i in range(phases):
            p = phases - i  # channel exponent of the features entering this stage
            c_in = n_feats * 2**p if i == 0 else 2 * n_feats * 2**p
            layers: list[nn.Module] = [RCAB(c_in) for _ in range(n_blocks)]
            layers.append(nn.Sequential(_conv(c_in, 4 * c_in), nn.PixelShuffle(2)))
            layers.append(_conv(c_in, n_feats * 2 ** (p - 1), k=1))
            self.up_blocks.append(nn.Sequential(*layers))

        self.tail = nn.ModuleList(
            [_conv(n_feats * 2**phases, n_colors)] + [_conv(n_feats * 2**p, n_colors) for p in range(phases, 0, -1)]
        )
        self.add_mean = _mean_shift(subtract=False)
        if not train_mean_shift:
            for p in (*self.sub_mean.parameters(), *self.add_mean.parameters()):
                p.requires_grad_(False)

    @classmethod
    def variant(cls, size: str, scale: int, **kwargs) -> "DRN":
        """Released variants: size 's' or 'l', scale 4 or 8."""
        n_blocks, n_feats = variant_config(size, scale)
        return cls(scale=scale, n_blocks=n_blocks, n_feats=n_feats, **kwargs)

    def hparams(self) -> dict:
        out = asdict(self.config)
        if not out["input_filter"]:
            del out["input_filter"]  # the official network: its checkpoints say nothing about one
        return out

    def set_input_filter(self, weight: Tensor | None) -> None:
        """Put ``weight`` (m, m) in front of the network as its input filter (None removes it)."""
        if weight is None:
            self.input_filter = None
        else:
            ref = next(self.parameters())
            self.input_filter = LRFilter(int(weight.shape[-1]), weight).to(ref.device)
        self.config = replace(self.config, input_filter=0 if weight is None else int(weight.shape[-1]))

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.input_filter is not None:
            x = self.input_filter(x)
        x = upsample_bicubic(x, self.scale)
        x = self.head(self.sub_mean(x * OFFICIAL_RGB_RANGE))
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        outputs = [self.add_mean(self.tail[0](x)) / OFFICIAL_RGB_RANGE]
        for i, up in enumerate(self.up_blocks):
            x = torch.cat((up(x), skips[-1 - i]), dim=1)
            outputs.append(self.add_mean(self.tail[i + 1](x)) / OFFICIAL_RGB_RANGE)
        return outputs

    def super_resolve(self, x: Tensor) -> Tensor:
        return self(x)[-1]

    def lr_level_factors(self) -> list[int]:
        return pyramid_factors(self.scale)

    def training_outputs(self, x: Tensor) -> list[Tensor]:
        return self(x)

    def build_duals(self) -> nn.ModuleList:
        return build_dual_models(self.scale, self.config.n_feats, self.config.negval)

    def tile_margin(self) -> int:
        """Receptive-field radius in LR pixels (upper bound), channel attention excluded.

        Counted in HR pixels: a 3x3 conv at level k (resolution HR / 2^k) reaches 2^k HR pixels;
        each stride-2 conv and pixel shuffle may shift alignment by one more pixel of its finer
        level. Then converted to LR pixels, plus the bicubic pre-upsampling (2 LR pixels) and 1.
        """
        n = self.config.n_blocks
        hr = 1 + 1  # head conv and tail conv, at level 0
        for p in range(self.n_levels):
            hr += 2**p + 2 ** (p + 1) + 2**p  # down stage p: stride-2 conv, 3x3 conv, alignment
        for level in range(self.n_levels, 0, -1):
            hr += (2 * n + 1) * 2**level + 2**level  # RCAB convs + upsampler conv, shuffle alignment
        return -(-hr // self.scale) + 3 + self.config.input_filter // 2


def pyramid_factors(scale: int) -> list[int]:
    """Downscale factors of the DRN LR levels, lowest resolution first: ``[s, s/2, ..., 2]``.

    Raises:
        ValueError: ``scale`` is not a power of two >= 2.
    """
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"DRN scales must be powers of two >= 2 (e.g. 4 or 8), got {scale}")
    factors = []
    f = scale
    while f >= 2:
        factors.append(f)
        f //= 2
    return factors


def build_dual_models(scale: int, n_feats: int, negval: float = 0.2) -> nn.ModuleList:
    """One dual model per 2x step; index i maps level i+1 to level i (level 0 = LR input)."""
    return nn.ModuleList(DualRegressor(n_feats, negval=negval) for _ in range(int(math.log2(scale))))


def build_drn(size: str = "s", scale: int = 4, n_blocks: int | None = None, n_feats: int | None = None, **kwargs) -> DRN:
    """DRN-S / DRN-L at ``scale`` with the paper's sizes; ``n_blocks``/``n_feats`` override them."""
    if n_blocks is None or n_feats is None:
        try:
            default_blocks, default_feats = variant_config(size, scale)
        except ValueError as e:
            raise ValueError(f"{e}; give model.net.n_blocks and model.net.n_feats explicitly") from None
        n_blocks = default_blocks if n_blocks is None else n_blocks
        n_feats = default_feats if n_feats is None else n_feats
    return DRN(scale=scale, n_blocks=n_blocks, n_feats=n_feats, **kwargs)
