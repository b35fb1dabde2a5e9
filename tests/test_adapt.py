"""DRN-Adapt on video: mixed batches, fine-tuning from official weights, W&B offline run, sweeps."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sr_adapt.training.datamodule import SRDataModule
from sr_adapt.errors import DataError
from sr_adapt.data.sources.paired import HRFolderDataset
from sr_adapt.data.sources.video import VideoFrameDataset
from sr_adapt.errors import ConfigError
from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.degradation import load_degradation
from sr_adapt.io.images import load_image, save_image
from sr_adapt.training.adapt_module import AdaptLitModule
from sr_adapt.models.drn import DRN
from sr_adapt.training.fit import fit
from tests.conftest import FIXTURES, REPO_ROOT, compose, run_script
from tests.wandb_offline import read_run

SAMPLE = REPO_ROOT / "sr_adapt" / "assets" / "sample_data"


def test_every_batch_mixes_lr_only_samples_at_the_ratio() -> None:
    dm = SRDataModule(
        scale=4, patch_size=64, batch_size=4, epoch_size=12, unpaired_ratio=0.5, num_workers=0,
        train_sources={
            "paired": partial(HRFolderDataset, hr_dir=SAMPLE / "DF2K" / "HR"),
            "video": partial(VideoFrameDataset, paths=[SAMPLE / "video"]),
        },
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    for b in batches:
        assert b["paired"].tolist() == [False, False, True, True]
        assert b["lr"].shape == (4, 3, 16, 16) and b["hr"].shape == (4, 3, 64, 64)
        assert all("bikes.mp4" in n for n in b["name"][:2])
        assert b["hr"][:2].abs().sum() == 0 and b["hr"][2:].abs().sum() > 0


def test_ratio_without_lr_only_source_is_a_config_error() -> None:
    dm = SRDataModule(scale=4, patch_size=64, batch_size=4, unpaired_ratio=0.3, num_workers=0,
                      train_sources={"paired": partial(HRFolderDataset, hr_dir=SAMPLE / "DF2K" / "HR")})
    with pytest.raises(DataError, match="unpaired_ratio"):
        dm.setup("fit")


def test_init_from_official_weights_and_freeze() -> None:
    primal, dual = FIXTURES / "drn_tiny_x4_official.pt", FIXTURES / "drn_tiny_x4_official_dual.pt"
    net = DRN(scale=4, n_blocks=2, n_feats=4)
    module = AdaptLitModule(net=net, optimizer=partial(torch.optim.Adam, lr=1e-2), init_from=str(primal),
                          init_dual_from=str(dual), freeze=["duals"])
    ref = load_checkpoint(primal, dual_path=dual)
    for a, b in zip(module.net.state_dict().values(), ref.net.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(module.duals[1].dual_module[1].weight, ref.duals[1].dual_module[1].weight)
    assert not any(p.requires_grad for p in module.duals.parameters())
    assert [len(g["params"]) for g in module.configure_optimizers().param_groups] == [len(list(net.parameters())), 0]
    with pytest.raises(ValueError, match="n_feats"):  # weights of another size
        AdaptLitModule(net=DRN(scale=4, n_blocks=1, n_feats=8), optimizer=torch.optim.Adam, init_from=str(primal))
    with pytest.raises(ConfigError, match="model.freeze"):
        AdaptLitModule(net=DRN(scale=4, n_blocks=1, n_feats=8), optimizer=torch.optim.Adam, freeze=["nets.head"])


def test_video_experiment_writes_a_readable_offline_wandb_run(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=drn_unpaired_video", "debug=fast", "logger=wandb"], tmp_path)
    metrics = fit(cfg)
    for key in ("val/psnr", "val/ssim", "adapt/lr_consistency_psnr", "adapt/sharpness", "adapt/target_consistency_psnr",
                "train/target_loop"):
        assert key in metrics
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = read_run(runs[0])
    logged = {k for row in run["history"] for k in row}
    assert {"train/loss", "train/primal", "train/dual_paired", "train/target_loop", "val/psnr", "val/ssim",
            "adapt/lr_consistency_psnr", "adapt/sharpness", "adapt/target_consistency_psnr"} <= logged
    assert any(m.startswith("files/media/images/adapt/degradation") for m in run["media"])
    last_psnr = [row["val/psnr"] for row in run["history"] if "val/psnr" in row][-1]
    assert last_psnr == pytest.approx(metrics["val/psnr"], rel=1e-5)
    assert any("panel" in m and m.endswith(".png") for m in run["media"])  # image panels
    assert any(m.startswith("files/media/images/adapt") for m in run["media"])
    assert run["config"]["model"]["dual_weight"] == 0.1  # the resolved config
    assert run["config"]["data"]["unpaired_ratio"] == 0.25 and run["config"]["model"]["target_dual"] == "estimated"
    assert "debug" in run["tags"]
    assert (tmp_path / "metrics.json").is_file() and list((tmp_path / "panels").glob("adapt_panel_*.png"))


def test_video_source_bad_path_names_the_config_key(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=drn_unpaired_video", "debug=fast", "logger=csv",
                            f"data.train_sources.video.paths=[{tmp_path}/missing.mp4]"], tmp_path)
    with pytest.raises(DataError, match=r"(?s)data\.train_sources\.video\.paths.*missing\.mp4"):
        fit(cfg)


def _sweep(tmp_path: Path, *args: str):
    proc = run_script("train.py", "-m", "experiment=drn_unpaired_video", "debug=fast", *args,
                      f"hydra.sweep.dir={tmp_path}/sweep", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())


def test_cli_optuna_sweep_jobs_have_their_own_dir_run_and_metrics_and_the_best_is_reported(tmp_path: Path) -> None:
    jobs = _sweep(tmp_path, "hparams_search=drn_adapt_optuna", "hydra.sweeper.n_trials=2")
    assert len(jobs) == 2
    scores = []
    for job in jobs:
        scores.append(json.loads((job / "metrics.json").read_text())["val/psnr"])
        (run,) = list((job / "wandb").glob("offline-run-*"))
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        for key in ("dual_weight", "target_weight"):
            assert read_run(run)["config"]["model"][key] == pytest.approx(float(overrides[f"model.{key}"]))
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"model.dual_weight", "model.target_weight", "data.unpaired_ratio",
                                          "model.optimizer.lr"}
    assert result["best_value"] == pytest.approx(max(scores))


@pytest.mark.slow
def test_full_grid_sweep_from_the_readme(tmp_path: Path) -> None:
    jobs = _sweep(tmp_path, "model.dual_weight=0.01,0.1,1", "data.unpaired_ratio=0.1,0.3")
    assert len(jobs) == 6 and all((j / "metrics.json").is_file() for j in jobs)


def test_adaptation_benchmark_at_tiny_size_reports_every_arm(tmp_path: Path) -> None:
    """The benchmark end to end on bundled data: target LR set, estimate and its error, control /
    adapted / oracle arms over two seeds, scores of bicubic / unadapted / each arm and of a
    non-adapting DRRN baseline (tiny nets, debug-sized training). The run folder has a quote and a
    comma in its name: the training runs get their paths as values, not overrides."""
    out = tmp_path / "adapt.json"
    run = tmp_path / "it's, odd"
    proc = run_script(
        "benchmark_adaptation.py", f"hr_dir={SAMPLE / 'DF2K' / 'HR'}", f"output={out}", f'hydra.run.dir="{run}"',
        f"source_ckpt={FIXTURES / 'drn_tiny_x4_official.pt'}", "seeds=[1,2]", "adapt.steps=2",
        f"baselines=[{FIXTURES / 'drrn_port_tiny_c8.pth'}]",
        "adapt.overrides=['logger=csv','data.batch_size=4','data.patch_size=32','data.num_workers=0']",
        "degradation_estimate.method=cross_scale",  # the parametric estimate in the truth's family: close to exact
        "degradation_estimate.downsample=bicubic",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    # blur 1.6 + x4 bicubic + noise 2/255 on the four bundled crops; a random tiny DRN as the source
    assert report["arms"] == ["control", "adapted", "oracle"]
    got = {key: round(report[key]["psnr"], 3) for key in ("bicubic", "unadapted", "control", "adapted", "oracle")}
    assert got == pytest.approx(PINNED_BENCHMARK, abs=0.003)
    for arm in report["arms"]:
        assert [r["seed"] for r in report[arm]["runs"]] == [1, 2] and report[arm]["psnr_std"] >= 0
        assert all(Path(r["ckpt"]).is_file() for r in report[arm]["runs"])
    assert report["gain_db"] == pytest.approx(report["adapted"]["psnr"] - report["control"]["psnr"])
    err = report["estimate_error"]
    # calibrated on the same crops it estimates from (hr_dir is the paired set here): close to exact
    assert abs(err["sigma_major"]) < 0.05 and abs(err["noise_sigma"]) < 0.1 and err["lr_psnr_db"] > 60
    assert {"estimate_s", "control_seed1_s", "oracle_seed2_s", "total_s"} <= set(report["seconds"])
    drrn = report["baselines"]["drrn_port_tiny_c8"]
    assert drrn["model"].startswith("DRRN") and drrn["psnr"] == pytest.approx(27.567, abs=0.003)
    assert (run / "degradation_estimate.pt").is_file() and (run / "degradation_truth.png").is_file()
    assert (run / "adapted_seed2" / "checkpoints" / "last.ckpt").is_file()
    assert "adapted - control" in proc.stdout


PINNED_BENCHMARK = {"bicubic": 27.619, "unadapted": 13.653, "control": 13.657, "adapted": 13.641, "oracle": 13.642}


def test_adaptation_benchmark_per_image_on_the_field_recipe(tmp_path: Path) -> None:
    """degradation=div2krk: a DIV2KRK kernel per image, each image adapted on its own (its estimate, its
    arms; the control once), the KernelGAN-style arm beside them, rows per image with the kernel
    scores and seconds (tiny nets and steps, two bundled crops)."""
    from tests.conftest import run_task

    hr = tmp_path / "hr"
    for name in ("0001.png", "0002.png"):
        save_image(load_image(SAMPLE / "DF2K" / "HR" / name), hr / name)
    report = run_task("benchmark_adaptation", [
        f"hr_dir={hr}", "degradation=div2krk", f"source_ckpt={FIXTURES / 'drn_tiny_x4_official.pt'}", "seeds=[1]",
        "adapt.steps=2", "adapt.overrides=['logger=csv','data.batch_size=4','data.patch_size=32','data.num_workers=0']",
        "kernelgan.iterations=3", "kernelgan.crop=32", f"work_dir={tmp_path}/run", f"output={tmp_path}/r.json",
    ], tmp_path)
    assert report["per_image"] and report["arms"] == ["control", "adapted", "oracle", "kernelgan"]
    assert list(report["images"]) == ["0001", "0002"]
    for stem, row in report["images"].items():
        assert {"bicubic", "unadapted", "control", "adapted", "oracle", "kernelgan"} <= set(row)
        assert row["estimate_error"]["lr_psnr_db"] > 30 and "lr_psnr_db" in row["kernelgan_error"]
        assert {"estimate_s", "kernelgan_s", "adapted_seed1_s", "image_s"} <= set(row["seconds"])
        assert (tmp_path / "run" / "images" / stem / "degradation_truth.pt").is_file()
    for arm in report["arms"]:
        assert report[arm]["psnr"] == pytest.approx(np.mean([r[arm]["psnr"] for r in report["images"].values()]))
    assert report["control"]["runs"][0]["seed"] == 1
    assert not (tmp_path / "run" / "images" / "0001" / "control_seed1").exists()  # the control is trained once
    assert report["estimate_lr_psnr_db"] > 30 and report["seconds_per_image"]["estimate_s"] < report["seconds_per_image"]["kernelgan_s"] + 60
    truth = load_degradation(tmp_path / "run" / "images" / "0002" / "degradation_truth.pt")
    assert truth.correction is not None and truth.correction.shape == (13, 13)
