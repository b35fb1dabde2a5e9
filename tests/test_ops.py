"""Tests for sr_adapt.ops: MATLAB-compatible imresize, BT.601 colour, Y-PSNR / SSIM."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sr_adapt.ops import from_uint8, imresize, psnr, quantize, rgb_to_y, rgb_to_ycbcr, ssim, to_uint8, ycbcr_to_rgb

# ---------------------------------------------------------------------------------------
# Independent reference: MATLAB's bicubic imresize written as plain per-pixel loops.
# ---------------------------------------------------------------------------------------


def _keys(d: float) -> float:
    d = abs(d)
    if d <= 1.0:
        return 1.5 * d**3 - 2.5 * d**2 + 1.0
    if d <= 2.0:
        return -0.5 * d**3 + 2.5 * d**2 - 4.0 * d + 2.0
    return 0.0


def _mirror(k: int, n: int) -> int:
    """1-based index reflected into 1..n with the edge sample repeated (0 -> 1, n+1 -> n)."""
    while k < 1 or k > n:
        if k < 1:
            k = 1 - k
        if k > n:
            k = 2 * n + 1 - k
    return k


def _ref_resize_1d(v: np.ndarray, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    n = len(v)
    shrink_aa = antialias and scale < 1
    kw = 4.0 / scale if shrink_aa else 4.0
    out = np.zeros(out_len)
    for i in range(1, out_len + 1):
        center = i / scale + 0.5 * (1 - 1 / scale)
        start = math.floor(center - kw / 2)
        acc, total = 0.0, 0.0
        for k in range(start, start + math.ceil(kw) + 2):
            wt = scale * _keys(scale * (center - k)) if shrink_aa else _keys(center - k)
            acc += wt * v[_mirror(k, n) - 1]
            total += wt
        out[i - 1] = acc / total
    return out


def _ref_imresize(img: np.ndarray, scale: float | None = None, size=None, antialias=True) -> np.ndarray:
    h, w = img.shape
    if size is None:
        sh = sw = scale
        oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    else:
        oh, ow = size
        sh, sw = oh / h, ow / w

    def rows(a):  # resize along height, column by column
        return np.stack([_ref_resize_1d(a[:, j], oh, sh, antialias) for j in range(a.shape[1])], axis=1)

    def cols(a):  # resize along width, row by row
        return np.stack([_ref_resize_1d(a[i, :], ow, sw, antialias) for i in range(a.shape[0])], axis=0)

    return rows(cols(img)) if sw < sh else cols(rows(img))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(torch.float64)


# ---------------------------------------------------------------------------------------
# imresize
# ---------------------------------------------------------------------------------------


def test_hand_derived_border_weights():
    """First outputs worked out by hand from the kernel, the mapping and the mirroring."""
    v = torch.tensor([[3.0, -1.0, 2.0, 7.0, 5.0, 4.0, 0.0, 1.0]], dtype=torch.float64)  # (1, 8)
    up = imresize(v, size=(1, 16))
    # u = 0.75; taps -1 -> 2, 0 -> 1, 1, 2 with weights -0.0234375, 0.2265625, 0.8671875, -0.0703125
    assert up[0, 0].item() == pytest.approx(1.09375 * 3.0 - 0.09375 * -1.0, abs=1e-12)
    down = imresize(v, size=(1, 4))
    # u = 1.5, stretched kernel of width 8: taps -2..5 mirrored to 3, 2, 1, 1, 2, 3, 4, 5
    expected = 0.546875 * 3.0 + 0.3984375 * -1.0 + 0.1015625 * 2.0 - 0.03515625 * 7.0 - 0.01171875 * 5.0
    assert down[0, 0].item() == pytest.approx(expected, abs=1e-12)


def test_ramp_reproduced_in_interior():
    """Keys' a = -0.5 cubic reproduces linear signals: away from borders out = u - 1."""
    n = 32
    ramp = torch.arange(n, dtype=torch.float64)[None, :]  # value k-1 at 1-based k
    for scale in (2.0, 0.5, 3.0):
        out = imresize(ramp, size=(1, round(n * scale)))[0]
        x = torch.arange(1, out.numel() + 1, dtype=torch.float64)
        u = x / scale + 0.5 * (1 - 1 / scale)
        reach = 2.0 / min(scale, 1.0) + 1
        inner = (u - reach >= 1) & (u + reach <= n)
        assert inner.sum() > 5
        torch.testing.assert_close(out[inner], (u - 1)[inner], atol=1e-10, rtol=0)


@pytest.mark.parametrize("scale", [0.5, 0.25, 1 / 3, 0.3, 2.0, 3.0, 1.7])
def test_constant_stays_constant(scale):
    x = torch.full((2, 3, 13, 17), 0.37, dtype=torch.float64)
    y = imresize(x, scale)
    torch.testing.assert_close(y, torch.full_like(y, 0.37), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "shape, scale, expected",
    [((12, 12), 0.5, (6, 6)), ((10, 7), 0.3, (3, 3)), ((9, 7), 1 / 3, (3, 3)), ((5, 6), 1.7, (9, 11)),
     ((4, 4), 2.0, (8, 8)), ((11, 13), 0.25, (3, 4))],
)
def test_output_size_is_ceil(shape, scale, expected):
    assert imresize(torch.zeros(shape), scale).shape == expected


@pytest.mark.parametrize("scale", [2.0, 0.5, 0.3, 1.7, 3.0, 0.25])
def test_matches_loop_reference(scale):
    rng = np.random.default_rng(0)
    img = rng.random((9, 11))
    got = imresize(_t(img), scale).numpy()
    ref = _ref_imresize(img, scale)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)


def test_hand_made_4x4_and_8x1():
    a = np.array([[0, 10, 20, 30], [5, 50, 15, 0], [100, 0, 40, 60], [1, 2, 3, 4]], dtype=np.float64)
    for s in (2.0, 0.5):
        np.testing.assert_allclose(imresize(_t(a), s).numpy(), _ref_imresize(a, s), atol=1e-6, rtol=0)
    col = np.array([[0.0], [1], [4], [9], [16], [9], [4], [1]])  # 8x1
    np.testing.assert_allclose(imresize(_t(col), size=(16, 1)).numpy(), _ref_imresize(col, size=(16, 1)), atol=1e-6)
    np.testing.assert_allclose(imresize(_t(col), size=(4, 1)).numpy(), _ref_imresize(col, size=(4, 1)), atol=1e-6)


@pytest.mark.parametrize("size", [(5, 20), (20, 5), (7, 3), (14, 14)])
def test_explicit_size_per_dimension_scale(size):
    rng = np.random.default_rng(1)
    img = rng.random((10, 8))
    got = imresize(_t(img), size=size).numpy()
    assert got.shape == size
    np.testing.assert_allclose(got, _ref_imresize(img, size=size), atol=1e-6, rtol=0)


def test_no_antialias_uses_plain_kernel():
    rng = np.random.default_rng(2)
    img = rng.random((12, 10))
    got = imresize(_t(img), 0.5, antialias=False).numpy()
    np.testing.assert_allclose(got, _ref_imresize(img, 0.5, antialias=False), atol=1e-6, rtol=0)
    assert not np.allclose(got, imresize(_t(img), 0.5).numpy(), atol=1e-3)


def test_batched_equals_per_image_and_dtypes():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 3, 16, 12, dtype=torch.float64)  # extra leading dims
    y = imresize(x, 0.5)
    assert y.shape == (2, 3, 3, 8, 6) and y.dtype == torch.float64
    for i in range(2):
        for c in range(3):
            torch.testing.assert_close(y[i, c], imresize(x[i, c], 0.5), atol=1e-12, rtol=0)
    y32 = imresize(x.float(), 0.5)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y, atol=1e-5, rtol=0)


def test_not_clamped_and_uint8_input():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:, :] = 1.0  # a step edge overshoots under bicubic
    y = imresize(x, 2.0)
    assert y.max() > 1.0 and y.min() < 0.0
    u8 = (x * 255).to(torch.uint8)
    y8 = imresize(u8, 2.0)
    assert y8.dtype == torch.float32
    torch.testing.assert_close(y8, y * 255, atol=1e-3, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4))
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4), 2.0, size=(8, 8))
    with pytest.raises(ValueError):
        imresize(torch.zeros(4), 2.0)


# ---------------------------------------------------------------------------------------
# colour
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_bicubic_upsampling_by_convolution_equals_torch(scale):
    from sr_adapt.ops.resize import upsample_bicubic_by_conv

    g = torch.Generator().manual_seed(scale)
    for h, w in [(1, 1), (2, 3), (7, 5), (24, 17)]:
        x = torch.rand(2, 3, h, w, generator=g) * 2 - 0.5  # outside [0, 1] too: no clamping either way
        ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        out = upsample_bicubic_by_conv(x, scale)
        assert out.shape == ref.shape
        assert (out - ref).abs().max() < 1e-5
    # a phase filter sums to 1 and has PyTorch's weights: x4, first phase (source offset -0.375)
    from sr_adapt.ops.resize import _phase_kernels

    k = _phase_kernels(4, 1)[0, 0]
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    row = k.sum(axis=1)
    assert row == pytest.approx([-0.065918, 0.4262695, 0.7495117, -0.1098633, 0.0], abs=1e-6)  # Keys a=-0.75 at 1.625, 0.625, 0.375, 1.375


def test_y_of_white_black_and_formula():
    white = torch.ones(1, 3, 2, 2)
    black = torch.zeros(1, 3, 2, 2)
    assert rgb_to_y(white).shape == (1, 1, 2, 2)
    torch.testing.assert_close(rgb_to_y(white), torch.full((1, 1, 2, 2), 235 / 255), atol=1e-6, rtol=0)
    torch.testing.assert_close(rgb_to_y(black), torch.full((1, 1, 2, 2), 16 / 255), atol=1e-7, rtol=0)
    px = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64).view(3, 1, 1)
    expected = (16 + 65.481 * 0.2 + 128.553 * 0.5 + 24.966 * 0.9) / 255
    assert rgb_to_y(px).item() == pytest.approx(expected, abs=1e-12)
    ycc = rgb_to_ycbcr(white.double())
    torch.testing.assert_close(ycc[:, 1:], torch.full((1, 2, 2, 2), 128 / 255, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(ycc[:, :1], rgb_to_y(white.double()), atol=1e-12, rtol=0)


def test_ycbcr_round_trip():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 9)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5, rtol=0)
    y = rgb_to_ycbcr(x)
    torch.testing.assert_close(rgb_to_ycbcr(ycbcr_to_rgb(y)), y, atol=1e-5, rtol=0)


def test_quantize():
    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 100.51 / 255, 1.0, 1.3], dtype=torch.float64)
    expected = torch.tensor([0, 0, 1, 1, 101, 255, 255], dtype=torch.float64) / 255
    torch.testing.assert_close(quantize(x), expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------


def test_psnr_known_mse():
    hr = torch.full((2, 3, 16, 16), 0.5)
    sr = hr + 1 / 255  # every channel +1 grey level -> Y differs by (65.481+128.553+24.966)/255
    dy = (65.481 + 128.553 + 24.966) / 255
    expected = 10 * math.log10(255**2 / dy**2)
    p = psnr(sr, hr)
    assert p.shape == (2,) and p.dtype == torch.float64
    torch.testing.assert_close(p, torch.full((2,), expected, dtype=torch.float64), atol=1e-4, rtol=0)
    # RGB mode: MSE of exactly 1 grey level
    one_level = torch.full((2,), 10 * math.log10(255**2), dtype=torch.float64)
    torch.testing.assert_close(psnr(sr, hr, y_channel=False), one_level, atol=1e-4, rtol=0)
    # C = 1 input is taken as Y already
    assert psnr(sr[:, :1], hr[:, :1])[0].item() == pytest.approx(10 * math.log10(255**2), abs=1e-4)


def test_psnr_identical_is_inf_and_per_image():
    torch.manual_seed(0)
    hr = torch.rand(3, 3, 20, 20)
    sr = hr.clone()
    sr[1] = (sr[1] + 0.05).clamp(0, 1)
    p = psnr(sr, hr)
    assert p.shape == (3,)
    assert math.isinf(p[0].item()) and p[0] > 0 and math.isinf(p[2].item())
    assert p[1].item() == pytest.approx(27.5332, abs=1e-3)  # Y of a +0.05 shift, less where clamped at 1


def test_shave_removes_borders():
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 24, 24)
    sr = hr.clone()
    sr[..., :3, :] = 0
    sr[..., :, -3:] = 1
    assert psnr(sr, hr, shave=2).item() < 30
    assert math.isinf(psnr(sr, hr, shave=3).item())
    assert ssim(sr, hr, shave=3).item() == pytest.approx(1.0, abs=1e-12)


def test_size_mismatch():
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 20, 20)
    bigger = torch.cat([hr, torch.rand(1, 3, 3, 20)], dim=2)
    assert math.isinf(psnr(bigger, hr).item())  # cropped to hr
    with pytest.raises(ValueError, match=r"\(1, 3, 18, 20\).*\(1, 3, 20, 20\)"):
        psnr(hr[..., :18, :], hr)
    with pytest.raises(ValueError):
        ssim(hr[..., :, :19], hr)


def _ssim_conv_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM via an explicit 11x11 conv2d ('valid'), on (B, 1, H, W) in 0..255."""
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    win = (g / g.sum())[None, None]
    f = lambda t: F.conv2d(t, win)  # noqa: E731
    ma, mb = f(a), f(b)
    va, vb, cab = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return m.mean(dim=(1, 2, 3))


def test_ssim_values():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 32, 40, dtype=torch.float64)
    assert torch.allclose(ssim(hr, hr), torch.ones(2, dtype=torch.float64), atol=1e-12)
    s = [ssim((hr + sig * torch.randn_like(hr)).clamp(0, 1), hr) for sig in (0.01, 0.05, 0.2)]
    assert s[0].shape == (2,)
    assert (s[0] > s[1]).all() and (s[1] > s[2]).all() and (s[0] < 1).all()
    noisy = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
    ref = _ssim_conv_reference(rgb_to_y(noisy) * 255, rgb_to_y(hr) * 255)
    torch.testing.assert_close(ssim(noisy, hr), ref, atol=1e-10, rtol=0)
    per_channel = torch.stack(
        [_ssim_conv_reference(noisy[:, c : c + 1] * 255, hr[:, c : c + 1] * 255) for c in range(3)], dim=1
    )
    torch.testing.assert_close(ssim(noisy, hr, y_channel=False), per_channel.mean(1), atol=1e-10, rtol=0)


def test_uint8_round_trip_is_quantize_with_its_tie_rule():
    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 127.5 / 255, 0.5, 1.0, 1.7, float("nan")])
    u = to_uint8(x)
    assert u.dtype == torch.uint8
    assert u.tolist() == [0, 0, 1, 2, 128, 128, 255, 255, 0]  # ties up (MATLAB uint8), NaN -> 0
    torch.testing.assert_close(from_uint8(u), quantize(torch.nan_to_num(x)), atol=0, rtol=0)
    assert from_uint8(np.array([0, 51, 255], dtype=np.uint8)).tolist() == torch.tensor([0.0, 0.2, 1.0]).tolist()
    with pytest.raises(TypeError):
        from_uint8(torch.zeros(2))


# ---------------------------------------------------------------------------------------
# Set5 bicubic baseline (published MATLAB numbers)
# ---------------------------------------------------------------------------------------


def _load_rgb(path: Path) -> torch.Tensor:
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()  # (1, 3, H, W)


@pytest.fixture(scope="module")
def set5_bicubic(set5_dir: Path) -> dict[int, tuple[float, float]]:
    files = sorted(set5_dir.glob("*.png"))
    if len(files) != 5:
        pytest.skip(f"expected 5 PNGs in {set5_dir}, found {len(files)}")
    images = [_load_rgb(f) for f in files]
    results = {}
    for s in (2, 3, 4):
        ps, ss = [], []
        for hr in images:
            h, w = hr.shape[-2:]
            hr = hr[..., : h - h % s, : w - w % s]
            lr = quantize(imresize(hr, 1 / s))
            bic = quantize(imresize(lr, s))
            assert bic.shape == hr.shape
            ps.append(psnr(bic, hr, shave=s).item())
            ss.append(ssim(bic, hr, shave=s).item())
        results[s] = (float(np.mean(ps)), float(np.mean(ss)))
    print("\nSet5 bicubic Y-PSNR/SSIM: " + ", ".join(f"x{s}: {p:.3f} dB / {q:.4f}" for s, (p, q) in results.items()))
    return results


def test_set5_bicubic_reference_numbers(set5_bicubic):
    assert set5_bicubic[4][0] == pytest.approx(28.42, abs=0.02)
    assert 33.66 <= set5_bicubic[2][0] <= 33.69
    assert 30.39 <= set5_bicubic[3][0] <= 30.41
    assert set5_bicubic[4][1] == pytest.approx(0.810, abs=0.003)
