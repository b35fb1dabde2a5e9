"""Upscale an image, a folder of images or a video with any supported checkpoint.

Everything that can be checked is checked before the model runs: the input (exists, supported
kind, decodes), the output (suffix, not the input, writable), the scale and the tile size.
Outputs are written atomically (temporary name in the same folder, then renamed).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from sr_adapt.data.errors import DataError
from sr_adapt.data.image_io import IMAGE_EXTENSIONS, image_size, is_image_file, list_images, load_image, show_path
from sr_adapt.errors import ConfigError
from sr_adapt.inference.ensemble import self_ensemble
from sr_adapt.inference.tiling import TiledUpscaler, check_precision
from sr_adapt.io.atomic import atomic_path
from sr_adapt.io.video import VIDEO_EXTENSIONS, frame_to_array, is_video_file, open_video_reader, probe_video
from sr_adapt.models.base import SRModel

log = logging.getLogger("sr_adapt.upscale")

#: Image suffixes we write (Pillow format names).
WRITE_FORMATS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
}


@dataclass
class Job:
    """What to upscale: ``kind`` is image, folder or video; ``files`` the input images of a folder."""

    kind: str
    input: Path
    output: Path
    files: list[Path] = field(default_factory=list)
    video_fps: Fraction | None = None
    video_frames: int = 0
    audio_codecs: list[str] = field(default_factory=list)


def to_uint8(x: Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] (unclamped) -> (N, H, W, 3) uint8, rounded like ``quantize``."""
    x = torch.nan_to_num(x.detach().float(), nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def save_image_atomic(img: np.ndarray, path: Path) -> None:
    """Writes an (H, W, 3) uint8 image in the format of ``path``'s suffix, atomically."""
    fmt = WRITE_FORMATS[path.suffix.lower()]
    pil = Image.fromarray(img)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pil.save(f, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)


def _check_writable(path: Path, key: str = "output") -> None:
    """ConfigError unless a file can be created at ``path`` (its nearest existing folder is probed)."""
    parent = path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={path}: {show_path(parent)} is a file, not a folder; choose another {key} path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sr_adapt_write_test.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{key}={path}: cannot write in {show_path(parent)} ({e.strerror}); choose a writable {key} path") from None


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
        for f in files:  # headers now: an unreadable file stops the run before any work
            image_size(f)
        names = [f.stem + ".png" for f in files]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"input={src}: several images would be written as {', '.join(dupes)} (same name, other suffix); rename them")
        if dst.exists() and not dst.is_dir():
            raise ConfigError(f"output={dst}: for a folder input, output must be a folder, and {show_path(dst)} is a file")
        _check_writable(dst / "x.png")
        return Job("folder", src, dst, files=files)
    if is_image_file(src):
        if dst.suffix.lower() not in WRITE_FORMATS:
            raise ConfigError(
                f"output={dst}: unsupported image suffix {dst.suffix or '(none)'!r}; use one of {', '.join(sorted(WRITE_FORMATS))}"
            )
        if dst.is_dir():
            raise ConfigError(f"output={dst} is a folder; give an image file name (e.g. {dst / (src.stem + '.png')})")
        _check_writable(dst)
        load_image(src)  # decodes the whole file: corrupt images fail here
        return Job("image", src, dst)
    if is_video_file(src):
        from sr_adapt.io.video_writer import check_video_output, source_streams  # noqa: PLC0415

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
        _check_writable(dst)
        return Job("video", src, dst, video_fps=fps, video_frames=info.frames, audio_codecs=audio if cfg.video.audio else [])
    raise ConfigError(
        f"input={src}: unsupported file type {src.suffix or '(no suffix)'!r}; give an image "
        f"({', '.join(sorted(IMAGE_EXTENSIONS))}), a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder of images"
    )


def make_upscaler(net: SRModel, cfg: DictConfig, device: torch.device) -> tuple[Callable[[Tensor], Tensor], TiledUpscaler]:
    """``(fn, tiler)``: fn maps (N, 3, h, w) RGB [0, 1] -> (N, 3, sh, sw) float32 CPU, tiled,
    optionally self-ensembled."""
    kw = dict(
        tile=cfg.get("tile"), tile_batch=int(cfg.get("tile_batch", 4)), precision=str(cfg.get("precision", "fp32")),
        device=device, exact_stats=bool(cfg.get("exact_stats", True)),
    )
    tiler = TiledUpscaler(net, **kw)
    if not cfg.get("ensemble"):
        return tiler, tiler
    tiler_t = TiledUpscaler(net, **kw)  # own warm statistics for the transposed half
    return (lambda x: self_ensemble(tiler, x, fn_transposed=tiler_t)), tiler


def load_model(cfg: DictConfig, device: torch.device) -> tuple[SRModel, str]:
    """``build_eval_model`` (same ``model=``/``scale=``/``ckpt_path=`` keys as evaluate), set to ``scale``."""
    from sr_adapt.evaluate import build_eval_model  # noqa: PLC0415

    net, name = build_eval_model(cfg)
    scale = int(cfg.scale)
    try:
        net.set_scale(scale)
    except ValueError as e:
        raise ConfigError(f"scale={scale}: {e}; pick one of those with scale=...") from None
    return net.to(device).eval(), name


def upscale(cfg: DictConfig) -> dict[str, Any]:
    """Runs ``scripts/upscale.py``; returns a summary (kind, outputs, frames, seconds)."""
    from sr_adapt.evaluate import pick_device  # noqa: PLC0415

    job = plan_job(cfg)
    device = pick_device(str(cfg.get("device", "auto")))
    check_precision(str(cfg.get("precision", "fp32")), device)
    net, name = load_model(cfg, device)
    fn, tiler = make_upscaler(net, cfg, device)
    start = time.perf_counter()
    if job.kind == "image":
        _upscale_image(fn, job.input, job.output)
        outputs = [str(job.output)]
    elif job.kind == "folder":
        outputs = []
        for f in tqdm(job.files, desc="upscale", unit="image"):
            out = job.output / (f.stem + ".png")
            _upscale_image(fn, f, out)
            outputs.append(str(out))
    else:
        info = probe_video(job.input)
        _upscale_video(fn, job, net.scale, cfg, tiler.is_tiled(info.height, info.width))
        outputs = [str(job.output)]
    seconds = time.perf_counter() - start
    log.info("%s x%d: wrote %s in %.1f s", name, net.scale, job.output, seconds)
    return {"kind": job.kind, "outputs": outputs, "frames": job.video_frames, "seconds": seconds, "model": name}


def _upscale_image(fn: Callable[[Tensor], Tensor], src: Path, dst: Path) -> None:
    x = load_image(src)[None]
    save_image_atomic(to_uint8(fn(x))[0], dst)


def _upscale_video(fn: Callable[[Tensor], Tensor], job: Job, scale: int, cfg: DictConfig, tiled: bool) -> None:
    from sr_adapt.io.video_writer import VideoWriter  # noqa: PLC0415

    info = probe_video(job.input)
    assert job.video_fps is not None
    chunk = max(1, int(cfg.get("tile_batch", 4)))
    if tiled:
        chunk = 1  # tiled frames one at a time: tiles are batched, global statistics warm-start
    reader = open_video_reader(job.input)
    vcfg = cfg.video
    with VideoWriter(
        job.output, info.width * scale, info.height * scale, job.video_fps,
        audio_from=job.input if job.audio_codecs else None,
        codec=str(vcfg.codec), crf=int(vcfg.crf), preset=str(vcfg.preset),
    ) as writer, tqdm(total=info.frames, desc="upscale", unit="frame") as bar:
        for i in range(0, info.frames, chunk):
            idx = list(range(i, min(i + chunk, info.frames)))
            try:
                frames = frame_to_array(reader.get_batch(idx))
            except Exception as e:  # noqa: BLE001 - decord's own error types
                raise DataError(f"video {show_path(job.input)}: frames {idx[0]}-{idx[-1]} do not decode ({type(e).__name__}: {e})") from None
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
            writer.write(to_uint8(fn(x)))
            bar.update(len(idx))
