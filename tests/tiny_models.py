"""Tiny random-init checkpoints (our format) and test media for the upscale/export tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from sr_adapt.models.base import SRModel
from sr_adapt.models.drn import DRN
from sr_adapt.models.drrn import DRRN


def tiny_drn(seed: int = 0) -> DRN:
    """DRN x4, 2 RCABs per stage, 8 features; biases perturbed so channel attention varies."""
    torch.manual_seed(seed)
    net = DRN(scale=4, n_blocks=2, n_feats=8).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "conv_du" in name:
                p.add_(torch.randn_like(p) * 0.5)  # make the attention gates depend on the image
    return net


def tiny_drrn(seed: int = 0) -> DRRN:
    """DRRN B1U2 with 8 channels, serving x2/x3/x4 (set to x3)."""
    torch.manual_seed(seed)
    net = DRRN(scale=3, n_blocks=1, n_units=2, n_feats=8).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.3)  # keep the untrained residual small
    return net


def save_ours(net: SRModel, path: Path) -> Path:
    """Our checkpoint format: ``net.*`` state_dict entries and the ``sr_adapt`` metadata block."""
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "sr_adapt": {"arch": net.arch, "hparams": net.hparams()}}, path)
    return path


def make_video(path: Path, frames: int = 6, width: int = 32, height: int = 24, fps: int = 12, audio: bool = True) -> Path:
    """A short H.264 clip of smooth moving colour ramps, optionally with a 440 Hz AAC track."""
    import av

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        for i in range(frames):
            img = np.stack([(xx + 3 * i) / width, yy / height, 0.5 + 0.4 * np.sin((xx + yy + i) / 5)], -1)
            arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            n = int(16000 * Fraction(frames, fps))
            for t in range(0, n, 1024):
                k = min(1024, n - t)
                samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(t, t + k) / 16000)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, t
                for p in a.encode(frame):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path
