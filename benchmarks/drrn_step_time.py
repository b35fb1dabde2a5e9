#!/usr/bin/env python
"""Step time of the DRRN paper recipe: ``DRRNLitModule`` under ``pl.Trainer`` vs a plain PyTorch loop.

Both sides train the same DRRN (identical initial weights) on the same fixed random batch of
(upsampled Y, HR Y) patches (B, 1, P, P) with the recipe's math: summed MSE, SGD (lr 0.1, momentum
0.9, weight decay 1e-4), gradient norm clipped to theta / lr. "ours" is the real module trained by
``Trainer.fit`` (no logger, no checkpointing, no progress bar); "plain" is the loop written out by
hand. Repetitions alternate between the two; each times ``--steps`` steps after one warm-up step.
Reported: median ms/step per side and the ratio ours/plain (samples/s), plus the device.

    python benchmarks/drrn_step_time.py                              # B1U25, 128 features, batch 128, CPU
    python benchmarks/drrn_step_time.py --batch 16 --steps 3 --reps 3
    python benchmarks/drrn_step_time.py --device cuda --steps 20 --reps 5 --json drrn_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from functools import partial

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from sr_adapt.training.drrn_module import DRRNLitModule
from sr_adapt.models.drrn import DRRN


class FixedBatches(Dataset):
    """The same in-memory batch ``n`` times (items are whole batches)."""

    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch


class StepTimer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.times = warmup, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def run_ours(net: DRRN, batch: dict, steps: int, device: str, theta: float) -> float:
    module = DRRNLitModule(net, optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4),
                           scheduler=None, clip_theta=theta)
    timer = StepTimer(1)
    trainer = pl.Trainer(max_steps=steps + 1, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, DataLoader(FixedBatches(batch, steps + 1), batch_size=None))
    return (timer.times[-1] - timer.times[0]) / steps


def run_plain(net: DRRN, batch: dict, steps: int, device: str, theta: float) -> float:
    net = net.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = batch["lr_up_y"].to(device), batch["hr_y"].to(device)
    marks = []
    for _ in range(steps + 1):
        loss = F.mse_loss(net(x), y, reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), theta / opt.param_groups[0]["lr"])
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
    return (marks[-1] - marks[0]) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-blocks", type=int, default=1)
    p.add_argument("--n-units", type=int, default=25)
    p.add_argument("--n-feats", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--patch", type=int, default=31)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = DRRN(n_blocks=args.n_blocks, n_units=args.n_units, n_feats=args.n_feats)
    y = torch.rand(args.batch, 1, args.patch, args.patch)
    batch = {"lr_up_y": (y + 0.05 * torch.randn_like(y)).clamp(0, 1), "hr_y": y}
    results: dict[str, list[float]] = {"ours": [], "plain": []}
    for rep in range(args.reps):
        order = ("ours", "plain") if rep % 2 == 0 else ("plain", "ours")
        for side in order:
            net = DRRN(n_blocks=args.n_blocks, n_units=args.n_units, n_feats=args.n_feats)
            net.load_state_dict(base.state_dict())
            fn = run_ours if side == "ours" else run_plain
            results[side].append(fn(net, batch, args.steps, args.device, 0.01))
            print(f"rep {rep} {side:5s} {results[side][-1] * 1e3:9.1f} ms/step", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    summary = {
        "config": vars(args),
        "params": base.num_parameters(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "ms_per_step": {k: round(v * 1e3, 1) for k, v in med.items()},
        "samples_per_s": {k: round(args.batch / v, 2) for k, v in med.items()},
        "ratio_ours_over_plain": round(med["plain"] / med["ours"], 3),
        "all_ms": {k: [round(t * 1e3, 1) for t in v] for k, v in results.items()},
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
