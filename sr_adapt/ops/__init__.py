"""Image ops: MATLAB-compatible resize, BT.601 colour conversions, PSNR / SSIM."""

from .color import quantize, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from .metrics import SRMetrics, psnr, ssim
from .resize import imresize

__all__ = ["imresize", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb", "quantize", "psnr", "ssim", "SRMetrics"]
