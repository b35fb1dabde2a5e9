"""Reliability of training runs: the last checkpoint is always the latest step, resume re-derives what
changed, SIGTERM saves and exits non-zero, bad ckpt_path / numbers are named before any work."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from sr_adapt.errors import ConfigError
from sr_adapt.training.fit import TrainingStopped, fit
from tests.community_models import save_community
from tests.conftest import REPO_ROOT, compose, run_script

FAST = ["experiment=drn_paired", "debug=fast", "logger=csv"]


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_last_checkpoint_is_the_latest_step_when_validation_gets_worse(tmp_path: Path, monkeypatch) -> None:
    from sr_adapt.training.base_module import SRLitModule

    def falling(self) -> None:  # val/psnr falls at every validation (steps 2, 4, 6, 8)
        for metric in (*self.val_psnr, *self.val_ssim):
            metric.reset()
        self.log("val/psnr", 30.0 - self.global_step)
        self.log("val/ssim", 0.5)

    monkeypatch.setattr(SRLitModule, "on_validation_epoch_end", falling)
    cfg = compose("train", [*FAST, "trainer.max_steps=8", "callbacks.last_checkpoint.every_n_train_steps=3"], tmp_path)
    fit(cfg)
    ckpts = tmp_path / "checkpoints"
    best = list(ckpts.glob("step*.ckpt"))
    assert [p.name for p in best] == ["step0000002-psnr28.00.ckpt"] and _step(best[0]) == 2  # the best stays
    assert _step(ckpts / "last.ckpt") == 8
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 8 and metrics["finished"] is True


def test_resume_with_more_steps_re_derives_the_schedule_and_names_what_changed(tmp_path: Path) -> None:
    first = compose("train", [*FAST, "trainer.max_steps=4"], tmp_path / "a")
    fit(first)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    lr0 = float(first.model.optimizer.lr)
    cfg = compose("train", [*FAST, f"ckpt_path={last}", "trainer.max_steps=12", f"model.optimizer.lr={2 * lr0}"],
                  tmp_path / "b")
    with pytest.warns(UserWarning, match=r"model.optimizer.lr .* -> .*model.scheduler.T_max 4 -> 12"):
        assert fit(cfg)["global_step"] == 12
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sched = state["lr_schedulers"][0]
    assert sched["T_max"] == 12 and sched["base_lrs"][0] == pytest.approx(2 * lr0)
    eta = float(cfg.model.scheduler.eta_min)
    closed = eta + (2 * lr0 - eta) * (1 + torch.cos(torch.tensor(torch.pi * 12 / 12))) / 2
    assert sched["_last_lr"][0] == pytest.approx(float(closed), rel=1e-4, abs=1e-9)  # the end of the new cosine


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("data.batch_size=0", r"data.batch_size=0: give an integer >= 1"),
        ("data.batch_size=-2", r"data.batch_size=-2: give an integer >= 1"),
        ("trainer.max_steps=abc", r"trainer.max_steps='abc': give an integer >= -1"),
        ("trainer.max_steps=0", r"trainer.max_steps=0: give the number of steps"),
        ("model.dual_weight=-1", r"model.dual_weight=-1: give a number >= 0"),
        ("model.optimizer.lr=0", r"model.optimizer.lr=0: give a number > 0"),
        ("data.unpaired_ratio=1.5", r"data.unpaired_ratio=1.5: give a number in \[0, 1\]"),
        ("callbacks.last_checkpoint.every_n_train_steps=-5", r"every_n_train_steps=-5: give an integer >= 0"),
    ],
)
def test_bad_numbers_are_named_before_anything_is_created(tmp_path: Path, override: str, pattern: str) -> None:
    cfg = compose("train", [*FAST, override], tmp_path / "run")
    with pytest.raises(ConfigError, match=pattern):
        fit(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "plain_weights", "booby_trapped", "wrong_scale"])
def test_bad_ckpt_path_is_a_clean_error_naming_the_key(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "truncated":
        good = tmp_path / "good"
        fit(compose("train", FAST, good))
        path.write_bytes((good / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    elif kind == "plain_weights":
        torch.save({"state_dict": {"net.head.weight": torch.zeros(1)}}, path)
    elif kind == "booby_trapped":
        class Trap:
            def __reduce__(self):  # would run a shell command if unpickled unsafely
                return (os.system, ("touch " + str(tmp_path / "pwned"),))

        torch.save({"state_dict": Trap()}, path)
    else:
        good = tmp_path / "good"
        fit(compose("train", FAST, good))
        path = good / "checkpoints" / "last.ckpt"
    overrides = [*FAST, f"ckpt_path={path}"] + (["scale=2", "data.patch_size=32"] if kind == "wrong_scale" else [])
    with pytest.raises(ConfigError, match=r"ckpt_path=") as info:
        fit(compose("train", overrides, tmp_path / "run"))
    assert "weights_only=False" not in str(info.value) and not (tmp_path / "pwned").exists()
    assert not (tmp_path / "run").exists()


def test_cli_bad_ckpt_path_exits_2_in_one_line_and_leaves_no_run_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_text("garbage")
    run_dir = tmp_path / "run"
    proc = run_script("train.py", *FAST, f"ckpt_path={bad}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and "ckpt_path=" in proc.stderr
    assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr
    assert not run_dir.exists()


def test_sigterm_saves_the_step_reached_exits_non_zero_and_marks_metrics_unfinished(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), *FAST, "trainer.max_steps=100000",
         "data.epoch_size=400000", "callbacks.last_checkpoint.every_n_train_steps=0", f"hydra.run.dir={run_dir}"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (run_dir / "config.yaml").exists():
            time.sleep(0.5)
        time.sleep(10)  # start-up, then some steps
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode not in (0, None), err[-2000:]
    assert "stopped by SIGTERM" in err and "resume with ckpt_path=" in err and "Traceback" not in err
    last = run_dir / "checkpoints" / "last.ckpt"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] is False and metrics["stopped_by"] == "SIGTERM"
    assert _step(last) == metrics["global_step"] > 0


def test_kill_9_in_the_middle_of_saving_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    from sr_adapt.io.atomic import atomic_torch_save

    target = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 0, "w": torch.zeros(4)}, target)
    writer = (f"import torch\nfrom sr_adapt.io.atomic import atomic_torch_save\n"
              f"for step in range(1, 10**6):\n"
              f"    atomic_torch_save({{'step': step, 'w': torch.rand(3_000_000)}}, {str(target)!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO_ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and torch.load(target, weights_only=True)["step"] < 2:
            time.sleep(0.2)
        time.sleep(0.37)  # somewhere inside a save
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait()
    state = torch.load(target, weights_only=True)  # the last complete save, never a torn file
    assert state["step"] >= 2 and state["w"].shape == (3_000_000,)


class SigtermAtStep(pl.Callback):
    """Test helper (a Hydra ``+callbacks`` entry): SIGTERM to this process after training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize(("experiment", "stop_at"), [
    ("drn_paired", 3),  # mid-epoch (2 batches per epoch)
    pytest.param("drn_paired", 4, marks=pytest.mark.slow),  # at an epoch end
    ("drn_unpaired_video", 3),  # mixed batches: video LR-only + paired, the video source's duplicate check
    ("adapt_video span", 3),  # community weights (spandrel): the wrapped network and its input correction
])
def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path: Path, experiment: str, stop_at: int) -> None:
    experiment, _, community = experiment.partition(" ")
    base = [f"experiment={experiment}", "debug=fast", "logger=csv", "trainer.max_steps=8", "seed=7"]
    if community:
        base.append(f"model.init_from={save_community(community, tmp_path / 'weights')}")
    fit(compose("train", base, tmp_path / "whole"))
    stopper = [f"+callbacks.stop._target_={__name__}.SigtermAtStep", f"+callbacks.stop.step={stop_at}"]
    with pytest.raises(TrainingStopped, match=f"step {stop_at}"):
        fit(compose("train", [*base, *stopper], tmp_path / "part"))
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert _step(last) == stop_at
    # the resumed process starts with other random states: they come from the checkpoint
    torch.manual_seed(12345)
    fit(compose("train", [*base, "seed=null", f"ckpt_path={last}"], tmp_path / "resumed"))
    whole = _weights(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    resumed = _weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert whole.keys() == resumed.keys()
    different = [k for k in whole if not torch.equal(whole[k], resumed[k])]
    assert not different, different


class CrashAtStep(pl.Callback):
    """Test helper: the process dies in the middle of training step ``step`` (after its backward pass,
    before its optimizer step); ``sigkill``: a real SIGKILL (no hook, no cleanup), else an exception
    that no callback saves on (what a crash leaves is the periodic ``last.ckpt``)."""

    def __init__(self, step: int, sigkill: bool = False) -> None:
        self.step, self.sigkill = step, sigkill

    def on_before_optimizer_step(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            if self.sigkill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"simulated crash in step {self.step}")


def _crash_resume(tmp_path: Path, base: list[str], step: int) -> tuple[dict, dict]:
    periodic = [*base, "callbacks.last_checkpoint.every_n_train_steps=1"]
    fit(compose("train", periodic, tmp_path / "whole"))
    crash = [f"+callbacks.crash._target_={__name__}.CrashAtStep", f"+callbacks.crash.step={step}"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(compose("train", [*periodic, *crash], tmp_path / "part"))
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert _step(last) == step  # the periodic save of the step before the crash
    torch.manual_seed(12345)
    fit(compose("train", [*periodic, "seed=null", f"ckpt_path={last}"], tmp_path / "resumed"))
    return _weights(tmp_path / "whole" / "checkpoints" / "last.ckpt"), \
        _weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize(("experiment", "step"), [
    ("drn_paired", 2),  # saved at an epoch's last batch (2 batches per epoch), before its validation
    ("drn_paired", 3),  # saved mid-epoch
    pytest.param("drn_paired", 5, marks=pytest.mark.slow),
    ("drn_unpaired_video", 4),  # video LR-only + paired + target / internal pairs, at an epoch's end
    pytest.param("drn_unpaired_video", 2, marks=pytest.mark.slow),
])
def test_a_crashed_run_resumed_from_its_periodic_checkpoint_equals_the_uninterrupted_one(
    tmp_path: Path, experiment: str, step: int
) -> None:
    # issue 25: a save at an epoch's last batch resumed one epoch of data ahead (1e-4 off after 8 steps)
    whole, resumed = _crash_resume(tmp_path, [f"experiment={experiment}", "debug=fast", "logger=csv",
                                              "trainer.max_steps=8", "seed=7"], step)
    different = [k for k in whole if not torch.equal(whole[k], resumed[k])]
    assert whole.keys() == resumed.keys() and not different, different


def test_cli_sigkill_mid_step_then_resume_is_bit_exact(tmp_path: Path) -> None:
    base = ["experiment=drn_unpaired_video", "debug=fast", "logger=csv", "trainer.max_steps=6", "seed=7",
            "callbacks.last_checkpoint.every_n_train_steps=1"]
    fit(compose("train", base, tmp_path / "whole"))
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train.py"), *base,
                           f"+callbacks.crash._target_={__name__}.CrashAtStep", "+callbacks.crash.step=3",
                           "+callbacks.crash.sigkill=true", f"hydra.run.dir={tmp_path / 'part'}"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert _step(last) == 3
    fit(compose("train", [*base, "seed=null", f"ckpt_path={last}"], tmp_path / "resumed"))
    whole = _weights(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    resumed = _weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert not [k for k in whole if not torch.equal(whole[k], resumed[k])]


@pytest.mark.parametrize(("failure", "pattern"), [
    (OSError(errno.ENOSPC, "No space left on device"), r"the disk is full; \d+ MiB free in .*; free some space"),
    (RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 2048 vs 1990"), r"the write stopped part-way .*; check the disk"),
])
def test_a_full_disk_while_saving_a_checkpoint_is_named_and_keeps_the_previous_file(
    tmp_path: Path, monkeypatch, failure: BaseException, pattern: str
) -> None:
    from sr_adapt.errors import OutputError

    cfg = compose("train", [*FAST, "trainer.max_steps=4", "callbacks.last_checkpoint.every_n_train_steps=2"], tmp_path)
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("global_step") == 4:  # the disk fills up before the step-4 save
            Path(f).write_bytes(b"PK\x03\x04 partial")
            raise failure
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OutputError, match=r"cannot write .*\.ckpt: " + pattern):
        fit(cfg)
    ckpts = tmp_path / "checkpoints"
    assert _step(ckpts / "last.ckpt") == 2  # the step-2 save is intact; no temporary file left
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]


def test_cli_unwritable_run_folder_is_one_line_naming_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_script("train.py", *FAST, f"hydra.run.dir={blocker}/run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"hydra.run.dir={blocker}/run" in proc.stderr and "is a file, not a folder" in proc.stderr


class _Trap:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # would create the marker file if unpickled unsafely
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["truncated", "booby_trapped"])
@pytest.mark.parametrize("path_key", ["evaluate", "upscale", "export", "init_from", "ckpt_path"])
def test_damaged_or_unsafe_weights_are_refused_on_every_path(tmp_path: Path, kind: str, path_key: str) -> None:
    from sr_adapt.errors import SRAdaptError
    from sr_adapt.tasks import evaluate, export, upscale
    from tests.conftest import MINI

    marker = tmp_path / "pwned"
    bad = tmp_path / f"{kind}.ckpt"
    if kind == "truncated":
        torch.save({"state_dict": {"net.head.weight": torch.rand(64, 3, 3, 3)}, "global_step": 1}, bad)
        bad.write_bytes(bad.read_bytes()[:700])
    else:
        torch.save({"state_dict": {"net.head.weight": _Trap(marker)}}, bad)
    key = {"init_from": "model.init_from", "ckpt_path": "ckpt_path"}.get(path_key, "ckpt_path")
    common = ["model=drn_s", "scale=4", f"ckpt_path={bad}"]
    with pytest.raises(SRAdaptError) as info:
        if path_key == "evaluate":
            evaluate.run(compose("evaluate", [*common, f"benchmarks=[{MINI}]"], tmp_path))
        elif path_key == "upscale":
            upscale.run(compose("upscale", [*common, f"input={MINI / 'coffee.png'}", f"output={tmp_path / 'o.png'}"],
                                tmp_path))
        elif path_key == "export":
            export.run(compose("export", [*common, f"output={tmp_path / 'm.onnx'}"], tmp_path))
        else:
            fit(compose("train", [*FAST, f"{key}={bad}"], tmp_path))
    message = str(info.value)
    assert bad.name in message and "weights_only" not in message and "Traceback" not in message
    if path_key in ("init_from", "ckpt_path"):
        assert key in message
    assert not marker.exists()
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "o.png").exists()
