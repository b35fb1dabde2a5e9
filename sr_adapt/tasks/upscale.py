"""``sr-adapt-upscale`` / ``python scripts/upscale.py``: upscale an image, a folder of images or a video.

    python scripts/upscale.py ckpt_path=run/checkpoints/last.ckpt input=clip.mp4 output=clip_x4.mp4 tile=256
    python scripts/upscale.py model=drn_s scale=4 ckpt_path=DRNS4x.pt input=photos/ output=photos_x4/ ensemble=true

Everything that can be checked is checked before the model runs: the input (exists, supported
kind, decodes), the output (suffix, not the input, writable), the scale and the tile size.
Outputs are written atomically (temporary name in the same folder, then renamed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from tqdm.auto import tqdm

from sr_adapt.config import CONF_PATH, HYDRA_VERSION
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.inference.backend import plan_backend, with_backend
from sr_adapt.inference.margins import tile_margin_for
from sr_adapt.inference.onnx import onnx_model, weights_digest
from sr_adapt.inference.upscale import make_upscaler, tile_batch_for, upscale_image, upscale_video
from sr_adapt.io.atomic import check_writable, show_path
from sr_adapt.io.images import (IMAGE_EXTENSIONS, WRITE_FORMATS, image_size, is_image_file, list_images, load_image,
                                load_image_array)
from sr_adapt.io.video import VIDEO_EXTENSIONS, is_video_file, probe_video
from sr_adapt.io.video_writer import check_video_output, source_streams
from sr_adapt.tasks.common import cli, model_at_scale, pick_device

log = logging.getLogger("sr_adapt.upscale")


@dataclass
class Job:
    """What to upscale: ``kind`` is image, folder or video; ``files`` the input images of a folder."""

    kind: str
    input: Path
    output: Path
    files: list[Path] = field(default_factory=list)
    video_fps: Fraction | None = None
    video_frames: int = 0
    video_size: tuple[int, int] = (0, 0)  # (H, W) of the video's frames
    audio_codecs: list[str] = field(default_factory=list)

    def size(self, tile: int | None, margin: int, ensemble: bool = False) -> tuple[int, int]:
        """(input pixels of the whole job, of one network call: a tile with ``margin`` on each side, or the
        largest whole image), what ``backend=auto`` weighs the engines by; image sizes read from the headers.
        The x8 ``ensemble`` runs every pixel eight times, in calls of the same size."""
        if self.kind == "video":
            sizes, count = [self.video_size], self.video_frames
        else:
            sizes, count = [image_size(f) for f in (self.files if self.kind == "folder" else [self.input])], 1
        h, w = max(sizes, key=lambda s: s[0] * s[1])
        call = min(h, tile + 2 * margin) * min(w, tile + 2 * margin) if tile and tile < max(h, w) else h * w
        return sum(a * b for a, b in sizes) * count * (8 if ensemble else 1), call


def plan_job(cfg: DictConfig) -> Job:
    """Checks ``input`` / ``output`` (and decodes what must decode) before any model work."""
    if not cfg.get("input"):
        raise ConfigError("input is missing: give input=IMAGE, input=FOLDER or input=VIDEO")
    if not cfg.get("output"):
        raise ConfigError("output is missing: give output=FILE (image or video) or output=FOLDER (for a folder input)")
    src, dst = Path(str(cfg.input)).expanduser(), Path(str(cfg.output)).expanduser()
    if not src.exists():
        raise ConfigError(f"input={src}: {show_path(src)} does not exist")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"output={dst} is the input itself; choose another output path (the input is never overwritten)")
    if src.is_dir():
        files = list_images(src, "input")
        bad = []
        for f in files:  # decoded now: an unreadable file stops the run before any output is written
            try:
                load_image_array(f)
            except DataError as e:
                if not cfg.get("skip_bad", False):
                    raise DataError(f"input={src}: {e} (nothing was written; remove it or give skip_bad=true)") from None
                bad.append(f)
                log.warning("skip_bad: skipping %s", e)
        files = [f for f in files if f not in bad]
        if not files:
            raise DataError(f"input={src}: no readable image left (skipped {len(bad)})")
        names = [f.stem + ".png" for f in files]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"input={src}: several images would be written as {', '.join(dupes)} (same name, other suffix); rename them")
        if dst.exists() and not dst.is_dir():
            raise ConfigError(f"output={dst}: for a folder input, output must be a folder, and {show_path(dst)} is a file")
        check_writable(dst / "x.png")
        return Job("folder", src, dst, files=files)
    if is_image_file(src):
        if dst.suffix.lower() not in WRITE_FORMATS:
            raise ConfigError(
                f"output={dst}: unsupported image suffix {dst.suffix or '(none)'!r}; use one of {', '.join(sorted(WRITE_FORMATS))}"
            )
        if dst.is_dir():
            raise ConfigError(f"output={dst} is a folder; give an image file name (e.g. {dst / (src.stem + '.png')})")
        check_writable(dst)
        load_image(src)  # decodes the whole file: corrupt images fail here
        return Job("image", src, dst)
    if is_video_file(src):
        info = probe_video(src)  # DataError for anything that does not decode
        try:
            fps, audio = source_streams(src)
        except Exception:  # noqa: BLE001 - decord reads it, so only PyAV's probing failed: fall back
            fps, audio = None, []
        fps = fps or (Fraction(info.fps).limit_denominator(100_000) if info.fps > 0 else None)
        if not fps:
            raise DataError(f"cannot read the frame rate of video {show_path(src)}; re-encode it with a constant frame rate")
        check_video_output(dst, audio, bool(cfg.video.audio))
        if dst.is_dir():
            raise ConfigError(f"output={dst} is a folder; give a video file name (e.g. {dst / (src.stem + '.mp4')})")
        check_writable(dst)
        return Job("video", src, dst, video_fps=fps, video_frames=info.frames, video_size=(info.height, info.width),
                   audio_codecs=audio if cfg.video.audio else [])
    raise ConfigError(
        f"input={src}: unsupported file type {src.suffix or '(no suffix)'!r}; give an image "
        f"({', '.join(sorted(IMAGE_EXTENSIONS))}), a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder of images"
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Checks the job, loads the model, upscales; returns a summary (kind, outputs, frames, seconds)."""
    job = plan_job(cfg)
    device = pick_device(str(cfg.get("device", "auto")))
    precision = str(cfg.get("precision", "fp32"))
    plan_backend(str(cfg.get("backend", "auto")), precision, device)
    net, name = model_at_scale(cfg, device)
    model, backend, tiler_precision = with_backend(
        net, str(cfg.get("backend", "auto")), device, precision, cfg.paths.cache_dir, cfg.get("reference_images"),
        job_size=lambda: job.size(cfg.get("tile"), net.tile_margin(), bool(cfg.get("ensemble"))),
    )
    tile_batch = tile_batch_for(cfg.get("tile_batch", "auto"), device)
    spec = cfg.get("tile_margin", "exact")
    probe_model = model  # the margin is a property of the weights: measured in float, int8 noise is not context
    if str(spec) == "auto" and precision == "int8":
        probe_model = onnx_model(net, cfg.paths.cache_dir, "fp32", device)
    margin = tile_margin_for(
        spec, probe_model, weights_digest(net), cfg.paths.cache_dir,
        cfg.get("reference_images"), float(cfg.get("tile_margin_bound", 0.5)), precision=tiler_precision, device=device,
    )
    fn, tiler = make_upscaler(
        model, device, tile=cfg.get("tile"), tile_batch=tile_batch, precision=tiler_precision,
        exact_stats=bool(cfg.get("exact_stats", True)), ensemble=bool(cfg.get("ensemble")), margin=margin,
    )
    log.info("%s x%d on %s: backend %s, precision %s, tile %s, margin %d LR px", name, net.scale, device, backend,
             precision, cfg.get("tile"), tiler.margin)
    start = time.perf_counter()
    if job.kind == "image":
        upscale_image(fn, job.input, job.output)
        outputs = [str(job.output)]
    elif job.kind == "folder":
        outputs = []
        for f in tqdm(job.files, desc="upscale", unit="image"):
            out = job.output / (f.stem + ".png")
            upscale_image(fn, f, out)
            outputs.append(str(out))
    else:
        info = probe_video(job.input)
        tiled = tiler.is_tiled(info.height, info.width)
        assert job.video_fps is not None
        upscale_video(
            fn, job.input, job.output, net.scale, job.video_fps, copy_audio=bool(job.audio_codecs),
            chunk=1 if tiled else tile_batch,
            codec=str(cfg.video.codec), crf=int(cfg.video.crf), preset=str(cfg.video.preset),
        )
        outputs = [str(job.output)]
    seconds = time.perf_counter() - start
    log.info("%s at x%d: wrote %s in %.1f s", name, net.scale, job.output, seconds)
    return {"kind": job.kind, "outputs": outputs, "frames": job.video_frames, "seconds": seconds, "model": name,
            "backend": backend, "precision": precision, "margin": tiler.margin}


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="upscale")
@cli
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    outputs = summary["outputs"]
    print(f"wrote {outputs[0] if len(outputs) == 1 else str(len(outputs)) + ' images'} in {summary['seconds']:.1f} s")


if __name__ == "__main__":
    main()
