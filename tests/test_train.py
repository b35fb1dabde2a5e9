"""Closed-loop training: loss wiring, spike skip, Hydra composition, run contracts, resume."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from sr_adapt.errors import ConfigError, DataError
from sr_adapt.training.adapt_module import AdaptLitModule, closed_loop_losses
from sr_adapt.models.drn import DRN
from sr_adapt.training.fit import fit
from tests.conftest import EXPERIMENTS, compose, run_script


def _tiny_module(**kw) -> AdaptLitModule:
    net = DRN(scale=4, n_blocks=1, n_feats=8)
    return AdaptLitModule(net=net, optimizer=partial(torch.optim.Adam, lr=1e-3), scheduler=None, **kw)


def _batch(b: int = 2, h: int = 8) -> dict:
    hr = torch.rand(b, 3, 4 * h, 4 * h)
    return {"lr": torch.rand(b, 3, h, h), "lr_levels": [torch.rand(b, 3, h, h), torch.rand(b, 3, 2 * h, 2 * h)], "hr": hr}


def test_closed_loop_losses_follow_the_official_terms() -> None:
    module = _tiny_module()
    batch = _batch()
    sr = module.net(batch["lr"])
    terms = closed_loop_losses(sr, module.duals, batch["lr_levels"], batch["hr"])
    lr0, lr1 = batch["lr_levels"]
    expected_primal = F.l1_loss(sr[2], batch["hr"]) + F.l1_loss(sr[0], lr0) + F.l1_loss(sr[1], lr1)
    expected_dual = F.l1_loss(module.duals[0](sr[1]), lr0) + F.l1_loss(module.duals[1](sr[2]), lr1)
    # batch mean of the per-sample terms == the official batch-mean L1 (equal-size samples)
    assert torch.allclose(terms["primal"].mean(), expected_primal) and torch.allclose(terms["dual"].mean(), expected_dual)


def test_lr_only_samples_get_only_the_level0_dual_loss() -> None:
    module = _tiny_module()
    batch = _batch(b=3)
    paired = torch.tensor([False, True, False])
    sr = module.net(batch["lr"])
    terms = closed_loop_losses(sr, module.duals, batch["lr_levels"], batch["hr"], paired)
    assert terms["primal"][0] == 0 and terms["primal"][2] == 0 and terms["primal"][1] > 0
    lr0 = batch["lr_levels"][0]
    expected_unpaired = (module.duals[0](sr[1]) - lr0).abs().flatten(1).mean(1)
    assert torch.allclose(terms["dual"][[0, 2]], expected_unpaired[[0, 2]])
    full = closed_loop_losses(sr, module.duals, batch["lr_levels"], batch["hr"])
    assert torch.allclose(terms["dual"][1], full["dual"][1]) and torch.allclose(terms["primal"][1], full["primal"][1])
    # placeholders of LR-only samples (hr, higher LR levels) cannot leak into the loss
    batch["hr"][[0, 2]] = 1e6
    batch["lr_levels"][1][[0, 2]] = -1e6
    again = closed_loop_losses(sr, module.duals, batch["lr_levels"], batch["hr"], paired)
    assert torch.allclose(again["primal"], terms["primal"]) and torch.allclose(again["dual"], terms["dual"])
    # gradients of an LR-only sample reach the primal net and dual model 0 only
    module.zero_grad()
    unpaired_only = closed_loop_losses(sr, module.duals, batch["lr_levels"], batch["hr"], torch.tensor([False] * 3))
    unpaired_only["dual"].mean().backward()
    assert module.duals[0].dual_module[1].weight.grad.abs().sum() > 0
    assert module.duals[1].dual_module[1].weight.grad is None or module.duals[1].dual_module[1].weight.grad.abs().sum() == 0
    assert module.net.head.weight.grad.abs().sum() > 0


def test_one_step_updates_primal_and_every_dual_model() -> None:
    module = _tiny_module(dual_weight=0.1)
    opt = module.configure_optimizers()
    assert [g["name"] for g in opt.param_groups] == ["primal", "dual"]
    before = [d.dual_module[1].weight.detach().clone() for d in module.duals]
    head_before = module.net.head.weight.detach().clone()
    batch = _batch()
    sr = module.net(batch["lr"])
    terms = closed_loop_losses(sr, module.duals, batch["lr_levels"], batch["hr"])
    (terms["primal"] + 0.1 * terms["dual"]).mean().backward()
    for d in module.duals:
        assert d.dual_module[0][0].weight.grad is not None and d.dual_module[0][0].weight.grad.abs().sum() > 0
    opt.step()
    assert all(not torch.equal(b, d.dual_module[1].weight) for b, d in zip(before, module.duals))
    assert not torch.equal(head_before, module.net.head.weight)
    # dual_weight = 0 leaves the duals without gradient through the total loss
    module.zero_grad()
    sr = module.net(batch["lr"])
    terms = closed_loop_losses(sr, module.duals, batch["lr_levels"], batch["hr"])
    (terms["primal"] + 0.0 * terms["dual"]).mean().backward()
    assert float(module.duals[0].dual_module[0][0].weight.grad.abs().sum()) == 0.0


def test_training_runs_channels_last_on_a_cpu_by_default() -> None:
    # oneDNN's convolutions without layout reorders: 1.86x per step for the main job (BENCHMARKS.md)
    module = _tiny_module()
    module.setup("fit")
    assert module.net.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert module.duals[0].dual_module[1].weight.is_contiguous(memory_format=torch.channels_last)
    off = _tiny_module(channels_last=False)
    off.setup("fit")
    assert not off.net.head.weight.is_contiguous(memory_format=torch.channels_last)


class _FakeStrategy:
    def reduce(self, t, reduce_op="mean"):
        return t


class _FakeTrainer:
    strategy = _FakeStrategy()


def test_loss_spike_batch_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _tiny_module(skip_threshold=10.0)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    monkeypatch.setattr(module, "log_dict", lambda *a, **k: None)
    monkeypatch.setattr(module, "optimizers", lambda: module.configure_optimizers())
    monkeypatch.setattr(AdaptLitModule, "trainer", property(lambda self: _FakeTrainer()))
    batch = _batch()
    assert module.training_step(batch, 0) is not None  # first epoch: no reference loss yet
    module.error_last = 1e-6  # previous epoch's mean loss was tiny: this batch is a spike
    assert module.training_step(batch, 1) is None
    module.error_last = 1e3
    assert module.training_step(batch, 2) is not None


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_debug_fast(experiment: str, tmp_path: Path) -> None:
    cfg = compose("train", [f"experiment={experiment}", "debug=fast"], tmp_path)
    metrics = fit(cfg)
    assert metrics["global_step"] == cfg.trainer.max_steps
    assert math.isfinite(metrics["val/psnr"]) and 0 < metrics["val/ssim"] <= 1
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val/psnr"] == pytest.approx(metrics["val/psnr"])


def test_cli_contract_debug_fast_run_resume_and_bad_input(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_script("train.py", "experiment=drn_paired", "debug=fast", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"config.yaml", "train.log", "metrics.json", ".hydra", "checkpoints", "wandb"} <= {p.name for p in run_dir.iterdir()}
    last = run_dir / "checkpoints" / "last.ckpt"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert last.is_file() and {"val/psnr", "val/ssim"} <= set(metrics)
    assert metrics["global_step"] == 4
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["sr_adapt"]["arch"] == "drn" and ckpt["sr_adapt"]["hparams"]["n_feats"] == 8
    assert any(k.startswith("duals.1.") for k in ckpt["state_dict"])
    assert not list(run_dir.glob("checkpoints/*.tmp"))  # atomic writes leave no temporaries

    # resume from last.ckpt and train 4 more steps (in-process: same code path as the CLI)
    cfg = compose("train", ["experiment=drn_paired", "debug=fast", f"ckpt_path={last}", "trainer.max_steps=8"], tmp_path / "resumed")
    resumed = fit(cfg)
    assert resumed["global_step"] == 8

    proc = run_script(
        "train.py", "experiment=drn_paired", "debug=fast", f"paths.data_dir={tmp_path}/nowhere", f"hydra.run.dir={tmp_path}/r"
    )
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_main_job_starts_quietly_from_the_default_run_folder(tmp_path: Path) -> None:
    # run from a working folder of its own: the run folder is the default one, under ${hydra:runtime.cwd}
    proc = run_script("train.py", "experiment=drn_unpaired_video", "debug=fast", "logger=csv", "data.num_workers=auto",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for noise in ("InterpolationResolutionError", "HydraConfig was not set", "litlogger", "LeafSpec",
                  "worker processes in total", "Warning", "WARNING"):
        assert noise not in out, (noise, out[-3000:])
    assert list(tmp_path.glob("logs/**/metrics.json"))


def test_progress_bar_counts_the_run_and_can_be_turned_off(tmp_path: Path) -> None:
    # issue 25: the bar showed "Epoch 0/-2" and the time left of one epoch (a validation interval)
    cfg = compose("train", ["experiment=drn_paired", "debug=fast", "logger=csv", "trainer.max_steps=6",
                            f"+callbacks.spy._target_={__name__}.BarSpy"], tmp_path / "a")
    BarSpy.seen.clear()
    fit(cfg)
    assert BarSpy.seen[-1] == (6, 6, "Steps")  # all of the run's steps, over the epochs (2 batches each)
    assert {total for total, _, _ in BarSpy.seen} == {6}
    off = compose("train", ["experiment=drn_paired", "debug=fast", "logger=csv", "+trainer.enable_progress_bar=false"],
                  tmp_path / "b")
    assert fit(off)["global_step"] == 4


class BarSpy(pl.Callback):
    """Test helper: (total, completed, description) of the run's progress bar at each training step's end and
    at the end of training."""

    seen: list = []

    def _look(self, trainer: pl.Trainer) -> None:
        bar = trainer.progress_bar_callback
        if bar is not None and bar.progress is not None and bar.train_progress_bar_id is not None:
            task = bar.progress.tasks[bar.train_progress_bar_id]
            BarSpy.seen.append((task.total, task.completed, task.description.strip()))

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self._look(trainer)

    def on_train_end(self, trainer: pl.Trainer, *args) -> None:
        self._look(trainer)


def test_an_unknown_budget_is_named_before_any_work(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=drn_unpaired_video", "debug=fast", "logger=csv", "budget=tpu"], tmp_path)
    with pytest.raises(ConfigError, match=r"budget=tpu: choose one of auto, cpu, gpu"):
        fit(cfg)
    assert not (tmp_path / "degradation.pt").exists()


def test_data_workers_follow_the_usable_cores(monkeypatch) -> None:
    from sr_adapt.training import datamodule

    for cores, workers in ((1, 1), (2, 1), (4, 3), (16, 8), (64, 8)):
        monkeypatch.setattr(datamodule, "usable_cores", lambda cores=cores: cores)  # the cores of this process
        assert datamodule.data_workers("auto") == workers
        assert datamodule.data_workers("auto", processes=2) == max(1, min(8, (cores - 2) // 2))  # two DDP ranks
    assert datamodule.data_workers(0) == 0 and datamodule.data_workers(3) == 3
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ConfigError, match=f"data.num_workers={bad}: give a count"):
            datamodule.data_workers(bad)


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=drn_paired", "debug=fast", f"paths.data_dir={tmp_path}/nowhere"], tmp_path)
    with pytest.raises(DataError) as info:
        fit(cfg)
    msg = str(info.value)
    assert "nowhere" in msg and "data.train_sources.paired" in msg


def test_bad_config_values_are_named(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=drn_paired", "debug=fast", "data.patch_size=66"], tmp_path)
    with pytest.raises(DataError, match="patch_size"):
        fit(cfg)
    cfg = compose("train", ["experiment=drn_paired", "debug=fast", f"ckpt_path={tmp_path}/none.ckpt"], tmp_path)
    with pytest.raises(ValueError, match="ckpt_path"):
        fit(cfg)


@pytest.mark.slow
def test_ddp_spawn_on_two_cpu_processes(tmp_path: Path) -> None:
    cfg = compose(
        "train",
        ["experiment=drn_paired", "debug=fast", "trainer.strategy=ddp_spawn", "trainer.devices=2", "trainer.max_steps=2"],
        tmp_path,
    )
    fit(cfg)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert "val/psnr" in json.loads((tmp_path / "metrics.json").read_text())
