"""What adapting GAN-trained weights with our L1 objective does to their look: sharpness, LR consistency, PSNR.

GAN-trained releases (Real-ESRGAN's RRDBNet and SRVGGNet) cannot be downloaded here, so ``make-gan`` makes a
stand-in the way those releases were made: a PSNR-trained network fine-tuned with L1 plus an adversarial loss
(a spectral-normalised patch discriminator, non-saturating loss; no perceptual loss: no pretrained VGG here).
``measure`` then scores every model of an adaptation benchmark run, and the unadapted sources, on its target set:

    python scripts/train.py experiment=span_source_x4 model.net.architecture=Compact '~model.net.kwargs' \
        '+model.net.kwargs={num_in_ch:3,num_out_ch:3,num_feat:48,num_conv:16,upscale:4,act_type:prelu}' \
        task_name=compact_source_x4 paths.data_dir=../shared/data logger=csv      # the PSNR stage -> PSNR.ckpt
    python benchmarks/gan_smoothing.py make-gan --init PSNR.ckpt --hr-dir ../shared/data/train/T91 \
        --hr-dir ../shared/data/train/BSD200 --out compact_gan_x4.pth            # {"params": ...}, as released
    python scripts/benchmark_adaptation.py hr_dir=../shared/data/benchmarks/Set14 degradation=blur_noise \
        paired_hr_dir=../shared/data/train/T91 source_ckpt=compact_gan_x4.pth output=gan.json
    python benchmarks/gan_smoothing.py measure --report gan.json --source compact_gan_x4.pth --source PSNR.ckpt

Per model, on the target set (its LR images and its true degradation, ``degradation_truth.pt`` of the run):
Y-PSNR against HR (shave = scale), ``sharpness``: Sobel gradient energy of the output over that of the HR image
(1: as much detail as the truth; GAN output reaches it or more, L1 output stays below), ``consistency``: Y-PSNR of
the output taken back through the true degradation's linear part against the LR input (shave 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sr_adapt.checkpoints import load_checkpoint  # noqa: E402
from sr_adapt.degradation.record import load_degradation  # noqa: E402
from sr_adapt.evaluation.benchmarks import BenchmarkFolderDataset  # noqa: E402
from sr_adapt.io.atomic import atomic_torch_save, atomic_write_json  # noqa: E402
from sr_adapt.io.images import list_images, load_image  # noqa: E402
from sr_adapt.models.bicubic import Bicubic  # noqa: E402
from sr_adapt.ops.color import quantize  # noqa: E402
from sr_adapt.ops.metrics import psnr  # noqa: E402
from sr_adapt.ops.resize import imresize  # noqa: E402
from sr_adapt.training.monitor import gradient_energy  # noqa: E402


def patch_discriminator(width: int = 16) -> nn.Module:
    """Real/fake logits per ~40 px patch of a (B, 3, H, W) image in [0, 1]; spectral norm on every conv."""
    sn = nn.utils.parametrizations.spectral_norm
    layers: list[nn.Module] = [sn(nn.Conv2d(3, width, 3, 1, 1)), nn.LeakyReLU(0.2)]
    c = width
    for _ in range(3):
        layers += [sn(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2)]
        c *= 2
    layers.append(sn(nn.Conv2d(c, 1, 3, 1, 1)))
    return nn.Sequential(*layers)


def random_patches(images: list[Tensor], n: int, size: int, g: torch.Generator) -> Tensor:
    """(n, 3, size, size) random crops with random flips / transpositions of the (3, H, W) ``images``."""
    out = []
    for i in torch.randint(len(images), (n,), generator=g).tolist():
        img = images[i]
        y = int(torch.randint(img.shape[1] - size + 1, (1,), generator=g))
        x = int(torch.randint(img.shape[2] - size + 1, (1,), generator=g))
        p = img[:, y : y + size, x : x + size]
        flips = torch.randint(2, (3,), generator=g).tolist()
        p = p.flip(-1) if flips[0] else p
        p = p.flip(-2) if flips[1] else p
        out.append(p.transpose(-1, -2) if flips[2] else p)
    return torch.stack(out)


def make_gan(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    net = load_checkpoint(args.init).net.train()
    scale = net.scale
    files = [f for d in args.hr_dir for f in list_images(d, "--hr-dir")]
    images = [im for im in (load_image(f) for f in files) if min(im.shape[1:]) >= args.patch]
    disc = patch_discriminator()
    opt_g = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.9, 0.99))
    held = random_patches(images, 16, args.patch, torch.Generator().manual_seed(12345))
    held_lr = quantize(imresize(held, scale=1 / scale))
    log = []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        hr = random_patches(images, args.batch, args.patch, g)
        lr = quantize(imresize(hr, scale=1 / scale))
        sr = net(lr)
        # discriminator: real HR against the detached output
        d_loss = F.softplus(-disc(hr)).mean() + F.softplus(disc(sr.detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator: L1 plus the adversarial term
        adv = F.softplus(-disc(sr)).mean()
        l1 = (sr - hr).abs().mean()
        loss = l1 + args.gan_weight * adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if step % args.log_every == 0 or step == args.steps:
            with torch.no_grad():
                net.eval()
                out = net.super_resolve(held_lr).clamp(0, 1)
                net.train()
            row = {"step": step, "l1": round(l1.item(), 5), "adv": round(adv.item(), 4), "d": round(d_loss.item(), 4),
                   "held_psnr": round(float(psnr(quantize(out), held, shave=scale).mean()), 3),
                   "held_sharpness": round(float((gradient_energy(out) / gradient_energy(held)).mean()), 4),
                   "s": round(time.perf_counter() - t0, 1)}
            log.append(row)
            print(json.dumps(row), flush=True)
    atomic_torch_save({"params": {k: v.detach().clone() for k, v in net.model.state_dict().items()}}, args.out)
    atomic_write_json({"args": {k: str(v) for k, v in vars(args).items()}, "log": log}, Path(args.out).with_suffix(".json"))
    print(f"saved {args.out} ({net.architecture} x{scale}, {len(images)} HR images)")


@torch.no_grad()
def score(net: nn.Module, hr_dir: Path, lr_dir: Path, truth) -> dict:
    """Mean (and per image) PSNR, sharpness against HR and consistency through the true degradation."""
    net.eval()
    scale = net.scale
    rows = {}
    for item in BenchmarkFolderDataset(hr_dir, scale, lr_dir=lr_dir):
        lr, hr = item["lr"].unsqueeze(0), item["hr"].unsqueeze(0)
        sr = quantize(net.super_resolve(lr))
        rows[item["name"]] = {
            "psnr": float(psnr(sr, hr, shave=scale)[0]),
            "sharpness": float(gradient_energy(sr) / gradient_energy(hr[..., : sr.shape[-2], : sr.shape[-1]])),
            "consistency": float(psnr(quantize(truth.downscale(sr)), lr, shave=2)[0]),
        }
    mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("psnr", "sharpness", "consistency")}
    return {**mean, "per_image": rows}


def measure(args: argparse.Namespace) -> None:
    report = json.loads(Path(args.report).read_text())
    if report.get("per_image"):
        raise SystemExit(f"{args.report}: a per-image run (one degradation per image); measure takes a per-set run "
                         "(per_image=false: one target degradation, the run's degradation_truth.pt)")
    hr_dir, lr_dir = Path(report["target"]["hr_dir"]), Path(report["target"]["lr_dir"])
    run_dir = lr_dir.parents[1]
    truth = load_degradation(run_dir / "degradation_truth.pt")
    scale = int(report["target"]["scale"])
    models: dict[str, nn.Module] = {"bicubic": Bicubic(scale)}
    for path in args.source:
        models[f"unadapted {Path(path).name}"] = load_checkpoint(path, expect={"scale": scale}).net
    out: dict[str, dict] = {}
    for name, net in models.items():
        out[name] = score(net, hr_dir, lr_dir, truth)
    for arm in report["arms"]:
        for r in report[arm]["runs"]:
            net = load_checkpoint(r["ckpt"], expect={"scale": scale}).net
            out[f"{arm} seed {r['seed']}"] = score(net, hr_dir, lr_dir, truth)
    print(f"{'model':<40} {'PSNR':>7} {'sharpness':>9} {'consistency':>11}")
    for name, m in out.items():
        print(f"{name:<40} {m['psnr']:7.3f} {m['sharpness']:9.3f} {m['consistency']:11.2f}")
    if args.output:
        atomic_write_json({"report": str(args.report), "target": report["target"], "models": out}, args.output)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-gan", help="fine-tune a PSNR-trained file with L1 + adversarial loss")
    m.add_argument("--init", required=True, help="the PSNR-trained weights (any file load_checkpoint reads)")
    m.add_argument("--hr-dir", action="append", required=True, help="HR images (repeatable)")
    m.add_argument("--out", required=True, help="the .pth to write ({'params': state_dict}, as Real-ESRGAN releases)")
    m.add_argument("--steps", type=int, default=2000)
    m.add_argument("--batch", type=int, default=8)
    m.add_argument("--patch", type=int, default=96, help="HR patch side")
    m.add_argument("--lr", type=float, default=1e-4)
    m.add_argument("--gan-weight", type=float, default=0.1, help="adversarial weight against L1's 1")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--log-every", type=int, default=250)
    s = sub.add_parser("measure", help="score a benchmark run's models and the sources on its target set")
    s.add_argument("--report", required=True, help="benchmark_adaptation's JSON report")
    s.add_argument("--source", action="append", default=[], help="unadapted weights to score too (repeatable)")
    s.add_argument("--output", help="JSON of the scores")
    args = p.parse_args()
    make_gan(args) if args.cmd == "make-gan" else measure(args)


if __name__ == "__main__":
    main()
