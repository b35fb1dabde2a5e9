"""CUDA paths (marked ``gpu``: skipped on machines without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sr_adapt.inference.tiling import TiledUpscaler
from sr_adapt.training.fit import fit
from tests.conftest import compose
from tests.tiny_models import tiny_drn

pytestmark = pytest.mark.gpu


def test_training_on_cuda_switches_to_channels_last_and_bf16(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=drn_paired", "debug=fast", "trainer=gpu", "trainer.precision=bf16-mixed"], tmp_path)
    metrics = fit(cfg)
    assert metrics["global_step"] == 4 and (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_tiled_fp16_on_cuda_is_close_to_fp32_on_cpu() -> None:
    net = tiny_drn()
    x = torch.rand(1, 3, 28, 80)
    with torch.no_grad():
        ref = net.super_resolve(x)
    out = TiledUpscaler(net.cuda(), tile=16, precision="fp16", device="cuda")(x)
    assert out.device.type == "cpu" and (out - ref).abs().max() < 0.02
