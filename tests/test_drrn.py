"""DRRN: architecture, port checkpoint import (safe), luma data, paper recipe, evaluation protocol."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from sr_adapt.errors import DataError
from sr_adapt.data.sources.luma import UpsampledLumaDataset
from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.errors import CheckpointError
from sr_adapt.training.drrn_module import DRRNLitModule
from sr_adapt.models import DRRN, build_model
from sr_adapt.ops.color import quantize, rgb_to_y
from sr_adapt.ops.resize import imresize
from tests.conftest import FIXTURES, MINI, REPO_ROOT, run_task

SAMPLE_T91 = REPO_ROOT / "sr_adapt" / "assets" / "sample_data" / "train" / "T91"
PORT_FILES = ["drrn_port_tiny_c8.pth", "drrn_port_tiny_c8_legacy.pth"]


# --- model ------------------------------------------------------------------------------


def test_b1u25_has_the_paper_parameter_count_and_port_keys() -> None:
    net = DRRN()
    assert net.num_parameters() == 297_216
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {
        "input.weight": (128, 1, 3, 3), "conv1.weight": (128, 128, 3, 3),
        "conv2.weight": (128, 128, 3, 3), "output.weight": (1, 128, 3, 3),
    }
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    deeper = DRRN(n_blocks=2, n_units=3, n_feats=8)
    assert "extra_blocks.0.conv1.weight" in deeper.state_dict()


def test_recursion_shares_weights_and_keeps_the_size() -> None:
    torch.manual_seed(0)
    u3, u5 = DRRN(n_units=3, n_feats=8), DRRN(n_units=5, n_feats=8)
    assert u3.num_parameters() == u5.num_parameters()  # units share conv1/conv2
    u5.load_state_dict(u3.state_dict())
    y = torch.rand(2, 1, 13, 17)
    assert u3(y).shape == y.shape
    assert not torch.allclose(u3(y), u5(y))  # more recursions, different output
    with torch.no_grad():
        u3.output.weight.zero_()
    assert torch.equal(u3(y), y)  # global residual: a zero output conv is the identity


def test_one_model_serves_three_scales() -> None:
    net = DRRN(n_units=2, n_feats=8)
    x = torch.rand(1, 3, 10, 12)
    for s in (2, 3, 4):
        net.set_scale(s)
        assert net.super_resolve(x).shape == (1, 3, 10 * s, 12 * s)
        assert net.super_resolve_y(x).shape == (1, 1, 10 * s, 12 * s)
    with pytest.raises(ValueError, match="x8"):
        net.set_scale(8)
    with torch.no_grad():  # the RGB output carries the network's Y (and bicubic Cb/Cr)
        y_from_rgb = rgb_to_y(net.super_resolve(x))
        assert torch.allclose(y_from_rgb, net.super_resolve_y(x), atol=1e-5)


# --- port checkpoints -----------------------------------------------------------------------


@pytest.mark.parametrize("name", PORT_FILES)
def test_port_checkpoint_loads_and_reproduces_the_port_forward(name: str) -> None:
    loaded = load_checkpoint(FIXTURES / name, expect={"scale": 4})
    io = torch.load(FIXTURES / "drrn_port_tiny_c8_io.pt")
    assert loaded.source == "drrn_port" and loaded.meta["epoch"] == 7
    assert loaded.meta["pickled_module"].endswith("DataParallel")
    net = loaded.net
    assert isinstance(net, DRRN) and net.scale == 4 and net.supported_scales() == (2, 3, 4)
    assert (net.n_blocks, net.n_units, net.n_feats, net.relu_residual) == (1, 25, 8, True)
    with torch.no_grad():
        assert torch.allclose(net(io["input"]), io["output"], atol=1e-6)
        paper = DRRN(n_feats=8)  # the paper's residual differs from the port's in-place-ReLU one
        paper.load_state_dict(net.state_dict())
        assert not torch.allclose(paper(io["input"]), io["output"], atol=1e-4)


def test_plain_state_dicts_of_the_port_load(tmp_path: Path) -> None:
    sd = load_checkpoint(FIXTURES / PORT_FILES[0]).net.state_dict()
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "plain.pth")
    torch.save({"model": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    for f in ("plain.pth", "wrapped.pth"):
        net = load_checkpoint(tmp_path / f).net
        assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_foreign_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"epoch": 1, "model": _Evil(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "evil.pth" in msg and "refused" in msg and ("posix.system" in msg or "os.system" in msg)
    assert not marker.exists()


def test_rgb_model_passed_as_drrn_and_back(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="RGB model.*arch='drrn'"):
        load_checkpoint(FIXTURES / "drn_tiny_x4_official.pt", expect={"arch": "drrn"})
    with pytest.raises(CheckpointError, match="luma-only.*model=drrn"):
        load_checkpoint(FIXTURES / PORT_FILES[0], expect={"arch": "drn", "scale": 4})
    with pytest.raises(CheckpointError, match="n_feats: requested 128, file 8"):
        load_checkpoint(FIXTURES / PORT_FILES[0], expect={"arch": "drrn", "n_feats": 128})
    with pytest.raises(CheckpointError, match=r"scales \[2, 3, 4\], not x8"):
        load_checkpoint(FIXTURES / PORT_FILES[0], expect={"scale": 8})


def test_wrong_shapes_are_not_a_drrn(tmp_path: Path) -> None:
    sd = {k: v for k, v in DRRN(n_units=1, n_feats=4).state_dict().items()}
    sd["input.weight"] = torch.zeros(4, 3, 3, 3)  # a colour input
    torch.save(sd, tmp_path / "rgb_drrn.pth")
    with pytest.raises(CheckpointError, match=r"rgb_drrn\.pth.*not a luma DRRN.*\(4, 3, 3, 3\)"):
        load_checkpoint(tmp_path / "rgb_drrn.pth")
    sd = DRRN(n_units=1, n_feats=4).state_dict()
    sd["conv1.weight"] = torch.zeros(4, 4, 5, 5)
    torch.save(sd, tmp_path / "bad_kernel.pth")
    with pytest.raises(CheckpointError, match=r"conv1\.weight: \(4, 4, 5, 5\) vs \(4, 4, 3, 3\)"):
        load_checkpoint(tmp_path / "bad_kernel.pth")


# --- data ------------------------------------------------------------------------------------


def test_luma_patches_equal_the_whole_image_pipeline() -> None:
    ds = UpsampledLumaDataset(SAMPLE_T91, scale=3, patch_size=31, scales=[2, 3, 4], augment=False, seed=5, cache=True,
                              repeat=6)
    from sr_adapt.io.images import array_to_tensor, load_image_array

    seen = set()
    for i in range(12):
        torch.manual_seed(i)
        sample = ds[i]
        s = int(sample["scale"])
        seen.add(s)
        hr = array_to_tensor(load_image_array(ds.files[i % 2]))
        h, w = hr.shape[-2] // s * s, hr.shape[-1] // s * s
        hr = hr[:, :h, :w]
        up = quantize(imresize(quantize(imresize(hr, scale=1 / s)), scale=s))
        up_y, hr_y = quantize(rgb_to_y(up)), quantize(rgb_to_y(hr))
        # find the crop: the HR patch is unique in the image
        hits = (hr_y.unfold(-2, 31, 1).unfold(-2, 31, 1) == sample["hr_y"][0]).flatten(-2).all(-1)
        (_, y, x), = hits.nonzero().tolist()
        assert torch.allclose(sample["lr_up_y"][0], up_y[0, y : y + 31, x : x + 31], atol=1.5 / 255)
        assert sample["lr_up_y"].shape == sample["hr_y"].shape == (1, 31, 31)
    assert seen == {2, 3, 4}


def test_luma_dataset_bad_input(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (30, 30)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match=r"small\.png is 30x30.*smaller than 35x35"):
        UpsampledLumaDataset(tmp_path, scale=3, patch_size=31, scales=[2, 3, 4])
    with pytest.raises(DataError, match="scales"):
        UpsampledLumaDataset(SAMPLE_T91, scale=3, patch_size=31, scales=[1])


# --- training recipe ---------------------------------------------------------------------------


def test_gradient_clipping_is_theta_over_lr(tmp_path: Path) -> None:
    """One SGD step (no momentum/decay) moves the weights by exactly lr * theta / lr = theta."""
    torch.manual_seed(0)
    net = DRRN(n_units=2, n_feats=8)
    before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
    module = DRRNLitModule(net, optimizer=partial(torch.optim.SGD, lr=0.1), scheduler=None, clip_theta=0.01)
    ds = UpsampledLumaDataset(SAMPLE_T91, scale=3, patch_size=31, scales=[2, 3, 4], seed=0)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(module, DataLoader(ds, batch_size=8))
    step = torch.cat([p.detach().flatten() for p in net.parameters()]) - before
    assert step.norm().item() == pytest.approx(0.01, rel=1e-3)  # the sum-MSE gradient is far larger: clipped


def test_loss_reduction_and_theta_are_validated() -> None:
    from sr_adapt.errors import ConfigError

    with pytest.raises(ConfigError, match="model.loss_reduction"):
        DRRNLitModule(DRRN(n_units=1, n_feats=4), optimizer=torch.optim.SGD, loss_reduction="median")
    with pytest.raises(ConfigError, match="model.clip_theta"):
        DRRNLitModule(DRRN(n_units=1, n_feats=4), optimizer=torch.optim.SGD, clip_theta=-1)


# --- evaluation ----------------------------------------------------------------------------------


def test_identity_drrn_scores_the_bicubic_numbers(set5_dir: Path) -> None:
    """A DRRN whose output conv is zero returns the bicubic Y: the luma protocol must give bicubic's PSNR."""
    from sr_adapt.evaluation.protocol import evaluate_folder

    net = DRRN(n_units=1, n_feats=4)
    with torch.no_grad():
        net.output.weight.zero_()
    bicubic = build_model("bicubic", scale=3)
    ours = evaluate_folder(net, set5_dir, 3, torch.device("cpu"))
    ref = evaluate_folder(bicubic, set5_dir, 3, torch.device("cpu"))
    assert ref["psnr"] == pytest.approx(30.41, abs=0.02)
    assert ours["psnr"] == pytest.approx(ref["psnr"], abs=0.02)  # only the rounding of Y differs
    assert ours["ssim"] == pytest.approx(ref["ssim"], abs=0.002)


def test_evaluate_one_port_model_at_three_scales_and_fixed_size(tmp_path: Path) -> None:
    sr_dir = tmp_path / "sr"
    report = run_task("evaluate", [f"ckpt_path={FIXTURES / PORT_FILES[0]}", "scales=[2,3,4]", f"benchmarks=[{MINI}]",
                                   f"save_dir={sr_dir}"], tmp_path)
    assert report["model"]["name"].startswith("DRRN B1U25 (8 channels")
    # a random tiny DRRN: a little below bicubic (33.378 / 31.282 / 29.885 on these images)
    got = {k: round(r["psnr"], 3) for k, r in report["results"].items()}
    assert got == pytest.approx({"mini_x2": 33.168, "mini_x3": 31.175, "mini_x4": 29.819}, abs=2e-3)
    assert (sr_dir / "mini_x3" / "hubble.png").is_file()  # RGB images: network Y + bicubic Cb/Cr
    fixed = run_task("evaluate", ["model=drrn", "model.net.n_feats=8", f"ckpt_path={FIXTURES / PORT_FILES[0]}",
                                  "scale=4", "fixed_size=64", f"benchmarks=[{MINI}]"], tmp_path)
    assert fixed["model"]["fixed_size"] == 64 and fixed["results"]["mini"]["images"] == 2
    with pytest.raises(CheckpointError, match="not x8"):
        run_task("evaluate", [f"ckpt_path={FIXTURES / PORT_FILES[0]}", "scale=8", f"benchmarks=[{MINI}]"], tmp_path)


def test_pre_1_0_module_state_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files from torch 0.3/0.4 pickle a THNN backend handle into every module; it must be accepted."""
    import sys
    import types

    legacy = types.ModuleType("torch.nn.backends.thnn")

    def _get_thnn_function_backend():  # stands in for the function torch < 1.0 pickled by reference
        return None

    _get_thnn_function_backend.__module__ = "torch.nn.backends.thnn"
    _get_thnn_function_backend.__qualname__ = "_get_thnn_function_backend"
    legacy._get_thnn_function_backend = _get_thnn_function_backend
    monkeypatch.setitem(sys.modules, "torch.nn.backends", types.ModuleType("torch.nn.backends"))
    monkeypatch.setitem(sys.modules, "torch.nn.backends.thnn", legacy)

    class _Backend:
        def __reduce__(self):
            return (_get_thnn_function_backend, ())

    loaded = load_checkpoint(FIXTURES / PORT_FILES[0]).net
    net = DRRN(n_feats=8)
    net.load_state_dict(loaded.state_dict())
    for m in net.modules():
        m._backend = _Backend()
    torch.save({"epoch": 1, "model": torch.nn.DataParallel(net)}, tmp_path / "old.pth",
               _use_new_zipfile_serialization=False)
    monkeypatch.delitem(sys.modules, "torch.nn.backends.thnn")
    assert b"_get_thnn_function_backend" in (tmp_path / "old.pth").read_bytes()
    again = load_checkpoint(tmp_path / "old.pth").net
    assert all(torch.equal(again.state_dict()[k], v) for k, v in loaded.state_dict().items())
