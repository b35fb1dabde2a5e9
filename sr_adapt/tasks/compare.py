"""``sr-adapt-compare`` / ``python scripts/compare.py``: one table of several models over benchmarks
and scales (bicubic vs DRRN vs DRN ...).

    python scripts/compare.py models=[bicubic,drrn.pth,DRNS4x.pt] scales=[2,3,4] benchmarks=[set5,set14] output=table.md

Every model is scored with the protocol of :mod:`sr_adapt.evaluation.protocol` (Y-PSNR / SSIM,
shave = scale; luma models on their own Y). A model is loaded once and run at every requested
scale it serves (DRRN: x2/x3/x4 from one set of weights; a DRN x4 only at x4); other cells are
left empty ("—").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.config import CONF_PATH, HYDRA_VERSION
from sr_adapt.errors import ConfigError
from sr_adapt.evaluation.benchmarks import resolve_benchmarks
from sr_adapt.evaluation.protocol import evaluate_folder
from sr_adapt.io.atomic import atomic_write_json, atomic_write_text
from sr_adapt.models.base import SRModel
from sr_adapt.models.bicubic import Bicubic
from sr_adapt.tasks.common import cli, eval_scales, pick_device

log = logging.getLogger("sr_adapt.compare")


def load_entry(spec: Any, scale: int) -> tuple[SRModel, str, str]:
    """``"bicubic"`` or a checkpoint path (any format :func:`load_checkpoint` reads) -> (net, name, description)."""
    if spec is None or str(spec).strip() == "":
        raise ConfigError("models: an entry is empty; give 'bicubic' or a checkpoint path")
    if str(spec).lower() == "bicubic":
        return Bicubic(scale), "bicubic", "MATLAB bicubic"
    loaded = load_checkpoint(spec)
    return loaded.net, Path(str(spec)).stem, str(loaded.meta.get("variant", loaded.net.arch))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Scores every model of ``models`` at every requested scale it serves; prints and writes the table."""
    device = pick_device(str(cfg.get("device", "auto")))
    scales = eval_scales(cfg)
    folders = resolve_benchmarks(cfg.benchmarks, cfg.paths.get("benchmarks"))
    if not cfg.get("models"):
        raise ConfigError("models is empty: e.g. models=[bicubic,/path/drrn.pth,/path/drn.ckpt]")
    report: dict[str, Any] = {"scales": scales, "benchmarks": [f.name for f in folders], "models": {}}
    for spec in cfg.models:
        net, name, description = load_entry(spec, scales[0])
        while name in report["models"]:  # two files with the same stem
            name += "'"
        net = net.to(device).eval()
        entry: dict[str, Any] = {"spec": str(spec), "description": description, "params": net.num_parameters(),
                                 "results": {}}
        for scale in scales:
            if scale not in net.supported_scales():
                continue
            for folder in folders:
                r = evaluate_folder(net, folder, scale, device)
                entry["results"][f"{folder.name}_x{scale}"] = {"psnr": r["psnr"], "ssim": r["ssim"], "images": r["images"]}
        report["models"][str(name)] = entry
        log.info("%s (%s): %d results", name, description, len(entry["results"]))
    table = markdown_table(report)
    print(table)
    if cfg.get("output"):
        atomic_write_text(table + "\n", cfg.output)
        log.info("wrote %s", cfg.output)
    if cfg.get("json_output"):
        atomic_write_json(report, cfg.json_output)
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """Rows: models; columns: benchmark x scale; cells ``PSNR / SSIM`` (best PSNR of a column in bold)."""
    cols = [(b, s) for b in report["benchmarks"] for s in report["scales"]]
    best = {
        c: max((m["results"][f"{c[0]}_x{c[1]}"]["psnr"] for m in report["models"].values()
                if f"{c[0]}_x{c[1]}" in m["results"]), default=None)
        for c in cols
    }
    lines = [
        "| model | params | " + " | ".join(f"{b} x{s}" for b, s in cols) + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    for name, m in report["models"].items():
        cells = []
        for b, s in cols:
            r = m["results"].get(f"{b}_x{s}")
            if r is None:
                cells.append("—")
                continue
            text = f"{r['psnr']:.2f} / {r['ssim']:.4f}"
            cells.append(f"**{text}**" if len(report["models"]) > 1 and r["psnr"] == best[(b, s)] else text)
        lines.append(f"| {name} ({m['description']}) | {m['params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="compare")
@cli
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
