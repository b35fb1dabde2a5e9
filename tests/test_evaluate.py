"""The evaluate task: table, JSON report, saved SR images, checkpoint checks (one CLI run, the rest in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.errors import CheckpointError, ConfigError, DataError
from sr_adapt.evaluation.protocol import evaluate_folder
from sr_adapt.io.images import load_image, save_image
from sr_adapt.data.transforms import mod_crop
from sr_adapt.models.bicubic import Bicubic
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize
from sr_adapt.training.fit import fit
from tests.conftest import FIXTURES, MINI, compose, run_script, run_task

TINY_DRN = FIXTURES / "drn_tiny_x4_official.pt"
CPU = torch.device("cpu")
# Pinned on the bundled images (MATLAB bicubic, Y, shave 4): any change to the protocol moves them.
MINI_BICUBIC_X4 = (29.8847, 0.73673)
MINI_TINY_DRN_X4, MINI_TINY_DRN_X4_ENSEMBLE = 13.2179, 13.2525


def test_cli_bicubic_report_reproduces_set5_reference_and_refuses_bad_input(tmp_path: Path, set5_dir: Path) -> None:
    out = tmp_path / "bicubic.json"
    proc = run_script("evaluate.py", "model=bicubic", "scale=4", f"benchmarks=[{set5_dir},{MINI}]", f"output={out}",
                      f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["model"] == {"name": "bicubic", "scale": 4, "scales": [4], "params": 0, "ckpt_path": None,
                               "fixed_size": None, "ensemble": False, "lr_dir": None, "backend": "torch",
                               "precision": "fp32"}
    set5 = report["results"]["Set5"]
    assert set5["images"] == 5 and set(set5["per_image"]) == {"baby", "bird", "butterfly", "head", "woman"}
    assert set5["psnr"] == pytest.approx(28.42, abs=0.02)  # the published MATLAB bicubic baseline
    assert set5["ssim"] == pytest.approx(0.810, abs=0.003)
    assert report["results"]["mini"]["psnr"] == pytest.approx(MINI_BICUBIC_X4[0], abs=1e-3)
    assert "Set5" in proc.stdout and "28.4" in proc.stdout  # the printed table
    assert (tmp_path / "h" / "evaluate.log").is_file()

    proc = run_script("evaluate.py", "model=drn_s", "scale=4", f"ckpt_path={TINY_DRN}", f"benchmarks=[{MINI}]",
                      f"hydra.run.dir={tmp_path}/h2")
    assert proc.returncode == 2
    assert "drn_tiny_x4_official.pt" in proc.stderr and "n_feats=4" in proc.stderr and "Traceback" not in proc.stderr


def test_named_benchmarks_resolve_through_paths(tmp_path: Path, shared_data: Path) -> None:
    report = run_task("evaluate", ["model=bicubic", "scale=2", "benchmarks=[set5]", f"paths.data_dir={shared_data}"],
                      tmp_path)
    assert report["results"]["Set5"]["psnr"] == pytest.approx(33.68, abs=0.015)


def test_official_checkpoint_evaluates_and_saves_images(tmp_path: Path) -> None:
    out, sr_dir = tmp_path / "drn.json", tmp_path / "sr"
    report = run_task("evaluate", [
        "model=drn_s", "model_name=drn_s", "model.net.n_blocks=2", "model.net.n_feats=4", "scale=4",
        f"ckpt_path={TINY_DRN}", f"benchmarks=[{MINI}]", f"output={out}", f"save_dir={sr_dir}"], tmp_path)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["model"]["name"] == "drn_s" and report["model"]["params"] == 40_905
    assert report["results"]["mini"]["psnr"] == pytest.approx(MINI_TINY_DRN_X4, abs=1e-3)
    saved = sorted(p.name for p in sr_dir.iterdir())
    assert saved == sorted(p.name for p in MINI.iterdir())  # SR PNGs under the input names
    for name in saved:  # x4 of the mod-cropped HR size
        hr = Image.open(MINI / name)
        assert Image.open(sr_dir / name).size == (hr.width // 4 * 4, hr.height // 4 * 4)


def test_wrong_variant_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"drn_tiny_x4_official\.pt.*n_feats=4.*model=drn_s model\.net\.n_blocks=2"):
        run_task("evaluate", ["model=drn_s", "scale=4", f"ckpt_path={TINY_DRN}", f"benchmarks=[{MINI}]"], tmp_path)


def test_model_auto_reads_architecture_from_our_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics = fit(compose("train", ["experiment=drn_paired", "debug=fast", "logger=csv"], run))
    ckpt = run / "checkpoints" / "last.ckpt"
    report = run_task("evaluate", [f"ckpt_path={ckpt}", "scale=4", f"benchmarks=[{MINI}]"], tmp_path)
    # same weights, same protocol: evaluate agrees with the training-time validation
    assert report["results"]["mini"]["psnr"] == pytest.approx(metrics["val/psnr"], abs=1e-3)
    assert report["model"]["name"] == "DRN (n_blocks=1, n_feats=8) x4"
    with pytest.raises(CheckpointError, match="scale"):
        run_task("evaluate", [f"ckpt_path={ckpt}", "scale=8", f"benchmarks=[{MINI}]"], tmp_path)


def test_missing_benchmark_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"benchmarks\.hr_dir: image folder .*nope does not exist"):
        run_task("evaluate", ["model=bicubic", f"benchmarks=[{tmp_path}/nope]"], tmp_path)
    with pytest.raises(ConfigError, match="benchmarks is empty"):
        run_task("evaluate", ["model=bicubic", "benchmarks=[]"], tmp_path)


def test_self_ensemble_option(tmp_path: Path) -> None:
    bic = Bicubic(4)  # flip/transpose-equivariant: the ensemble changes nothing
    assert evaluate_folder(bic, MINI, 4, CPU, ensemble=True)["psnr"] == pytest.approx(MINI_BICUBIC_X4[0], abs=1e-3)
    net = load_checkpoint(TINY_DRN).net.eval()
    assert evaluate_folder(net, MINI, 4, CPU)["psnr"] == pytest.approx(MINI_TINY_DRN_X4, abs=1e-3)
    report = run_task("evaluate", [f"ckpt_path={TINY_DRN}", "scale=4", "ensemble=true", f"benchmarks=[{MINI}]"], tmp_path)
    assert report["model"]["ensemble"] is True
    assert report["results"]["mini"]["psnr"] == pytest.approx(MINI_TINY_DRN_X4_ENSEMBLE, abs=1e-3)


def test_lr_dir_scores_given_lr_files(tmp_path: Path) -> None:
    """LR files equal to the bicubic downscale give the default numbers; other LR files change them."""
    for path in MINI.iterdir():
        lr = quantize(imresize(mod_crop(load_image(path), 4), scale=0.25))
        save_image(lr, tmp_path / "same" / "X4" / f"{path.stem}x4.png")
        save_image(quantize(lr * 0.9), tmp_path / "darker" / "X4" / f"{path.stem}x4.png")
    results = {
        name: run_task("evaluate", ["model=bicubic", "scale=4", f"benchmarks=[{MINI}]", f"lr_dir={tmp_path / name}"],
                       tmp_path)["results"]["mini"]["psnr"]
        for name in ("same", "darker")
    }
    assert results["same"] == pytest.approx(evaluate_folder(Bicubic(4), MINI, 4, CPU)["psnr"], abs=1e-6)
    assert results["darker"] == pytest.approx(27.8685, abs=1e-3)
    with pytest.raises(ConfigError, match="single entry"):
        run_task("evaluate", ["model=bicubic", "scale=4", f"benchmarks=[{MINI},{MINI}]", f"lr_dir={tmp_path / 'same'}"],
                 tmp_path)
