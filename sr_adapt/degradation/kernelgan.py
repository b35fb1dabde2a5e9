"""A KernelGAN-style kernel estimate (Bell-Kligler, Shocher, Irani, "Blind Super-Resolution Kernel
Estimation using an Internal-GAN", NeurIPS 2019), written from the paper: the peer arm of the
adaptation benchmark.

Principle: the downscaling kernel of an image is the one whose downscaled image has the same patch
distribution as the image itself. A *deep linear* generator G (conv 7x7, 5x5, 3x3, then three 1x1
layers, 64 channels, no non-linearity, the last one of stride 2) downscales random crops of the LR
image by 2; a fully convolutional patch discriminator D (a 7x7 conv, then 1x1 convs with batch norm
and ReLU: it sees 7x7 patches) tells G's output from crops of the image; LSGAN losses. G's kernel
(the response of the linear net to an impulse, 13x13) is kept a plausible downscaler by the paper's
priors: sum to 1, little mass far from the centre, sparse, centre of mass in the centre; during the
first iterations G is also pulled towards bicubic downscaling. Adam (2e-4, betas 0.5/0.999), one
crop per iteration, crops drawn with probability proportional to the image's gradient magnitude.

The paper's settings: 3000 iterations, 64 px crops for G (32 px for D), x2 kernel; the x4 kernel is
the x2 kernel applied twice (``k2 * (k2 dilated by 2)``), as the paper derives it. We run G on the
luma channel (a blur kernel is the same for the three channels).
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sr_adapt.degradation.kernel_family import centre_kernel, kernel_grid
from sr_adapt.errors import DataError
from sr_adapt.ops.color import rgb_to_y
from sr_adapt.ops.resize import imresize

__all__ = ["kernelgan_kernel", "KERNELGAN_ITERATIONS", "KERNELGAN_CROP"]

log = logging.getLogger("sr_adapt.degradation")

KERNELGAN_ITERATIONS = 3000
KERNELGAN_CROP = 64  # G's input crop (LR px); D sees crops of half that size
MIN_CROP = 32  # smaller crops leave D (7x7 patches of 16 px crops) too little to judge
_G_SIZES = (7, 5, 3, 1, 1, 1)
_G_KERNEL = sum(_G_SIZES) - len(_G_SIZES) + 1  # 13


class _Generator(nn.Module):
    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        sizes = _G_SIZES
        chans = [1] + [channels] * (len(sizes) - 1) + [1]
        self.layers = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], k, stride=2 if i == len(sizes) - 1 else 1,
                                              bias=False) for i, k in enumerate(sizes))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def kernel(self) -> Tensor:
        """The (13, 13) kernel of the linear net (stride ignored): its response to an impulse."""
        n = _G_KERNEL
        x = torch.zeros(1, 1, 2 * n - 1, 2 * n - 1, device=self.layers[0].weight.device)
        x[0, 0, n - 1, n - 1] = 1.0
        for layer in self.layers:
            x = F.conv2d(x, layer.weight)
        return x[0, 0].flip(0, 1)  # correlation: flip to get the kernel as applied


class _Discriminator(nn.Module):
    def __init__(self, channels: int = 64, depth: int = 7) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.utils.parametrizations.spectral_norm(nn.Conv2d(1, channels, 7))]
        for _ in range(depth - 2):
            layers += [nn.utils.parametrizations.spectral_norm(nn.Conv2d(channels, channels, 1)),
                       nn.BatchNorm2d(channels), nn.ReLU(True)]
        layers += [nn.utils.parametrizations.spectral_norm(nn.Conv2d(channels, 1, 1)), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _crop_sampler(y: Tensor, size: int, generator: torch.Generator):
    """Random crops (1, 1, size, size) of ``y`` (1, 1, H, W), drawn with probability ~ gradient magnitude."""
    h, w = y.shape[-2:]
    gy, gx = y[..., 1:, :-1] - y[..., :-1, :-1], y[..., :-1, 1:] - y[..., :-1, :-1]
    g = (gx**2 + gy**2).sqrt()[0, 0]
    g = F.avg_pool2d(g[None, None], 5, 1, 2)[0, 0]
    prob = torch.zeros(h, w)
    c = size // 2  # a corner is drawn by the gradient at its crop's centre
    prob[: h - size + 1, : w - size + 1] = g[c : c + h - size + 1, c : c + w - size + 1] + 1e-6
    flat = prob.flatten() / prob.sum()

    def draw() -> Tensor:
        i = int(torch.multinomial(flat, 1, generator=generator))
        r, c = divmod(i, w)
        return y[..., r : r + size, c : c + size]

    return draw


def _priors(k: Tensor) -> Tensor:
    """The paper's kernel priors: sum to 1, boundaries, sparsity, centre of mass."""
    n = k.shape[-1]
    r = torch.arange(n, dtype=k.dtype, device=k.device) - (n - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    dist = (xx**2 + yy**2).sqrt()
    mask = (dist / dist.max()).clamp(min=0) ** 2  # penalise mass away from the centre
    total = k.sum()
    centre = torch.stack([(k * yy).sum(), (k * xx).sum()]) / total.clamp(min=1e-6)
    return (0.5 * (1 - total).abs() + 0.5 * (k.abs() * mask).sum() + 5.0 * (k.abs() + 1e-8).pow(0.2).mean()
            + 1.0 * (centre**2).sum())


def kernelgan_kernel(image: Tensor, scale: int, iterations: int = KERNELGAN_ITERATIONS, crop: int = KERNELGAN_CROP,
                     seed: int = 0, key: str = "kernelgan") -> tuple[Tensor, dict]:
    """The x``scale`` kernel (our convention, on a grid that holds its whole support: 38 px at x4) of one
    LR image (3, H, W) in [0,1], and a dict of how it was made (iterations, crop, seconds).

    An image smaller than ``crop`` gets crops of its smaller side (even), as long as that is at least
    :data:`MIN_CROP`; ``info["crop"]`` says which.

    Raises:
        DataError: naming ``key`` when the image is smaller than :data:`MIN_CROP`.
    """
    if scale not in (2, 4):
        raise DataError(f"{key}: the KernelGAN-style estimate works at x2 and x4, not x{scale}")
    y = rgb_to_y(image[None].float())
    side = min(y.shape[-2:])
    if side < MIN_CROP:
        raise DataError(f"{key}: the image is {y.shape[-1]}x{y.shape[-2]}, smaller than the {MIN_CROP} px the "
                        "KernelGAN-style estimate needs for its crops")
    crop = min(crop, side - side % 2)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    g_net, d_net = _Generator(), _Discriminator()
    opt_g = torch.optim.Adam(g_net.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d_net.parameters(), 2e-4, betas=(0.5, 0.999))
    big = _crop_sampler(y, crop, gen)
    small = _crop_sampler(y, crop // 2, gen)
    bicubic_iters = min(iterations // 6, 500)
    for it in range(iterations):
        x = big()
        fake = g_net(x)
        d_fake = d_net(fake)
        loss_g = ((d_fake - 1) ** 2).mean() + _priors(g_net.kernel())
        if it < bicubic_iters:  # start near bicubic downscaling, as the paper does
            target = imresize(x, scale=0.5)
            m = (target.shape[-1] - fake.shape[-1]) // 2
            loss_g = loss_g + 5.0 * (fake - target[..., m : m + fake.shape[-2], m : m + fake.shape[-1]]).abs().mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        real = small()
        loss_d = ((d_net(real) - 1) ** 2).mean() + (d_net(fake.detach()) ** 2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
    with torch.no_grad():
        k2 = g_net.kernel().double()
    k2 = k2.clamp(min=0)
    k2 = k2 / k2.sum().clamp(min=1e-12)
    kernel = k2 if scale == 2 else _twice(k2)
    n = kernel.shape[-1]
    size = max(kernel_grid(scale), n + (n - scale) % 2)  # its whole support, on a grid of our convention
    kernel = _on_grid(kernel, size)
    info = {"method": "kernelgan", "iterations": iterations, "crop": crop, "seconds": round(time.perf_counter() - t0, 1)}
    log.info("KernelGAN-style estimate: %d iterations in %.1fs", iterations, info["seconds"])
    return centre_kernel(kernel).float(), info


def _twice(k2: Tensor) -> Tensor:
    """The x4 kernel of downscaling by the x2 kernel twice: k2 convolved with k2 dilated by 2."""
    n = k2.shape[-1]
    dil = torch.zeros(2 * n - 1, 2 * n - 1, dtype=k2.dtype)
    dil[::2, ::2] = k2
    return F.conv2d(F.pad(dil[None, None], (n - 1, n - 1, n - 1, n - 1)), k2.flip(0, 1)[None, None])[0, 0]


def _on_grid(k: Tensor, size: int) -> Tensor:
    """``k`` cropped or zero-padded (centred) to (size, size)."""
    n = k.shape[-1]
    if n >= size:
        a = (n - size) // 2
        return k[a : a + size, a : a + size]
    a = (size - n) // 2
    return F.pad(k, (a, size - n - a, a, size - n - a))

