#!/usr/bin/env python
"""Training throughput of ``AdaptLitModule`` under a real Lightning ``Trainer`` vs a plain PyTorch loop.

Both variants run in this one process on the same fixed random in-memory batches (shaped like
real DRN x4 samples: ``lr`` (3, P/4, P/4), ``lr_levels`` [(3, P/4, P/4), (3, P/2, P/2)], ``hr``
(3, P, P)) and do the same math: the same DRN and dual models (identical initial weights), the
closed-loop L1 terms (the plain loop writes them out by hand, :func:`plain_loss`), Adam with the
module's two parameter groups, cosine LR schedule stepped per step, zero_grad/backward/step.

"ours" is trained the way scripts/train.py trains it: ``trainer.fit`` with the default progress
bar (Rich when installed), a CSVLogger with ``log_every_n_steps=50`` (the project's default W&B
logger is left out: its service process would compete for the CPU), no checkpointing or
validation inside the timed window. Since the loss is identical, a first untimed pass checks the
math: losses and parameters after ``warmup + steps`` steps must match plain's (bit-identical in
float32 on CPU).

Repetitions are interleaved (ours, plain, plain, ours, ours, plain, ...: alternating, and neither
always first in its pair). Every repetition starts a fresh Trainer (resp. a fresh optimizer) and
times ``--steps`` steps after ``--warmup`` untimed ones; the
window runs from the end of the last warm-up step to the end of the last step, so it holds
exactly ``--steps`` full iterations including data fetching, Lightning hooks, logging and the
progress bar. Reported: median samples/s per variant, the ratio of medians ours/plain, the
median of the per-pair ratios (robust to load drifting between pairs), the ratio of the best
(fastest) repetitions, the ratio of process CPU time per step (``time.process_time``: hardly
affected by other processes on a shared machine, best with ``--threads 1``), and peak memory per
repetition (CPU: rise of the resident set's high-water mark above the resident set at the start
of the repetition, after ``malloc_trim`` and a reset of ``VmHWM`` through /proc/self/clear_refs;
CUDA: ``torch.cuda.max_memory_allocated`` above the allocation at the start).

``official`` (``--official-dir``, a checkout of guoyongcs/DRN; its code is imported from there, not
copied): the official ``DRN`` and ``DownBlock`` models, built with the same sizes and loaded with the
same initial weights, trained the way the official ``trainer.py`` does it: 0..255 images, one Adam
for the primal and one per dual model, the same L1 terms, the skip check on ``loss.item()``. Its
losses are 255x ours (the check divides them back); its bicubic upsampling is PyTorch's, ours is
MATLAB's, so its numbers match ours only approximately.

``ours-compile``: ``AdaptLitModule(compile=True)`` (``model.compile=true``): the forward through
``torch.compile`` (inductor; its compilation happens in the untimed warm-up steps).

Extra variants (``--variants``), all *ablations made by monkeypatching inside this script*, not
code paths of sr_adapt itself:

* ``ours-noprogbar``: Trainer(enable_progress_bar=False).
* ``ours-nolog``: ``self.log`` / ``self.log_dict`` replaced by no-ops on the module instance.
* ``ours-noskip``: the skip-spike check made free: ``trainer.strategy.reduce`` returns a constant
  CPU 0-dim tensor (no all-reduce; ``.item()`` / ``isfinite`` need no device->host copy) and
  ``train_loss_epoch.update`` is a no-op; everything else, logging included, unchanged.
* ``ours-bare``: training_step replaced by :func:`plain_loss` alone (no logging, skip check or
  paired-mask bookkeeping), no progress bar, no logger: the Lightning loop's own per-step cost.

Examples::

    python benchmarks/train_throughput.py                                  # DRN-S x4, CPU
    python benchmarks/train_throughput.py --threads 1 --n-blocks 1 --n-feats 8 --patch 32 --batch 2 \\
        --steps 30 --reps 15 --variants ours,plain,ours-noprogbar,ours-nolog,ours-noskip,ours-bare
        # per-step overhead study: a tiny net, so that fixed per-step costs are visible
    python benchmarks/train_throughput.py --device cuda --batch 16 --patch 192 --steps 50 \\
        --precision bf16-mixed --channels-last --json gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

from sr_adapt.training.base_module import map_tensors
from sr_adapt.training.adapt_module import AdaptLitModule
from sr_adapt.models.drn import build_drn, build_dual_models

VARIANTS = ("ours", "plain", "official", "ours-compile", "ours-noprogbar", "ours-nolog", "ours-noskip", "ours-bare")

# Same optimizer / schedule settings as conf/model/drn_s.yaml (T_max = trainer.max_steps of the paper run).
ADAM = {"lr": 1.0e-4, "betas": (0.9, 0.999), "eps": 1.0e-8, "weight_decay": 0.0}
COSINE = {"T_max": 1_000_000, "eta_min": 1.0e-7}
DUAL_WEIGHT = 0.1


# ----------------------------------------------------------------------------------------------
# data


class RandomSRBatches(Dataset):
    """``n`` fixed random samples shaped like ``HRFolderDataset`` items at scale 4 (float32 in [0, 1])."""

    def __init__(self, n: int, patch: int, scale: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        factors = []
        f = scale
        while f >= 2:
            factors.append(f)
            f //= 2
        self.items = []
        for _ in range(n):
            levels = [torch.rand(3, patch // f, patch // f, generator=g) for f in factors]
            hr = torch.rand(3, patch, patch, generator=g)
            self.items.append(
                {"lr": levels[0], "lr_levels": levels, "hr": hr, "paired": torch.tensor(True), "name": "rand"}
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


_map = map_tensors


# ----------------------------------------------------------------------------------------------
# memory


class PeakMemory:
    """Peak memory of one block, in MiB above the level at its start.

    CPU: resets the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``) and reads
    ``VmHWM``; where that is not allowed, polls the RSS with psutil every 2 ms. CUDA:
    ``torch.cuda.max_memory_allocated``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start_mib = self.peak_mib = float("nan")
        self._poll: threading.Thread | None = None
        self._stop = threading.Event()
        self._polled = 0

    @staticmethod
    def _status_kib(key: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    @staticmethod
    def _trim() -> None:
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)

    def __enter__(self) -> "PeakMemory":
        self._trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mib = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        rss = self._status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM"
        except OSError:
            self.method = "psutil-poll"
            import psutil

            proc = psutil.Process()
            rss = proc.memory_info().rss // 1024
            self._polled = rss

            def poll() -> None:
                while not self._stop.wait(0.002):
                    self._polled = max(self._polled, proc.memory_info().rss // 1024)

            self._poll = threading.Thread(target=poll, daemon=True)
            self._poll.start()
        self.start_mib = (rss or 0) / 1024
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        if self._poll is not None:
            self._stop.set()
            self._poll.join()
            self.peak_mib = self._polled / 1024
        else:
            self.peak_mib = (self._status_kib("VmHWM") or 0) / 1024

    @property
    def rise_mib(self) -> float:
        return self.peak_mib - self.start_mib


# ----------------------------------------------------------------------------------------------
# variants


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(pl.Callback):
    """Wall time from the end of step ``warmup`` to the end of step ``warmup + steps``."""

    def __init__(self, warmup: int, steps: int, device: torch.device, collect: bool = False) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.t0 = self.t1 = self.c0 = self.c1 = None
        self.collect = collect
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        if self.collect:
            self.losses.append(float(outputs["loss"]) if outputs is not None else float("nan"))
        done = batch_idx + 1
        if done == self.warmup:
            _sync(self.device)
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        elif done == self.warmup + self.steps:
            _sync(self.device)
            self.t1, self.c1 = time.perf_counter(), time.process_time()

    @property
    def seconds(self) -> tuple[float, float]:
        """(wall, process CPU) seconds of the timed window."""
        if self.t0 is None or self.t1 is None:
            raise RuntimeError("the Trainer stopped before the timed window ended")
        return self.t1 - self.t0, self.c1 - self.c0


class _Window:
    """Wall and process CPU time of steps ``warmup + 1 .. warmup + steps`` of a hand-written loop."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0

    def done(self, i: int) -> bool:
        """Call after step ``i`` (0-based); True once the timed window is complete."""
        if i + 1 == self.warmup:
            _sync(self.device)
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        elif i + 1 == self.warmup + self.steps:
            _sync(self.device)
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            return True
        return False

    @property
    def seconds(self) -> tuple[float, float]:
        return self.t1 - self.t0, self.c1 - self.c0


def plain_loss(net: torch.nn.Module, duals: torch.nn.ModuleList, batch: dict[str, Any]) -> Tensor:
    """The DRN closed-loop objective written out by hand (all samples paired, as in our batches).

    primal = sum_k L1(P(x)_k, target_k) over the levels, dual = sum_i L1(D_i(P(x)_{i+1}), lr_levels_i),
    loss = primal + 0.1 dual. Equal to AdaptLitModule's loss (mean over samples of per-sample
    means = the global mean when every sample has the same size) up to float rounding.
    """
    sr = net(batch["lr"])
    targets = [*batch["lr_levels"], batch["hr"]]
    primal = sum(F.l1_loss(out, tgt) for out, tgt in zip(sr, targets, strict=True))
    dual = sum(F.l1_loss(d(sr[i + 1]), batch["lr_levels"][i]) for i, d in enumerate(duals))
    return primal + DUAL_WEIGHT * dual


class _Bare(AdaptLitModule):
    """ABLATION (benchmark only): training_step = :func:`plain_loss`, nothing else (no logging,
    no skip check, no mask bookkeeping): what the Lightning loop itself costs per step."""

    def training_step(self, batch, batch_idx):  # noqa: D102
        return plain_loss(self, self.duals, self.memory_format(batch))


class LitRunner:
    """Our AdaptLitModule trained by ``pl.Trainer.fit`` (one fresh Trainer per repetition)."""

    def __init__(self, name: str, net: torch.nn.Module, duals: torch.nn.Module, args: argparse.Namespace) -> None:
        self.name, self.args = name, args
        cls = _Bare if name == "ours-bare" else AdaptLitModule
        self.module = cls(
            net=net,
            optimizer=partial(torch.optim.Adam, **ADAM),
            scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, **COSINE),
            dual_weight=DUAL_WEIGHT,
            skip_threshold=1.0e6,
            channels_last=args.channels_last,
            compile=name == "ours-compile",
        )
        self.module.duals.load_state_dict(duals.state_dict())  # same initial duals as plain
        if name == "ours-nolog":  # ABLATION: every self.log / self.log_dict becomes a no-op
            self.module.log = lambda *a, **k: None
            self.module.log_dict = lambda *a, **k: None
        if name == "ours-noskip":  # ABLATION: skip-spike check made free (see the module docstring)
            self.module.train_loss_epoch.update = lambda *a, **k: None
            self._patch_reduce = True
        else:
            self._patch_reduce = False
        self.progress_bar = name not in ("ours-noprogbar", "ours-bare")
        self.use_logger = name != "ours-bare"
        self.tmp = tempfile.TemporaryDirectory(prefix="sr_adapt_bench_")

    def params(self) -> list[Tensor]:
        return [*self.module.net.parameters(), *self.module.duals.parameters()]

    def run(self, loader: DataLoader, warmup: int, steps: int, device: torch.device, collect: bool = False):
        timer = StepTimer(warmup, steps, device, collect)
        logger = CSVLogger(self.tmp.name, name="csv") if self.use_logger else False
        trainer = pl.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=[device.index] if device.type == "cuda" and device.index is not None else 1,
            precision=self.args.precision,
            max_steps=warmup + steps,
            max_epochs=-1,
            logger=logger,
            callbacks=[timer],
            enable_checkpointing=False,
            enable_progress_bar=self.progress_bar,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            log_every_n_steps=50,  # conf/trainer/default.yaml
            default_root_dir=self.tmp.name,
        )
        if self._patch_reduce:
            # constant CPU 0-dim tensor: no all-reduce, and .item()/isfinite need no device->host copy
            zero = torch.zeros(())
            trainer.strategy.reduce = lambda *a, **k: zero
        trainer.fit(self.module, train_dataloaders=loader)
        return timer.seconds, timer.losses


class PlainRunner:
    """The same math in a hand-written loop (fresh Adam + cosine schedule per repetition)."""

    name = "plain"

    def __init__(self, net: torch.nn.Module, duals: torch.nn.Module, args: argparse.Namespace, device: torch.device):
        self.net, self.duals, self.args, self.device = net.to(device), duals.to(device), args, device
        if args.channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.duals.to(memory_format=torch.channels_last)

    def params(self) -> list[Tensor]:
        return [*self.net.parameters(), *self.duals.parameters()]

    def run(self, loader: DataLoader, warmup: int, steps: int, device: torch.device, collect: bool = False):
        args = self.args
        groups = [
            {"params": [p for p in self.net.parameters() if p.requires_grad], "name": "primal"},
            {"params": [p for p in self.duals.parameters() if p.requires_grad], "name": "dual"},
        ]
        optimizer = torch.optim.Adam(groups, **ADAM)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **COSINE)
        autocast = (
            partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
            if args.precision == "bf16-mixed"
            else contextlib.nullcontext
        )
        self.net.train()
        self.duals.train()
        losses: list[float] = []
        window = _Window(warmup, steps, device)
        non_blocking = device.type == "cuda"
        for i, batch in enumerate(loader):
            batch = _map(batch, lambda t: t.to(device, non_blocking=non_blocking))
            if args.channels_last:
                batch = _map(batch, lambda t: t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t)
            with autocast():
                loss = plain_loss(self.net, self.duals, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if collect:
                losses.append(float(loss.detach()))
            if window.done(i):
                break
        return window.seconds, losses


class OfficialRunner:
    """The official DRN code (imported from ``--official-dir``) trained like its ``trainer.py``."""

    name = "official"

    def __init__(self, folder: str, net: torch.nn.Module, duals: torch.nn.Module, args: argparse.Namespace,
                 device: torch.device) -> None:
        from types import SimpleNamespace

        if not (Path(folder) / "model" / "drn.py").is_file():
            sys.exit(f"--official-dir {folder}: no model/drn.py there (a checkout of guoyongcs/DRN)")
        sys.path.insert(0, str(Path(folder).resolve()))
        import model.common as official_common  # noqa: PLC0415 - the user's checkout
        import model.drn as official_drn  # noqa: PLC0415

        cfg = net.config
        opt = SimpleNamespace(scale=[2, 4], n_blocks=cfg.n_blocks, n_feats=cfg.n_feats, negval=cfg.negval,
                              rgb_range=255, n_colors=3)
        self.net = official_drn.DRN(opt).to(device)
        self.net.load_state_dict(net.state_dict())
        self.duals = [official_common.DownBlock(opt, 2).to(device) for _ in opt.scale]
        for official, ours in zip(self.duals, duals, strict=True):
            official.load_state_dict(ours.state_dict())
        self.args, self.device = args, device
        if args.channels_last:
            for m in (self.net, *self.duals):
                m.to(memory_format=torch.channels_last)

    def params(self) -> list[Tensor]:
        return [*self.net.parameters(), *(p for d in self.duals for p in d.parameters())]

    def run(self, loader: DataLoader, warmup: int, steps: int, device: torch.device, collect: bool = False):
        optimizers = [torch.optim.Adam(self.net.parameters(), **ADAM)] + [
            torch.optim.Adam(d.parameters(), **ADAM) for d in self.duals]
        autocast = (partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
                    if self.args.precision == "bf16-mixed" else contextlib.nullcontext)
        l1 = torch.nn.L1Loss()
        self.net.train()
        for d in self.duals:
            d.train()
        losses: list[float] = []
        window = _Window(warmup, steps, device)
        last = float("inf")
        for i, batch in enumerate(loader):  # 0..255 images, as the official loader delivers them
            lr = [t.to(device, non_blocking=True) * 255.0 for t in batch["lr_levels"]]
            hr = batch["hr"].to(device, non_blocking=True) * 255.0
            for o in optimizers:
                o.zero_grad()
            with autocast():
                sr = self.net(lr[0])
                n = len(sr)
                primary = l1(sr[-1], hr) + sum(l1(sr[k - 1 - n], lr[k - n]) for k in range(1, n))
                dual = sum(l1(d(sr[k - len(self.duals)]), lr[k]) for k, d in enumerate(self.duals))
                loss = primary + DUAL_WEIGHT * dual
            value = loss.item()
            if value < 1.0e6 * last:  # the official skip check
                loss.backward()
                for o in optimizers:
                    o.step()
            last = value
            if collect:
                losses.append(value / 255.0)
            if window.done(i):
                break
        return window.seconds, losses


# ----------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, or auto (default: cpu)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--patch", type=int, default=96, help="HR patch size (LR = patch / 4); default 96")
    p.add_argument("--steps", type=int, default=4, help="timed steps per repetition")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every repetition")
    p.add_argument("--reps", type=int, default=5, help="repetitions per variant (interleaved)")
    p.add_argument("--size", choices=["s", "l"], default="s", help="DRN-S or DRN-L x4")
    p.add_argument("--n-blocks", type=int, default=None, help="override the variant's RCABs per stage")
    p.add_argument("--n-feats", type=int, default=None, help="override the variant's base channels")
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU); default: torch's")
    p.add_argument(
        "--variants", default="ours,plain",
        help=f"comma list, run interleaved in this order; any of {', '.join(VARIANTS)}",
    )
    p.add_argument("--official-dir", default=None, help="checkout of guoyongcs/DRN for the 'official' variant")
    p.add_argument("--no-check", action="store_true", help="skip the same-math check (first untimed pass)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad or not args.variants:
        p.error(f"--variants: unknown {bad}; choose from {VARIANTS}")
    if args.patch % 4:
        p.error("--patch must be a multiple of 4 (the scale)")
    if "official" in args.variants and not args.official_dir:
        p.error("--variants official needs --official-dir (a checkout of guoyongcs/DRN)")
    if args.steps < 1 or args.warmup < 1 or args.reps < 1:
        p.error("--steps, --warmup and --reps must be >= 1")
    return args


def _quiet() -> None:
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|smaller than the logging interval"
                            r"|GPU available but not used|LightningModule.*does not have|Checkpoint directory).*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pytorch_lightning.*")


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    _quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but torch.cuda.is_available() is False")

    torch.manual_seed(args.seed)
    net0 = build_drn(args.size, 4, n_blocks=args.n_blocks, n_feats=args.n_feats)
    duals0 = build_dual_models(4, net0.config.n_feats, net0.config.negval)
    n_params = sum(p.numel() for p in net0.parameters()) + sum(p.numel() for p in duals0.parameters())

    runners: dict[str, Any] = {}
    for name in args.variants:
        net, duals = copy.deepcopy(net0), copy.deepcopy(duals0)
        if name == "plain":
            runners[name] = PlainRunner(net, duals, args, device)
        elif name == "official":
            runners[name] = OfficialRunner(args.official_dir, net, duals, args, device)
        else:
            runners[name] = LitRunner(name, net, duals, args)

    n_batches = args.warmup + args.steps
    data = RandomSRBatches(args.batch * n_batches, args.patch, seed=args.seed)
    loader = DataLoader(data, batch_size=args.batch, shuffle=False, drop_last=True, num_workers=0,
                        pin_memory=device.type == "cuda")

    print(f"DRN-{args.size.upper()} x4 n_blocks={net0.config.n_blocks} n_feats={net0.config.n_feats} "
          f"({n_params:,} params incl. duals) | device={device} threads={torch.get_num_threads()} "
          f"precision={args.precision} channels_last={args.channels_last} | batch={args.batch} "
          f"HR patch={args.patch} | {args.warmup} warm-up + {args.steps} timed steps x {args.reps} reps",
          flush=True)
    load_before = os.getloadavg()

    # Same-math check: one untimed pass of every variant from identical weights on the same batches.
    check: dict[str, Any] = {}
    if not args.no_check:
        losses = {}
        for name, r in runners.items():
            _, losses[name] = r.run(loader, args.warmup, args.steps, device, collect=True)
        ref_name = "plain" if "plain" in runners else args.variants[0]
        ref_params = runners[ref_name].params()
        for name, r in runners.items():
            diff = max((a.detach().float() - b.detach().float()).abs().max().item()
                       for a, b in zip(r.params(), ref_params, strict=True))
            loss_diff = max(abs(a - b) for a, b in zip(losses[name], losses[ref_name], strict=True))
            check[name] = {"losses": losses[name], "max_abs_loss_diff": loss_diff, "max_abs_param_diff": diff}
            print(f"check {name:>15} vs {ref_name}: losses {['%.5f' % v for v in losses[name]]} "
                  f"max|dloss|={loss_diff:.2e} max|dparam|={diff:.2e}", flush=True)

    seconds: dict[str, list[float]] = {n: [] for n in runners}
    cpu_seconds: dict[str, list[float]] = {n: [] for n in runners}
    memory: dict[str, list[float]] = {n: [] for n in runners}
    peak_abs: dict[str, list[float]] = {n: [] for n in runners}
    for rep in range(args.reps):
        # ours, plain, plain, ours, ...: interleaved, and no variant always runs first in its pair
        order = list(runners) if rep % 2 == 0 else list(reversed(runners))
        for name in order:
            with PeakMemory(device) as mem:
                (s, c), _ = runners[name].run(loader, args.warmup, args.steps, device)
            seconds[name].append(s)
            cpu_seconds[name].append(c)
            memory[name].append(mem.rise_mib)
            peak_abs[name].append(mem.peak_mib)
            print(f"rep {rep + 1}/{args.reps} {name:>15}: {args.batch * args.steps / s:8.2f} samples/s "
                  f"({1000 * s / args.steps:8.1f} ms/step, CPU {1000 * c / args.steps:8.1f} ms/step), "
                  f"peak +{mem.rise_mib:.0f} MiB", flush=True)

    results: dict[str, Any] = {}
    for name in runners:
        sps = [args.batch * args.steps / s for s in seconds[name]]
        results[name] = {
            "samples_per_s": sps,
            "median_samples_per_s": _median(sps),
            "median_ms_per_step": 1000 * _median(seconds[name]) / args.steps,
            "best_ms_per_step": 1000 * min(seconds[name]) / args.steps,
            "median_cpu_ms_per_step": 1000 * _median(cpu_seconds[name]) / args.steps,
            "peak_mem_rise_mib": memory[name],
            "median_peak_mem_rise_mib": _median(memory[name]),
            "peak_mem_abs_mib": peak_abs[name],
        }
    summary: dict[str, Any] = {}
    if "plain" in results:
        base = results["plain"]
        for name in runners:
            if name == "plain":
                continue
            pair = [p / o for o, p in zip(seconds[name], seconds["plain"])]  # ours/plain throughput per rep
            summary[name] = {
                "ratio_of_medians": results[name]["median_samples_per_s"] / base["median_samples_per_s"],
                "median_paired_ratio": _median(pair),
                "overhead_ms_per_step": results[name]["median_ms_per_step"] - base["median_ms_per_step"],
                "ratio_of_best": base["best_ms_per_step"] / results[name]["best_ms_per_step"],
                "cpu_time_ratio": base["median_cpu_ms_per_step"] / results[name]["median_cpu_ms_per_step"],
                "cpu_overhead_ms_per_step": results[name]["median_cpu_ms_per_step"] - base["median_cpu_ms_per_step"],
            }

    if "official" in results:  # throughput relative to the official code, ratio of medians and per rep
        for name in runners:
            if name == "official":
                continue
            pair = [o / s for s, o in zip(seconds[name], seconds["official"])]
            summary.setdefault(name, {})["vs_official"] = {
                "ratio_of_medians": results[name]["median_samples_per_s"] / results["official"]["median_samples_per_s"],
                "median_paired_ratio": _median(pair),
            }
            print(f"{name} / official: {summary[name]['vs_official']['ratio_of_medians']:.3f} (ratio of medians), "
                  f"{summary[name]['vs_official']['median_paired_ratio']:.3f} (median of per-rep ratios)")

    mem_label = "CUDA max_memory_allocated" if device.type == "cuda" else "RSS high-water mark (VmHWM)"
    print(f"\n{'variant':>15} {'samples/s':>10} {'ms/step':>8} {'best':>7} {'CPU ms':>7} {'mem rise':>9} "
          f"{'ours/plain':>10} {'paired':>7} {'best':>6} {'CPU':>6}")
    for name in runners:
        r, s = results[name], summary.get(name)
        s = s if s and "ratio_of_medians" in s else None
        ratio = (f"{s['ratio_of_medians']:10.3f} {s['median_paired_ratio']:7.3f} {s['ratio_of_best']:6.3f} "
                 f"{s['cpu_time_ratio']:6.3f}") if s else f"{'-':>10} {'-':>7} {'-':>6} {'-':>6}"
        print(f"{name:>15} {r['median_samples_per_s']:10.2f} {r['median_ms_per_step']:8.1f} "
              f"{r['best_ms_per_step']:7.1f} "
              f"{r['median_cpu_ms_per_step']:7.1f} {r['median_peak_mem_rise_mib']:5.0f} MiB {ratio}")
    print(f"(medians over {args.reps} interleaved reps; memory: {mem_label} above the level at the start of a rep; "
          f"load average before/after: {load_before[0]:.2f}/{os.getloadavg()[0]:.2f})")

    report = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "model": {"n_blocks": net0.config.n_blocks, "n_feats": net0.config.n_feats, "params_incl_duals": n_params},
        "env": {
            "torch": torch.__version__, "pytorch_lightning": pl.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        },
        "memory_metric": mem_label,
        "check": check,
        "results": results,
        "summary": summary,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
