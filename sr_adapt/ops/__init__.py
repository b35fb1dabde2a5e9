"""Image ops: MATLAB-compatible resize, BT.601 colour conversions, PSNR / SSIM."""

from .color import from_uint8, quantize, rgb_to_y, rgb_to_ycbcr, to_uint8, ycbcr_to_rgb
from .metrics import psnr, ssim
from .resize import imresize

__all__ = ["imresize", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb", "quantize", "to_uint8", "from_uint8", "psnr", "ssim"]
