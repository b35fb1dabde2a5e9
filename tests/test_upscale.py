"""Tiled inference, self-ensemble and the upscale task (images, folders, videos, bad input)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_adapt.io.images import load_image
from sr_adapt.errors import SRAdaptError
from sr_adapt.inference.ensemble import self_ensemble
from sr_adapt.inference.tiling import TiledUpscaler, axis_tiles
from sr_adapt.inference.upscale import make_upscaler, upscale_video
from sr_adapt.tasks.upscale import run as upscale
from sr_adapt.io.video import probe_video
from sr_adapt.io.video_writer import VideoWriter
from sr_adapt.models.base import GlobalMeanPool
from tests.conftest import MINI, compose, run_script
from tests.tiny_models import make_video, save_ours, tiny_drn, tiny_drrn


@pytest.fixture(scope="module")
def lr_image() -> torch.Tensor:
    """(1, 3, 28, 36) crop of a bundled image."""
    return load_image(MINI / "hubble.png")[None, :, 30:58, 40:76].contiguous()


@pytest.fixture(scope="module")
def wide_image() -> torch.Tensor:
    """(1, 3, 28, 80) crop: 5 tiles across for the tiny DRN (margin 16, tile 16)."""
    return load_image(MINI / "hubble.png")[None, :, 30:58, 10:90].contiguous()


@pytest.fixture(scope="module")
def drn_ckpt(tmp_path_factory) -> Path:
    return save_ours(tiny_drn(), tmp_path_factory.mktemp("ckpt") / "drn_tiny.ckpt")


def _cfg(tmp_path: Path, *overrides: str):
    return compose("upscale", list(overrides), tmp_path)


# ------------------------------------------------------------------------------------------ tiling


def test_axis_tiles_partition_the_axis_with_margin() -> None:
    for n, tile, margin in [(100, 30, 7), (31, 31, 5), (57, 10, 10), (9, 4, 20), (540, 256, 100), (960, 256, 100)]:
        tiles = axis_tiles(n, tile, margin)
        assert tiles[0][0] == 0 and tiles[-1][1] == n
        assert all(t[1] == u[0] for t, u in zip(tiles, tiles[1:]))  # cores partition [0, n)
        assert len({t[3] for t in tiles}) == 1  # one crop size: tiles batch
        for a, b, c, length in tiles:
            assert length <= min(tile + 2 * margin, n) and 0 <= c and c + length <= n
            assert a - c >= min(margin, a) and (c + length) - b >= min(margin, n - b)
    assert len(axis_tiles(540, 256, 100)) == 2 and len(axis_tiles(960, 256, 100)) == 4  # 1080p -> 4K: 2 x 4 crops
    assert axis_tiles(300, 128, 100) == [(0, 300, 0, 300)]  # fits in one crop: untiled


def test_tiled_drn_equals_untiled_with_whole_image_attention_statistics(wide_image: torch.Tensor) -> None:
    net, lr_image = tiny_drn(), wide_image
    with torch.no_grad():
        ref = net.super_resolve(lr_image)
    seen = []  # the untiled forward's channel-attention means
    pools = [m for m in net.modules() if isinstance(m, GlobalMeanPool)]
    for p in pools:
        p.hook = lambda x: seen.append(x.mean(dim=(2, 3))) or x.mean(dim=(2, 3), keepdim=True)
    with torch.no_grad():
        net.super_resolve(lr_image)
    for p in pools:
        p.hook = None
    tiler = TiledUpscaler(net, tile=net.tile_margin(), tile_batch=3)
    out = tiler(lr_image)
    assert tiler.is_tiled(28, 80) and out.shape == ref.shape == (1, 3, 112, 320)
    assert (out - ref).abs().max() < 1e-4  # well within the 1/255 contract
    assert tiler.last_passes >= 2
    assert len(tiler._warm[1]) == len(seen) == 4  # 2 stages x 2 RCABs
    for got, want in zip(tiler._warm[1], seen):  # the recorded means are the whole image's
        assert (got.float() - want).abs().max() <= 2e-3 * want.abs().max()  # the iteration's tolerance
    again = tiler(lr_image)  # warm start (video: the previous frame's means): one pass suffices
    assert tiler.last_passes == 1 and (again - ref).abs().max() < 1e-4


def test_tiled_drrn_luma_model_equals_untiled(lr_image: torch.Tensor) -> None:
    net = tiny_drrn()
    with torch.no_grad():
        ref = net.super_resolve(lr_image)
    out = TiledUpscaler(net, tile=12, tile_batch=4)(lr_image)
    assert out.shape == ref.shape == (1, 3, 84, 108)
    assert (out - ref).abs().max() < 1 / 255


def test_tile_smaller_than_margin_and_fp16_on_cpu_are_refused() -> None:
    net = tiny_drn()
    with pytest.raises(SRAdaptError, match=rf"tile=3 .*margin.*{net.tile_margin()}"):
        TiledUpscaler(net, tile=3)
    with pytest.raises(SRAdaptError, match="fp16 needs a CUDA"):
        TiledUpscaler(net, tile=64, precision="fp16", device="cpu")


def test_tile_at_least_the_image_is_one_untiled_forward(lr_image: torch.Tensor) -> None:
    net = tiny_drrn()
    tiler = TiledUpscaler(net, tile=36)
    assert not tiler.is_tiled(28, 36) and not tiler.is_tiled(28, 36 + 2 * net.tile_margin())
    assert tiler.is_tiled(28, 37 + 2 * net.tile_margin())
    with torch.no_grad():
        assert torch.equal(tiler(lr_image), net.super_resolve(lr_image))


# ------------------------------------------------------------------------------------- ensemble


def test_self_ensemble_is_the_mean_over_the_eight_symmetries() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)
    x = torch.rand(2, 3, 5, 7)
    with torch.no_grad():
        got = self_ensemble(conv, x)
        want = torch.zeros_like(got)
        for flip in (False, True):
            xf = x.flip(-1) if flip else x
            for k in range(4):  # rotate, apply, rotate back, unflip: an independent construction
                y = torch.rot90(conv(torch.rot90(xf, k, (-2, -1))), -k, (-2, -1))
                want += y.flip(-1) if flip else y
        torch.testing.assert_close(got, want / 8)


def test_self_ensemble_of_an_equivariant_function_is_the_function() -> None:
    x = torch.rand(1, 3, 6, 9)
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest") ** 2  # noqa: E731
    torch.testing.assert_close(self_ensemble(up, x), up(x))
    calls = []
    self_ensemble(lambda t: calls.append(tuple(t.shape)) or t, x)
    assert calls == [(4, 3, 6, 9), (4, 3, 9, 6)]  # two batched calls, not eight


def test_self_ensemble_over_tiles_equals_untiled_ensemble(lr_image: torch.Tensor) -> None:
    net = tiny_drrn()
    with torch.no_grad():
        ref = self_ensemble(net.super_resolve, lr_image)
    out = self_ensemble(TiledUpscaler(net, tile=16), lr_image, fn_transposed=TiledUpscaler(net, tile=16))
    assert (out - ref).abs().max() < 1 / 255


# ------------------------------------------------------------------------ images, folders, video


def test_image_upscales_tiled_like_untiled(tmp_path: Path, drn_ckpt: Path) -> None:
    src = tmp_path / "in.png"
    Image.open(MINI / "coffee.png").crop((0, 0, 70, 36)).save(src)  # 2 tiles across
    out = tmp_path / "out" / "sr.png"
    upscale(_cfg(tmp_path, f"ckpt_path={drn_ckpt}", f"input={src}", f"output={out}", "tile=20", "tile_batch=2", "device=cpu"))
    sr = np.asarray(Image.open(out)).astype(np.int16)
    assert sr.shape == (144, 280, 3)
    with torch.no_grad():
        ref = tiny_drn().super_resolve(load_image(src)[None])
    ref8 = (ref.clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(sr - ref8).max() <= 1  # tiled output == untiled within 1/255
    assert sorted(p.name for p in out.parent.iterdir()) == ["sr.png"]  # no temporary files left


def test_folder_with_ensemble_writes_one_png_per_image(tmp_path: Path, drn_ckpt: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    Image.open(MINI / "coffee.png").crop((0, 0, 20, 16)).save(src / "a.png")
    Image.open(MINI / "hubble.png").crop((0, 0, 18, 22)).convert("L").save(src / "b.jpg")
    out = tmp_path / "sr"
    summary = upscale(_cfg(tmp_path, f"ckpt_path={drn_ckpt}", f"input={src}", f"output={out}", "ensemble=true", "device=cpu"))
    assert summary["kind"] == "folder" and len(summary["outputs"]) == 2
    assert Image.open(out / "a.png").size == (80, 64) and Image.open(out / "b.png").size == (72, 88)


def test_video_keeps_fps_frame_count_and_audio(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    import av

    ckpt = save_ours(tiny_drrn(), tmp_path / "drrn.ckpt")
    src = make_video(tmp_path / "clip.mp4", frames=7, fps=12)
    out = tmp_path / "out" / "clip_x2.mp4"
    summary = upscale(_cfg(tmp_path, f"ckpt_path={ckpt}", "scale=2", f"input={src}", f"output={out}", "tile=16"))
    assert summary["kind"] == "video" and summary["frames"] == 7
    err = capfd.readouterr().err
    assert "7/7" in err and "frame" in err  # tqdm progress bar (with its ETA) on stderr
    info = probe_video(out)
    assert (info.frames, info.fps, info.height, info.width) == (7, 12.0, 48, 64)
    with av.open(str(out)) as c, av.open(str(src)) as s:
        assert [a.codec_context.name for a in c.streams.audio] == ["aac"]
        n_out = sum(1 for p in c.demux(c.streams.audio[0]) if p.size)
        n_src = sum(1 for p in s.demux(s.streams.audio[0]) if p.size)
        assert n_out == n_src > 0  # every audio packet copied
    assert [p.name for p in out.parent.iterdir()] == ["clip_x2.mp4"]


def test_interrupted_video_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, 32, 24, fps=10) as w:
            w.write(np.zeros((3, 24, 32, 3), np.uint8))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_pipelined_video_equals_serial_and_surfaces_worker_errors(tmp_path: Path) -> None:
    from sr_adapt.errors import DataError

    src = make_video(tmp_path / "clip.mp4", frames=9, fps=12, audio=False)
    net = tiny_drrn()
    net.set_scale(2)
    fn, _ = make_upscaler(net, torch.device("cpu"), tile=16)
    info = probe_video(src)
    fps = Fraction(12)
    written: dict[bool, list] = {False: [], True: []}  # what reaches the encoder (x264 itself is not bit-stable)
    real_write = VideoWriter.write
    for pipelined in (False, True):
        def capture(self, frames, out=written[pipelined]):  # noqa: ANN001
            out.append(np.array(frames))
            return real_write(self, frames)

        VideoWriter.write = capture
        try:
            n = upscale_video(fn, src, tmp_path / f"{pipelined}.mp4", 2, fps, copy_audio=False, chunk=2, pipelined=pipelined)
        finally:
            VideoWriter.write = real_write
        assert n == info.frames == probe_video(tmp_path / f"{pipelined}.mp4").frames
    assert np.array_equal(np.concatenate(written[False]), np.concatenate(written[True]))

    calls = []

    def failing(x: torch.Tensor) -> torch.Tensor:  # the model fails on the third chunk
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return fn(x)

    out = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        upscale_video(failing, src, out, 2, fps, copy_audio=False, chunk=2)
    assert not out.exists()

    import sr_adapt.inference.upscale as up

    real = up.frame_to_array
    seen = []

    def broken(batch):  # noqa: ANN001 - decoding fails on the second chunk, inside the decode thread
        seen.append(1)
        if len(seen) == 2:
            raise ValueError("corrupt packet")
        return real(batch)

    up.frame_to_array = broken
    try:
        with pytest.raises(DataError, match=r"frames 2-3 do not decode \(ValueError: corrupt packet"):
            upscale_video(fn, src, out, 2, fps, copy_audio=False, chunk=2)
    finally:
        up.frame_to_array = real
    assert not out.exists()


def test_folder_with_a_corrupt_image_writes_nothing_unless_skip_bad(tmp_path: Path, drn_ckpt: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "c"):
        Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(src / f"{name}.png")
    good = (src / "a.png").read_bytes()
    (src / "b.png").write_bytes(good[: len(good) // 2])  # a valid header, truncated data
    out = tmp_path / "out"
    with pytest.raises(SRAdaptError, match=r"b\.png.*nothing was written.*skip_bad=true"):
        upscale(_cfg(tmp_path, f"ckpt_path={drn_ckpt}", f"input={src}", f"output={out}"))
    assert not out.exists() or not list(out.iterdir())
    summary = upscale(_cfg(tmp_path, f"ckpt_path={drn_ckpt}", f"input={src}", f"output={out}", "skip_bad=true"))
    assert sorted(Path(p).name for p in summary["outputs"]) == ["a.png", "c.png"]
    assert "skipping" in caplog.text and "b.png" in caplog.text

    deep = tmp_path / "deep.png"  # 16-bit input: written as 8-bit, with a warning
    Image.fromarray(np.full((20, 24), 30000, np.uint16)).save(deep)
    caplog.clear()
    upscale(_cfg(tmp_path, f"ckpt_path={drn_ckpt}", f"input={deep}", f"output={tmp_path}/deep_x4.png"))
    assert "16-bit" in caplog.text and "8 bits per channel" in caplog.text


def test_tile_batch_auto_is_one_on_a_cpu_and_four_on_a_gpu() -> None:
    from sr_adapt.inference.upscale import tile_batch_for

    assert tile_batch_for("auto", torch.device("cpu")) == 1
    assert tile_batch_for("auto", torch.device("cuda")) == 4
    assert tile_batch_for(3, torch.device("cpu")) == 3
    for bad in ("x", -1, 1.5, True):
        with pytest.raises(SRAdaptError, match=f"tile_batch={bad}"):
            tile_batch_for(bad, torch.device("cpu"))


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing", "does not exist"),
        ("corrupt_image", "cannot read image .*bad.png"),
        ("extension", r"unsupported file type '\.txt'"),
        ("corrupt_video", "cannot read video .*bad.mp4"),
        ("output_is_input", "is the input itself"),
        ("output_parent_is_file", "is a file, not a folder"),
        ("output_suffix", r"unsupported image suffix '\.xyz'"),
        ("video_output_suffix", r"unsupported video suffix '\.gif'"),
        ("tile", r"tile=4 is smaller than the receptive-field margin"),
        ("scale", r"holds DRN x4.*scale=2"),
        ("tile_batch", r"tile_batch=0: give auto"),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path: Path, drn_ckpt: Path, case: str, pattern: str) -> None:
    good = tmp_path / "good.png"
    Image.open(MINI / "coffee.png").crop((0, 0, 24, 24)).save(good)
    src, out, extra = good, tmp_path / "o" / "sr.png", []
    if case == "missing":
        src = tmp_path / "nope.png"
    elif case == "corrupt_image":
        src = tmp_path / "bad.png"
        src.write_bytes(good.read_bytes()[:200])  # truncated PNG
    elif case == "extension":
        src = tmp_path / "notes.txt"
        src.write_text("hello")
    elif case == "corrupt_video":
        src = tmp_path / "bad.mp4"
        src.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
        out = tmp_path / "o" / "sr.mp4"
    elif case == "output_is_input":
        out = good
    elif case == "output_parent_is_file":
        out = good / "sr.png"
    elif case == "output_suffix":
        out = tmp_path / "o" / "sr.xyz"
    elif case == "video_output_suffix":
        src = make_video(tmp_path / "clip.mp4", frames=2, audio=False)
        out = tmp_path / "o" / "sr.gif"
    elif case == "tile":
        extra = ["tile=4"]
    elif case == "scale":
        extra = ["scale=2"]
    elif case == "tile_batch":
        extra = ["tile_batch=0"]
    cfg = _cfg(tmp_path, f"ckpt_path={drn_ckpt}", f"input={src}", f"output={out}", "device=cpu", *extra)
    with pytest.raises(SRAdaptError, match=pattern):
        upscale(cfg)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_upscales_an_image_and_refuses_bad_input_in_one_line(tmp_path: Path, drn_ckpt: Path) -> None:
    src = tmp_path / "in.png"
    Image.open(MINI / "coffee.png").crop((0, 0, 20, 14)).save(src)
    proc = run_script("upscale.py", f"ckpt_path={drn_ckpt}", f"input={src}", f"output={tmp_path}/o.jpg",
                      f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1].startswith(f"wrote {tmp_path}/o.jpg in ")
    assert Image.open(tmp_path / "o.jpg").format == "JPEG" and Image.open(tmp_path / "o.jpg").size == (80, 56)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    proc = run_script("upscale.py", f"ckpt_path={drn_ckpt}", f"input={notes}", f"output={tmp_path}/o2.png",
                      f"hydra.run.dir={tmp_path}/h2")
    assert proc.returncode == 2 and "notes.txt" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bf16_autocast_runs_on_cpu_close_to_fp32(lr_image: torch.Tensor) -> None:
    net = tiny_drrn()
    with torch.no_grad():
        ref = net.super_resolve(lr_image)
    out = TiledUpscaler(net, tile=16, precision="bf16", device="cpu")(lr_image)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert 0 < (out - ref).abs().mean() < 0.02  # really reduced precision, still the same image


@pytest.mark.parametrize(
    "ckpt, keys",
    [
        ("drn_tiny_x4_official.pt", ["model=drn_s", "model.net.n_blocks=2", "model.net.n_feats=4", "scale=4"]),
        ("drn_tiny_x4_official.pdparams", ["model=drn_s", "model.net.n_blocks=2", "model.net.n_feats=4", "scale=4"]),
        ("drrn_port_tiny_c8.pth", ["scale=2"]),
    ],
)
def test_official_paddle_and_port_files_upscale_like_evaluate(tmp_path: Path, fixtures_dir: Path, ckpt: str, keys: list) -> None:
    src = tmp_path / "in.png"
    Image.open(MINI / "coffee.png").crop((0, 0, 20, 14)).save(src)
    out = tmp_path / "sr.png"
    upscale(_cfg(tmp_path, f"ckpt_path={fixtures_dir / ckpt}", f"input={src}", f"output={out}", "device=cpu", *keys))
    s = int(keys[-1].split("=")[1])
    assert Image.open(out).size == (20 * s, 14 * s)


def test_background_producer_delivers_every_item_to_a_slow_consumer() -> None:
    """The decode thread fills its queue long before the model is done: the end mark still arrives."""
    import time

    from sr_adapt.inference.upscale import _in_background

    got = []
    for item in _in_background(iter(range(4)), depth=1, name="test"):
        time.sleep(1.2)  # slower than any timeout inside
        got.append(item)
    assert got == [0, 1, 2, 3]
