"""scripts/evaluate.py contract: table, JSON report, saved SR images, checkpoint checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import FIXTURES, REPO_ROOT, run_script

MINI = REPO_ROOT / "sr_adapt" / "assets" / "sample_data" / "benchmarks" / "mini"


def test_bicubic_report_reproduces_set5_reference(tmp_path: Path, set5_dir: Path) -> None:
    out = tmp_path / "bicubic.json"
    proc = run_script("evaluate.py", "model=bicubic", "scale=4", f"benchmarks=[{set5_dir},{MINI}]", f"output={out}",
                      f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["model"] == {"name": "bicubic", "scale": 4, "scales": [4], "params": 0, "ckpt_path": None,
                               "fixed_size": None, "ensemble": False, "lr_dir": None}
    set5 = report["results"]["Set5"]
    assert set5["images"] == 5 and set(set5["per_image"]) == {"baby", "bird", "butterfly", "head", "woman"}
    assert set5["psnr"] == pytest.approx(28.42, abs=0.02)
    assert set5["ssim"] == pytest.approx(0.810, abs=0.003)
    assert report["results"]["mini"]["images"] == 2
    assert "Set5" in proc.stdout and "28.4" in proc.stdout  # the printed table


def test_named_benchmarks_resolve_through_paths(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "x2.json"
    proc = run_script("evaluate.py", "model=bicubic", "scale=2", "benchmarks=[set5]", f"paths.data_dir={shared_data}",
                      f"output={out}", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 33.66 <= json.loads(out.read_text())["results"]["Set5"]["psnr"] <= 33.69


def test_official_checkpoint_evaluates_and_saves_images(tmp_path: Path) -> None:
    out, sr_dir = tmp_path / "drn.json", tmp_path / "sr"
    args = ["model=drn_s", "model.net.n_blocks=2", "model.net.n_feats=4", "scale=4",
            f"ckpt_path={FIXTURES / 'drn_tiny_x4_official.pt'}", f"benchmarks=[{MINI}]", f"output={out}",
            f"save_dir={sr_dir}", f"hydra.run.dir={tmp_path}/h"]
    proc = run_script("evaluate.py", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["model"]["name"] == "drn_s" and report["model"]["params"] == 40_905
    saved = sorted(p.name for p in sr_dir.iterdir())
    assert saved == sorted(p.name for p in MINI.iterdir())  # SR PNGs under the input names
    for name in saved:  # x4 of the mod-cropped HR size
        hr = Image.open(MINI / name)
        assert Image.open(sr_dir / name).size == (hr.width // 4 * 4, hr.height // 4 * 4)


def test_wrong_variant_is_refused_with_a_hint(tmp_path: Path) -> None:
    proc = run_script("evaluate.py", "model=drn_s", "scale=4", f"ckpt_path={FIXTURES / 'drn_tiny_x4_official.pt'}",
                      f"benchmarks=[{MINI}]", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 2
    assert "drn_tiny_x4_official.pt" in proc.stderr and "n_feats=4" in proc.stderr and "Traceback" not in proc.stderr


def test_model_auto_reads_architecture_from_our_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_script("train.py", "experiment=drn_paired", "debug=fast", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "ours.json"
    proc = run_script("evaluate.py", f"ckpt_path={run}/checkpoints/last.ckpt", "scale=4", f"benchmarks=[{MINI}]",
                      f"output={out}", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    # same weights, same protocol: evaluate agrees with the training-time validation
    assert report["results"]["mini"]["psnr"] == pytest.approx(metrics["val/psnr"], abs=1e-3)
    proc = run_script("evaluate.py", f"ckpt_path={run}/checkpoints/last.ckpt", "scale=8", f"benchmarks=[{MINI}]",
                      f"hydra.run.dir={tmp_path}/h2")
    assert proc.returncode == 2 and "scale" in proc.stderr


def test_missing_benchmark_folder(tmp_path: Path) -> None:
    proc = run_script("evaluate.py", "model=bicubic", f"benchmarks=[{tmp_path}/nope]", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_self_ensemble_option(tmp_path: Path) -> None:
    import torch

    from sr_adapt.evaluation.protocol import evaluate_folder
    from sr_adapt.checkpoints import load_checkpoint
    from sr_adapt.models.bicubic import Bicubic

    cpu = torch.device("cpu")
    bic = Bicubic(4)  # flip/transpose-equivariant: the ensemble changes nothing
    assert evaluate_folder(bic, MINI, 4, cpu, ensemble=True)["psnr"] == pytest.approx(
        evaluate_folder(bic, MINI, 4, cpu)["psnr"], abs=1e-3)
    net = load_checkpoint(FIXTURES / "drn_tiny_x4_official.pt").net.eval()
    plain, ens = evaluate_folder(net, MINI, 4, cpu), evaluate_folder(net, MINI, 4, cpu, ensemble=True)
    assert ens["psnr"] != pytest.approx(plain["psnr"], abs=1e-3)
    out = tmp_path / "ens.json"
    proc = run_script("evaluate.py", f"ckpt_path={FIXTURES / 'drn_tiny_x4_official.pt'}", "scale=4", "ensemble=true",
                      f"benchmarks=[{MINI}]", f"output={out}", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["model"]["ensemble"] is True
    assert report["results"]["mini"]["psnr"] == pytest.approx(ens["psnr"], abs=1e-4)


def test_lr_dir_scores_given_lr_files(tmp_path: Path) -> None:
    """LR files equal to the bicubic downscale give the default numbers; other LR files change them."""
    import torch

    from sr_adapt.io.images import load_image, save_image
    from sr_adapt.data.transforms import mod_crop
    from sr_adapt.ops.color import quantize
    from sr_adapt.ops.resize import imresize

    for path in MINI.iterdir():
        lr = quantize(imresize(mod_crop(load_image(path), 4), scale=0.25))
        save_image(lr, tmp_path / "same" / "X4" / f"{path.stem}x4.png")
        save_image(quantize(lr * 0.9), tmp_path / "darker" / "X4" / f"{path.stem}x4.png")
    results = {}
    for name in ("same", "darker"):
        out = tmp_path / f"{name}.json"
        proc = run_script("evaluate.py", "model=bicubic", "scale=4", f"benchmarks=[{MINI}]", f"lr_dir={tmp_path / name}",
                          f"output={out}", f"hydra.run.dir={tmp_path}/h_{name}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[name] = json.loads(out.read_text())["results"]["mini"]["psnr"]
    proc = run_script("evaluate.py", "model=bicubic", "scale=4", f"benchmarks=[{MINI},{MINI}]",
                      f"lr_dir={tmp_path / 'same'}", f"hydra.run.dir={tmp_path}/h2")
    assert proc.returncode == 2 and "single entry" in proc.stderr
    from sr_adapt.evaluation.protocol import evaluate_folder
    from sr_adapt.models.bicubic import Bicubic

    default = evaluate_folder(Bicubic(4), MINI, 4, torch.device("cpu"))["psnr"]
    assert results["same"] == pytest.approx(default, abs=1e-6)
    assert results["darker"] < default - 1
