"""Adapting any SR network: community weights through spandrel (random weights in the key layouts of the
public releases, no download), the adaptation objective without learned duals, tiles, export, refusals.
spandrel is a dependency: these tests run (not skip) wherever the package is installed as the README says."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.errors import CheckpointError, ConfigError
from sr_adapt.inference.tiling import TiledUpscaler
from sr_adapt.models.wrapped import WrappedSR
from sr_adapt.training.adapt_module import closed_loop_losses

from tests.community_models import COMMUNITY, save_community
from tests.conftest import MINI, compose, run_script, run_task

SR_MODELS = [n for n in COMMUNITY if n != "dncnn"]


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("community")
    return {name: save_community(name, folder) for name in COMMUNITY}


# name -> (spandrel's name, scale, parameters, exact tiles, ONNX at any size)
EXPECTED = {
    "span": ("SPAN", 4, 256_152, True, True),
    "swinir": ("SwinIR", 2, 7_776, False, False),
    "rcan": ("RCAN", 3, 36_003, False, True),
    "rrdbnet": ("ESRGAN", 4, 293_987, True, True),
    "compact": ("RealESRGAN Compact", 4, 12_096, True, True),
}


@pytest.mark.parametrize("name", SR_MODELS)
def test_community_weights_are_detected_loaded_and_run_on_0_1_images(community: dict[str, Path], name: str) -> None:
    arch, scale, params, exact, any_size = EXPECTED[name]
    loaded = load_checkpoint(community[name])
    net = loaded.net
    assert isinstance(net, WrappedSR) and loaded.source == "spandrel"
    assert (net.architecture, net.scale, net.num_parameters()) == (arch, scale, params)
    assert loaded.meta["variant"] == f"{arch} x{scale}"
    x = torch.rand(1, 3, 19, 22)  # sizes no window grid divides: padded, then cropped
    with torch.no_grad():
        y = net.super_resolve(x)
    assert y.shape == (1, 3, 19 * scale, 22 * scale) and torch.isfinite(y).all()
    assert (net.exact_tiles, net.graph_any_size) == (exact, any_size)
    with pytest.raises(CheckpointError, match=f"holds a x{scale} {arch}.*set scale={scale}"):
        load_checkpoint(community[name], expect={"scale": scale + 1})


@pytest.mark.parametrize("name", ["span", "rrdbnet", "compact"])
def test_tiles_equal_the_whole_image_where_the_receptive_field_is_bounded(community: dict[str, Path], name: str) -> None:
    net = load_checkpoint(community[name]).net.eval()
    x = torch.rand(1, 3, 71, 66, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = net.super_resolve(x)
        tiled = TiledUpscaler(net, tile=24)(x)
    assert net.tile_margin() < 30
    assert (whole - tiled).abs().max() < 1e-4


def test_window_attention_tiles_are_close_not_exact_and_warned(community: dict[str, Path],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    net = load_checkpoint(community["swinir"]).net.eval()
    with caplog.at_level("WARNING", logger="sr_adapt"):
        margin = net.tile_margin()
    assert "tiles are close to the whole-image result, not equal" in caplog.text
    assert 0 < margin < 48


def test_a_model_that_is_not_single_image_sr_is_refused_in_one_line(community: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(community["dncnn"])
    assert str(info.value) == f"{community['dncnn']}: holds a DnCNN model for restoration at x1, not single-image super-resolution"


def test_unknown_weights_name_what_each_loader_found(tmp_path: Path) -> None:
    path = tmp_path / "mystery.pth"
    torch.save({"params": {"encoder.weight": torch.zeros(4, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointError, match="not an architecture sr_adapt or spandrel knows.*encoder.weight"):
        load_checkpoint(path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot be read as a .safetensors file"):
        load_checkpoint(broken)


def test_without_spandrel_community_weights_say_how_to_install(community: dict[str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "spandrel", None)  # import fails as when not installed
    with pytest.raises(CheckpointError, match="needs spandrel.*pip install 'spandrel>=0.4,<0.5'"):
        load_checkpoint(community["span"])


def test_single_output_objective_loops_through_bicubic_and_the_target_degradation() -> None:
    from sr_adapt.ops.resize import imresize

    torch.manual_seed(0)
    hr, sr = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    lr = imresize(hr, scale=0.25)
    paired = torch.tensor([True, True, False, False])
    target = torch.tensor([False, True, True, False])

    def target_down(x: torch.Tensor) -> torch.Tensor:
        return x[..., ::4, ::4]

    terms = closed_loop_losses([sr], torch.nn.ModuleList(), [lr], hr, paired, target, target_down, lr)
    l1 = lambda a, b: (a - b).abs().flatten(1).mean(1)  # noqa: E731
    assert torch.allclose(terms["primal"], l1(sr, hr) * paired.float())
    assert torch.allclose(terms["dual"], l1(imresize(sr, scale=0.25), lr) * (~target).float())
    assert torch.allclose(terms["target_loop"], l1(target_down(sr), lr) * target.float())


@pytest.mark.parametrize(("experiment", "name", "scale", "patch"),
                         [("adapt_video", "rrdbnet", 4, 64), ("adapt_video", "rcan", 3, 48),
                          ("drn_unpaired_video", "swinir", 2, 64)])
def test_the_video_adaptation_fine_tunes_a_community_network(community: dict[str, Path], experiment: str, name: str,
                                                            scale: int, patch: int, tmp_path: Path) -> None:
    """experiment=adapt_video (or DRN's drn_unpaired_video) with model.init_from=<community file>: estimate, mixed
    batches of LR-only frames, target and internal pairs (x3, x2 too), the loop through the estimate; the
    checkpoint loads back."""
    cfg = compose("train", [f"experiment={experiment}", "debug=fast", "logger=csv", f"scale={scale}",
                            f"data.patch_size={patch}", f"model.init_from={community[name]}", "trainer.max_steps=2",
                            "degradation_estimate.method=cross_scale"], tmp_path)
    metrics = run_task_cfg(cfg)
    assert metrics["global_step"] == 2 and torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert metrics["train/target_loop"] > 0
    before = load_checkpoint(community[name]).net
    after = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(after.net, WrappedSR) and after.net.architecture == before.architecture
    assert after.net.input_filter is not None  # the input correction of the clips' degradation, trained with it
    moved = [k for k, v in before.state_dict().items() if not torch.equal(v, after.net.state_dict()[k])]
    assert moved, "no weight moved"


@pytest.mark.slow
def test_compile_trains_a_community_network_as_eager_does(community: dict[str, Path], tmp_path: Path) -> None:
    """model.compile=true (torch.compile of the training forward, ~1 min of inductor on a CPU): the first
    step's loss of a wrapped SPAN equals the eager one's."""
    base = ["experiment=adapt_video", "debug=fast", "logger=csv", f"model.init_from={community['span']}",
            "trainer.max_steps=1", "seed=3", "degradation_estimate.method=cross_scale"]
    eager = run_task_cfg(compose("train", base, tmp_path / "eager"))
    compiled = run_task_cfg(compose("train", [*base, "model.compile=true"], tmp_path / "compiled"))
    assert compiled["global_step"] == eager["global_step"] == 1
    assert compiled["train/loss"] == pytest.approx(eager["train/loss"], rel=1e-4)


def test_gan_trained_weights_are_warned_and_can_keep_their_network(community: dict[str, Path], tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A GAN-trained architecture (SRVGGNet): the start-up warning states the measured effect and how to keep the
    texture; model.freeze=[net.model] then trains the input correction only; freezing everything is refused."""
    base = ["experiment=adapt_video", "debug=fast", "logger=csv", f"model.init_from={community['compact']}",
            "trainer.max_steps=2", "degradation_estimate.method=cross_scale"]
    with caplog.at_level("WARNING", logger="sr_adapt"):
        run_task_cfg(compose("train", [*base, "model.freeze=[net.model]"], tmp_path / "kept"))
    assert "usually GAN-trained" in caplog.text and "model.freeze=[net.model]" in caplog.text
    last = tmp_path / "kept" / "checkpoints" / "last.ckpt"
    released = load_checkpoint(community["compact"]).net.state_dict()
    kept = load_checkpoint(last).net.state_dict()
    assert all(torch.equal(v, kept[k]) for k, v in released.items())
    trained = torch.load(last, map_location="cpu", weights_only=False)["optimizer_states"][0]["param_groups"]
    n_filter = sum(1 for k in kept if k.startswith("input_filter."))
    assert n_filter > 0 and sum(len(g["params"]) for g in trained) == n_filter
    with pytest.raises(ConfigError, match=r"model.freeze=\['net'\] leaves no parameter to train"):
        run_task_cfg(compose("train", [*base, "model.freeze=[net]"], tmp_path / "all"))


def run_task_cfg(cfg) -> dict:
    from sr_adapt.tasks.train import run

    return run(cfg)


def test_evaluate_and_compare_take_community_files(community: dict[str, Path], tmp_path: Path) -> None:
    report = run_task("evaluate", [f"ckpt_path={community['span']}", f"benchmarks=[{MINI}]"], tmp_path)
    assert report["model"]["params"] == 256_152
    psnr = next(iter(report["results"].values()))["psnr"]
    assert 3 < psnr < 20  # random weights: scored, far below bicubic
    table = run_task("compare", [f"models=[{community['compact']},{community['rrdbnet']}]", f"benchmarks=[{MINI}]"],
                     tmp_path / "compare")
    assert [m["params"] for m in table["models"].values()] == [12_096, 293_987]


def test_export_where_onnx_works_and_a_clear_refusal_where_it_does_not(community: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    ok = run_task("export", [f"ckpt_path={community['compact']}", f"output={tmp_path / 'compact.onnx'}"], tmp_path)
    assert ok["max_abs_diff"] < 1e-4
    with pytest.raises(ConfigError, match="SwinIR x2 does not export to ONNX.*backend=torch"):
        run_task("export", [f"ckpt_path={community['swinir']}", "scale=2", f"output={tmp_path / 'swin.onnx'}"], tmp_path)
    assert not (tmp_path / "swin.onnx").exists()


def test_upscale_command_runs_a_community_file(community: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "up.png"
    proc = run_script("upscale.py", f"ckpt_path={community['rrdbnet']}", f"input={MINI / 'coffee.png'}",
                      f"output={out}", "tile=48", "backend=torch")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file()


def test_the_monitor_watches_real_frames_only_in_an_adaptation() -> None:
    from sr_adapt.training.monitor import AdaptationMonitor

    monitor = AdaptationMonitor(image_dir=str(MINI))
    with pytest.raises(ConfigError, match="callbacks.adaptation_monitor: real frames are watched in an adaptation"):
        monitor.setup(None, torch.nn.Module(), "fit")  # a module without net / loop_back / target_dual


def test_adapt_model_config_errors_name_the_key(community: dict[str, Path], tmp_path: Path) -> None:
    from sr_adapt.config import instantiate

    cfg = compose("train", ["model=adapt"], tmp_path)
    with pytest.raises(ConfigError, match="model=adapt fine-tunes the network of a weights file: set model.init_from"):
        instantiate(cfg.model)
    cfg = compose("train", ["model=adapt", f"model.init_from={community['span']}",
                            f"model.init_dual_from={community['compact']}"], tmp_path)
    with pytest.raises(ConfigError, match="model.init_dual_from=.*has no learned dual models"):
        instantiate(cfg.model)


def test_finding_the_architecture_leaves_the_random_streams_alone(tmp_path: Path) -> None:
    """DRN weights without duals: the fresh duals are drawn from the run's seed exactly as before model=adapt."""
    from sr_adapt.checkpoints import build_drn_like, build_like, save_weights
    from sr_adapt.models.drn import build_drn

    path = save_weights(build_drn("s", 4, n_blocks=1, n_feats=8), None, tmp_path / "drn.pt")
    torch.manual_seed(5)
    build_like(path, 4)
    after_like = torch.rand(3)
    torch.manual_seed(5)
    build_drn_like(scale=4, like=path)
    assert torch.equal(after_like, torch.rand(3))


def test_more_bad_inputs_are_named(community: dict[str, Path], tmp_path: Path) -> None:
    from sr_adapt.checkpoints import build_like
    from sr_adapt.checkpoints.archs.wrapped import build_community
    from sr_adapt.inference.backend import with_backend

    with pytest.raises(ConfigError, match="model.net.architecture=SPAN builds a fresh network, but model.init_from="):
        build_like(community["span"], 4, architecture="SPAN")
    with pytest.raises(CheckpointError, match="model.net.architecture=NoSuchNet: not one of spandrel's:.*SPAN"):
        build_community("NoSuchNet", 4)
    with pytest.raises(CheckpointError, match="model.net.kwargs build a x2 SPAN, but scale=4"):
        build_community("SPAN", 4, num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    swin = load_checkpoint(community["swinir"]).net
    with pytest.raises(ConfigError, match="backend=onnxruntime: the ONNX graph of this SwinIR runs only at the size"):
        with_backend(swin, "onnxruntime", torch.device("cpu"), cache_dir=tmp_path)


def test_samples_without_the_networks_lr_levels_are_named(community: dict[str, Path]) -> None:
    """A DRN fed samples with one LR level (data built without the module's lr_factors): a named error."""
    from sr_adapt.models.drn import build_drn
    from sr_adapt.training.adapt_module import AdaptLitModule

    module = AdaptLitModule(build_drn("s", 4, n_blocks=1, n_feats=8), optimizer=torch.optim.Adam)
    batch = {"lr": torch.rand(2, 3, 8, 8), "lr_levels": [torch.rand(2, 3, 8, 8)], "hr": torch.rand(2, 3, 32, 32)}
    with pytest.raises(ConfigError, match=r"training samples carry 1 LR level\(s\), drn needs \[4, 2\]"):
        module.training_step(batch, 0)
