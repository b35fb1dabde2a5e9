"""Image I/O, transforms and folder datasets (sr_adapt.data)."""

from __future__ import annotations

import gc
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from sr_adapt.data.sources.paired import HRFolderDataset, PairedFolderDataset
from sr_adapt.data.transforms import lr_pyramid, mod_crop, pyramid_factors, random_flip_transpose
from sr_adapt.errors import DataError
from sr_adapt.evaluation.benchmarks import BenchmarkFolderDataset
from sr_adapt.io.images import _to_array, image_size, list_images, load_image, save_image
from sr_adapt.data.transforms import apply_flip_transpose
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize

TOL = 1.0 / 255 + 1e-5  # one 8-bit step


# ----------------------------------------------------------------------------- helpers


def _rand_rgb(h: int, w: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: noise on a gradient, so any misalignment shows up loudly."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 3 + xx * 2)[..., None] % 256
    return ((base + rng.integers(0, 96, (h, w, 3))) % 256).astype(np.uint8)


def _save(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _make_div2k(root: Path, scale: int, sizes: list[tuple[int, int]], seed: int = 0) -> tuple[Path, Path]:
    """HR PNGs plus LR_bicubic/X{f}/{stem}x{f}.png made by quantize(imresize(mod_crop(HR, f), 1/f))."""
    hr_dir, lr_dir = root / "HR", root / "LR_bicubic"
    f = scale
    factors = []
    while f >= 2:
        factors.append(f)
        f //= 2
    for i, (h, w) in enumerate(sizes):
        stem = f"{i + 1:04d}"
        hr_path = _save(_rand_rgb(h, w, seed + i), hr_dir / f"{stem}.png")
        hr = load_image(hr_path)
        for f in factors:
            save_image(quantize(imresize(mod_crop(hr, f), scale=1.0 / f)), lr_dir / f"X{f}" / f"{stem}x{f}.png")
    return hr_dir, lr_dir


def _locate(patch: Tensor, full: Tensor, step: int) -> tuple[int, int]:
    """Top-left (y, x), a multiple of ``step``, where ``patch`` is an exact crop of ``full``."""
    p = patch.shape[-1]
    for y in range(0, full.shape[-2] - p + 1, step):
        for x in range(0, full.shape[-1] - p + 1, step):
            if torch.equal(full[:, y : y + p, x : x + p], patch):
                return y, x
    raise AssertionError("patch is not an aligned, un-flipped crop of the image")


# ----------------------------------------------------------------------------- image I/O


def test_list_images_filters_and_sorts(tmp_path: Path) -> None:
    for name in ["b.PNG", "a.jpg", "c.txt", ".hidden.png", "d.TIFF"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path, "k")] == ["a.jpg", "b.PNG", "d.TIFF"]


@pytest.mark.parametrize(
    ("mode", "arr", "expected"),
    [
        ("L", np.array([[0, 128], [255, 7]], np.uint8), np.array([[0, 128], [255, 7]]) / 255),
        ("I;16", np.array([[0, 32768], [65535, 1000]], np.uint16), np.array([[0, 32768], [65535, 1000]]) / 65535),
    ],
)
def test_load_grayscale_replicated(tmp_path: Path, mode: str, arr: np.ndarray, expected: np.ndarray) -> None:
    path = tmp_path / "g.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as im:
        assert im.mode == mode
    x = load_image(path)
    assert x.shape == (3, 2, 2) and x.dtype == torch.float32
    for c in range(3):
        torch.testing.assert_close(x[c], torch.tensor(expected, dtype=torch.float32))
    if mode == "I;16":
        assert x[0, 1, 0] == 1.0 and abs(x[0, 0, 1].item() - 0.5) < 1e-4


def test_load_int32_mode_scaled_as_16_bit() -> None:
    img = Image.fromarray(np.array([[0, 65535], [32768, 70000]], np.int32), "I")
    arr = _to_array(img)
    assert arr.shape == (2, 2, 3)
    np.testing.assert_allclose(arr[..., 0], [[0.0, 1.0], [32768 / 65535, 1.0]], atol=1e-6)


def test_load_rgba_la_palette_cmyk(tmp_path: Path) -> None:
    rgb = _rand_rgb(8, 10, 1)
    alpha = np.full((8, 10, 1), 7, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(tmp_path / "rgba.png")
    torch.testing.assert_close(load_image(tmp_path / "rgba.png"), torch.from_numpy(rgb).permute(2, 0, 1) / 255.0)

    gray = rgb[..., 0]
    Image.fromarray(np.stack([gray, alpha[..., 0]], -1), "LA").save(tmp_path / "la.png")
    la = load_image(tmp_path / "la.png")
    torch.testing.assert_close(la, (torch.from_numpy(gray) / 255.0).expand(3, -1, -1))

    pal = Image.new("P", (4, 3))
    pal.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2, 0] * 3)
    pal.save(tmp_path / "p.png")
    p = load_image(tmp_path / "p.png")
    assert p.shape == (3, 3, 4)
    torch.testing.assert_close(p[:, 0, 2], torch.tensor([10, 20, 30]) / 255.0)
    torch.testing.assert_close(p[:, 1, 1], torch.tensor([0.0, 1.0, 0.0]))

    # CMYK JPEG: C=255 on white paper is cyan (0, 255, 255) in RGB.
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    c = load_image(tmp_path / "cmyk.jpg")
    assert c.shape == (3, 16, 16) and 0.0 <= c.min() and c.max() <= 1.0
    torch.testing.assert_close(c.mean((1, 2)), torch.tensor([0.0, 1.0, 1.0]), atol=3 / 255, rtol=0)


def test_image_size_header_and_save_roundtrip(tmp_path: Path) -> None:
    x = quantize(torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(0)))
    out = save_image(x, tmp_path / "a" / "b" / "x.png")
    assert image_size(out) == (7, 9)
    assert torch.equal(load_image(out), x)
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.png"]  # no temp file left
    save_image(torch.full((1, 2, 3), 2.0), tmp_path / "g.png")  # clamped, written as L
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L" and np.asarray(im).min() == 255


def test_corrupt_and_truncated_files_raise_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(DataError, match="x.png"):
        load_image(bad)
    with pytest.raises(DataError, match="x.png"):
        image_size(bad)
    trunc = _truncated_png(tmp_path / "t.png")
    assert image_size(trunc) == (64, 64)  # header fine ...
    with pytest.raises(DataError, match="t.png"):  # ... pixels not
        load_image(trunc)


def _truncated_png(path: Path, size: int = 64, seed: int = 5) -> Path:
    _save(_rand_rgb(size, size, seed), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# ----------------------------------------------------------------------------- transforms


def test_mod_crop_flip_and_pyramid_shapes() -> None:
    x = torch.rand(2, 3, 35, 42)
    assert mod_crop(x, 8).shape == (2, 3, 32, 40)
    a = torch.arange(12.0).reshape(1, 3, 4)
    outs = random_flip_transpose([a, a.clone()], torch.Generator().manual_seed(3))
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(apply_flip_transpose(a, (True, False, True)), a.flip(-1).transpose(-2, -1))
    levels = lr_pyramid(torch.rand(2, 3, 32, 48), 8)
    assert [tuple(t.shape) for t in levels] == [(2, 3, 4, 6), (2, 3, 8, 12), (2, 3, 16, 24)]
    assert all(torch.equal(t, quantize(t)) for t in levels)
    with pytest.raises(ValueError, match="mod_crop"):
        lr_pyramid(torch.rand(3, 30, 32), 4)


# ----------------------------------------------------------------------------- paired DIV2K-style


@pytest.fixture(scope="module")
def div2k_x4(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # 75x101 is not a multiple of 4: LR files are floor(HR / f) (X2 37x50, X4 18x25).
    return _make_div2k(tmp_path_factory.mktemp("div2k4"), 4, [(64, 80), (75, 101), (96, 64)])


def test_paired_crops_are_aligned(div2k_x4: tuple[Path, Path]) -> None:
    hr_dir, lr_dir = div2k_x4
    ds = PairedFolderDataset(hr_dir, lr_dir, scale=4, lr_factors=pyramid_factors(4), patch_size=32, augment=False, seed=0)
    assert len(ds) == 3
    for i in range(len(ds)):
        s = ds[i]
        assert s["lr"] is s["lr_levels"][0] and bool(s["paired"])
        assert [tuple(t.shape) for t in [s["hr"], *s["lr_levels"]]] == [(3, 32, 32), (3, 8, 8), (3, 16, 16)]
        full_hr = load_image(hr_dir / f"{s['name']}.png")
        y, x = _locate(s["hr"], full_hr, 4)
        for f, lvl in zip([4, 2], s["lr_levels"]):
            full_lr = load_image(lr_dir / f"X{f}" / f"{s['name']}x{f}.png")
            assert torch.equal(lvl, full_lr[:, y // f : y // f + 32 // f, x // f : x // f + 32 // f])
            # and independently: a bicubic downscale of the (mod-cropped) full HR image
            ref = quantize(imresize(mod_crop(full_hr, f), scale=1.0 / f))
            crop = ref[:, y // f : y // f + 32 // f, x // f : x // f + 32 // f]
            assert (lvl - crop).abs().max() <= TOL


def test_paired_augment_same_transform_for_all_levels(div2k_x4: tuple[Path, Path]) -> None:
    hr_dir, lr_dir = div2k_x4
    ds = PairedFolderDataset(hr_dir, lr_dir, scale=4, patch_size=32, augment=True, repeat=8, seed=1)
    assert len(ds) == 24
    unflipped = 0
    for i in range(len(ds)):
        s = ds[i]
        for f, lvl in zip([4, 2], s["lr_levels"]):
            # LR pixels whose bicubic support lies inside the patch (2 LR px from the edge).
            down = imresize(s["hr"], scale=1.0 / f)
            assert (down - lvl)[:, 2:-2, 2:-2].abs().max() <= TOL + 1e-4
        try:
            _locate(s["hr"], load_image(hr_dir / f"{s['name']}.png"), 4)
            unflipped += 1
        except AssertionError:
            pass
    assert unflipped < len(ds)  # augmentation happened
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_paired_x8_shapes_collate_and_pickle(tmp_path: Path) -> None:
    hr_dir, lr_dir = _make_div2k(tmp_path, 8, [(72, 80), (64, 64)])
    (lr_dir / "X8").rename(lr_dir / "x8")  # lower-case folder names accepted
    ds = PairedFolderDataset(hr_dir, lr_dir, scale=8, lr_factors=pyramid_factors(8), patch_size=64, seed=0, cache=True)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["hr"].shape == (2, 3, 64, 64) and batch["lr"].shape == (2, 3, 8, 8)
    assert [tuple(t.shape) for t in batch["lr_levels"]] == [(2, 3, 8, 8), (2, 3, 16, 16), (2, 3, 32, 32)]
    assert batch["paired"].tolist() == [True, True] and batch["name"] == ["0001", "0002"]
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[1]["hr"], ds[1]["hr"])


# ----------------------------------------------------------------------------- HR only


def test_hr_folder_on_the_fly_pyramid_matches_full_image(tmp_path: Path) -> None:
    _save(_rand_rgb(70, 90, 3), tmp_path / "hr" / "a.png")  # mod-cropped to 64x88 at x8
    ds = HRFolderDataset(tmp_path / "hr", scale=8, lr_factors=pyramid_factors(8), patch_size=32, augment=False, repeat=6, seed=2)
    full_hr = mod_crop(load_image(tmp_path / "hr" / "a.png"), 8)
    full_levels = lr_pyramid(full_hr, 8)
    for i in range(len(ds)):
        s = ds[i]
        assert [tuple(t.shape) for t in s["lr_levels"]] == [(3, 4, 4), (3, 8, 8), (3, 16, 16)]
        y, x = _locate(s["hr"], full_hr, 8)
        for f, lvl, full in zip([8, 4, 2], s["lr_levels"], full_levels):
            crop = full[:, y // f : y // f + 32 // f, x // f : x // f + 32 // f]
            assert (lvl - crop).abs().max() <= TOL  # the whole patch, edges included


def test_hr_folder_augment_and_too_small(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _save(_rand_rgb(48, 48, 4), tmp_path / "big.png")
    _save(_rand_rgb(40, 60, 4), tmp_path / "small.png")  # mod 4: 40x60 < 48
    with pytest.raises(DataError) as e:
        HRFolderDataset(tmp_path, scale=4, patch_size=48, config_key="data.hr", patch_size_key="data.hr.patch")
    msg = str(e.value)
    assert "small.png" in msg and "60x40" in msg and "data.hr.patch" in msg and "big.png" not in msg
    with caplog.at_level(logging.WARNING):
        ds = HRFolderDataset(tmp_path, scale=4, patch_size=48, skip_bad=True, seed=0)
    assert len(ds) == 1 and "small.png" in caplog.text and "Dropped 1" in caplog.text
    s = ds[0]
    down = imresize(s["hr"], scale=0.25)
    assert (down - s["lr"])[:, 2:-2, 2:-2].abs().max() <= TOL + 1e-4


# ----------------------------------------------------------------------------- bad input


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        PairedFolderDataset(tmp_path / "nope", tmp_path, scale=4, patch_size=32)
    assert "nope" in str(e.value) and "PairedFolderDataset.hr_dir" in str(e.value) and "does not exist" in str(e.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(DataError) as e:
        HRFolderDataset(tmp_path / "empty", scale=4, patch_size=32, config_key="data.foo")
    assert "empty" in str(e.value) and "data.foo.hr_dir" in str(e.value) and ".png" in str(e.value)
    hr_dir = tmp_path / "hr"
    _save(_rand_rgb(32, 32, 0), hr_dir / "0001.png")
    with pytest.raises(DataError) as e:
        PairedFolderDataset(hr_dir, tmp_path / "lr_missing", scale=4, lr_factors=pyramid_factors(4), patch_size=32)
    assert "lr_missing" in str(e.value) and "PairedFolderDataset.lr_dir" in str(e.value)
    (tmp_path / "lr" / "X4").mkdir(parents=True)
    with pytest.raises(DataError) as e:  # X2 subfolder missing
        PairedFolderDataset(hr_dir, tmp_path / "lr", scale=4, lr_factors=pyramid_factors(4), patch_size=32)
    assert "X2" in str(e.value) and "PairedFolderDataset.lr_dir" in str(e.value)


def test_patch_not_divisible_by_scale(div2k_x4: tuple[Path, Path]) -> None:
    with pytest.raises(DataError) as e:
        PairedFolderDataset(*div2k_x4, scale=4, patch_size=30)
    assert "data.patch_size" in str(e.value) and "30" in str(e.value) and "PairedFolderDataset" in str(e.value)


def test_missing_lr_file_and_size_mismatch(tmp_path: Path) -> None:
    hr_dir, lr_dir = _make_div2k(tmp_path, 4, [(32, 32)] * 8)
    for i in range(1, 8):
        (lr_dir / "X2" / f"000{i}x2.png").unlink()
    with pytest.raises(DataError) as e:
        PairedFolderDataset(hr_dir, lr_dir, scale=4, lr_factors=pyramid_factors(4), patch_size=32)
    msg = str(e.value)
    assert "0001x2.png" in msg and "and 2 more" in msg and "7 of 8" in msg and "PairedFolderDataset.lr_dir" in msg

    hr_dir, lr_dir = _make_div2k(tmp_path / "b", 4, [(32, 32), (32, 32)])
    _save(_rand_rgb(9, 8, 0), lr_dir / "X4" / "0002x4.png")
    with pytest.raises(DataError) as e:
        PairedFolderDataset(hr_dir, lr_dir, scale=4, lr_factors=pyramid_factors(4), patch_size=16, config_key="data.x")
    msg = str(e.value)
    assert "0002.png" in msg and "0002x4.png" in msg and "32x32" in msg and "8x9" in msg and "data.x.lr_dir" in msg


def test_image_smaller_than_patch(div2k_x4: tuple[Path, Path]) -> None:
    with pytest.raises(DataError) as e:
        PairedFolderDataset(*div2k_x4, scale=4, patch_size=72)
    msg = str(e.value)
    assert "0001.png" in msg and "80x64" in msg and "data.patch_size" in msg and "PairedFolderDataset" in msg


def test_corrupt_file_at_construction_and_skip_bad(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _save(_rand_rgb(32, 32, 0), tmp_path / "good.png")
    (tmp_path / "x.png").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(DataError) as e:
        HRFolderDataset(tmp_path, scale=4, patch_size=16)
    assert "x.png" in str(e.value) and "HRFolderDataset" in str(e.value) and "HRFolderDataset.skip_bad" in str(e.value)
    with caplog.at_level(logging.WARNING):
        ds = HRFolderDataset(tmp_path, scale=4, patch_size=16, skip_bad=True)
    assert len(ds) == 1 and "x.png" in caplog.text
    assert ds[0]["name"] == "good"


def test_truncated_file_at_load_time(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hr_dir = tmp_path / "hr"
    _save(_rand_rgb(32, 32, 0), hr_dir / "a.png")
    _truncated_png(hr_dir / "b_trunc.png", size=32)
    ds = HRFolderDataset(hr_dir, scale=4, patch_size=16, seed=0)  # headers are fine
    assert len(ds) == 2
    with pytest.raises(DataError) as e:
        ds[1]
    assert "b_trunc.png" in str(e.value) and "HRFolderDataset" in str(e.value)

    ds = HRFolderDataset(hr_dir, scale=4, patch_size=16, repeat=3, skip_bad=True, seed=0)
    with caplog.at_level(logging.WARNING):
        names = [ds[i]["name"] for i in range(len(ds))]
    assert names == ["a"] * 6
    assert ds.skipped == 3  # indices 1, 3, 5 were replaced ...
    assert caplog.text.count("b_trunc.png") == 1  # ... the file was tried and reported once

    with pytest.raises(DataError, match="skip_bad"):  # cache decodes at construction
        HRFolderDataset(hr_dir, scale=4, patch_size=16, cache=True)


@pytest.mark.timeout(120)
def test_dataloader_workers_surface_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # After a worker error torch joins each idle worker with this timeout (5 s) before
    # killing it; shorten it so the test does not spend 10 s shutting down.
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.5, raising=False)
    hr_dir, lr_dir = _make_div2k(tmp_path, 4, [(32, 32)] * 4)
    _truncated_png(hr_dir / "0003.png", size=32)
    ds = PairedFolderDataset(hr_dir, lr_dir, scale=4, patch_size=16)
    loader = DataLoader(ds, batch_size=2, num_workers=2, timeout=60)
    message = ""
    try:
        for _ in loader:
            pass
    except DataError as e:  # DataLoader re-raises the worker's exception type
        message = str(e)
    gc.collect()  # shut the workers down while the patch is active
    assert "0003.png" in message and "PairedFolderDataset" in message


# ----------------------------------------------------------------------------- benchmark


def test_benchmark_with_lr_dir(tmp_path: Path) -> None:
    hr_dir, lr_dir = _make_div2k(tmp_path, 4, [(34, 42), (32, 32)])
    ds = BenchmarkFolderDataset(hr_dir, 4, lr_dir=lr_dir, cache=True)
    s = ds[0]
    assert s["hr"].shape == (3, 32, 40) and s["lr"].shape == (3, 8, 10) and s["name"] == "0001"
    assert (s["lr"] - BenchmarkFolderDataset(hr_dir, 4)[0]["lr"]).abs().max() <= TOL
    _save(_rand_rgb(7, 8, 0), lr_dir / "X4" / "0002x4.png")
    with pytest.raises(DataError) as e:
        BenchmarkFolderDataset(hr_dir, 4, lr_dir=lr_dir)
    assert "0002x4.png" in str(e.value) and "benchmarks.lr_dir" in str(e.value)


def test_benchmark_set5(set5_dir: Path) -> None:
    ds = BenchmarkFolderDataset(set5_dir, 4)
    assert len(ds) == 5
    items = {s["name"]: s for s in ds}
    assert items["baby"]["hr"].shape == (3, 512, 512) and items["baby"]["lr"].shape == (3, 128, 128)
    assert items["woman"]["hr"].shape == (3, 344, 228) and items["woman"]["lr"].shape == (3, 86, 57)
    x3 = BenchmarkFolderDataset(set5_dir, 3)
    woman = next(x3[i] for i in range(len(x3)) if x3[i]["name"] == "woman")
    assert woman["hr"].shape == (3, 342, 228) and woman["lr"].shape == (3, 114, 76)
