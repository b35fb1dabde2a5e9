"""LR-only sources: VideoFrameDataset (decord) and LRFolderDataset.

Small videos are written here with PyAV (a test-only dependency: the module is skipped
without it); one test reads the real clip ``video/bikes.mp4`` of the shared data.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from sr_adapt.data import video_readers
from sr_adapt.io import video as video_mod
from sr_adapt.errors import DataError
from sr_adapt.io.video import open_video_reader
from sr_adapt.data.samples import unpaired_sample
from sr_adapt.data.sources.lr_folder import LRFolderDataset
from sr_adapt.data.sources.video import VideoFrameDataset
from sr_adapt.io.video import VideoInfo, probe_video, resolve_video_paths

av = pytest.importorskip("av")

KEY = "data.train_sources.clips"  # a non-default key, to see that messages use the one given
FPS = 10


def _codec() -> str:
    for name in ("libx264", "mpeg4"):
        if name in av.codecs_available:
            return name
    pytest.skip("PyAV here can encode neither libx264 nor mpeg4")


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    """Encode (H, W, 3) uint8 frames; an empty list writes a container with a stream and no frame."""
    h, w = (frames[0].shape[:2]) if frames else (48, 64)
    with av.open(str(path), "w") as c:
        s = c.add_stream(_codec(), rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if not frames:
            if not hasattr(c, "start_encoding"):
                pytest.skip("this PyAV cannot write a container without frames (no start_encoding)")
            c.start_encoding()  # writes the header with the (empty) video stream
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def noise_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Moving textured content: a gradient scrolling sideways plus noise."""
    rng = np.random.default_rng(seed)
    xs = np.arange(w)[None, :, None]
    out = []
    for i in range(n):
        grad = ((xs * 4 + i * 7) % 256) * np.ones((h, 1, 3))
        out.append(np.clip(grad * 0.5 + rng.integers(0, 128, (h, w, 3)), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    v = {
        "a": write_video(d / "a.mp4", noise_frames(30, seed=1)),  # 30 frames: 22 eligible with end_margin 8
        "b": write_video(d / "b.mp4", noise_frames(80, seed=2)),  # 80 frames: 72 eligible
    }
    # mostly black, textured frames at a few indices
    textured = {3, 9, 14, 20, 27, 31}
    black = np.zeros((48, 64, 3), np.uint8)
    tex = noise_frames(40, seed=3)
    v["black"] = write_video(d / "black.mp4", [tex[i] if i in textured else black for i in range(40)])
    # static: every frame the same 16x16 gradient (one patch position at LR patch 16)
    g = np.linspace(0, 255, 16)
    still = np.stack([np.add.outer(g, g) / 2] * 3, axis=-1).astype(np.uint8)
    v["static"] = write_video(d / "static.mp4", [still] * 20)
    v["tiny"] = write_video(d / "tiny.mp4", [still] * 10)  # 16x16 frames: too small for big patches
    # broken inputs
    (d / "bad").mkdir()
    v["text"] = d / "bad" / "notes.mp4"
    v["text"].write_text("this is not a video\n" * 20)
    data = v["a"].read_bytes()
    v["truncated"] = d / "bad" / "truncated.mp4"
    v["truncated"].write_bytes(data[: len(data) // 3])
    v["random"] = d / "bad" / "random.mkv"
    v["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    v["empty"] = write_video(d / "bad" / "empty.mp4", [])
    v["txt"] = d / "bad" / "readme.txt"
    v["txt"].write_text("hello")
    (d / "novideo").mkdir()
    (d / "novideo" / "x.png").write_bytes(b"")
    v["dir"] = d
    return v


def make(paths, **kw) -> VideoFrameDataset:
    kw = {"scale": 4, "patch_size": 48, "config_key": KEY, **kw}
    return VideoFrameDataset([str(p) for p in paths], **kw)


def frame_of(name: str) -> tuple[str, int]:
    video, idx = name.rsplit("#", 1)
    return video, int(idx)


def luma_std(lr: torch.Tensor) -> float:
    y = lr[0] * 0.299 + lr[1] * 0.587 + lr[2] * 0.114
    return float(y.std(unbiased=False))


# ---------------------------------------------------------------------------------------------
# probing, paths, sample format


def test_probe_video(vids):
    info = probe_video(vids["a"])
    assert info == VideoInfo(frames=30, fps=10.0, height=48, width=64)
    assert info.duration == pytest.approx(3.0)
    with pytest.raises(DataError, match="notes.mp4"):
        probe_video(vids["text"])


def test_narrow_frames_are_unpadded(vids):
    # decord 0.6 returns 16-pixel-wide frames as (H, 16, 6): padded rows; frame_to_array repairs them
    vr = video_mod.open_video_reader(vids["static"])
    arr = video_mod.frame_to_array(vr[0])
    del vr
    g = np.linspace(0, 255, 16)
    want = np.add.outer(g, g) / 2
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    assert np.abs(arr.astype(float) - want[..., None]).mean() < 4
    padded = np.zeros((2, 4, 12), np.uint8)  # rows of 48 bytes holding 4 RGB pixels + padding
    padded.reshape(2, 48)[:, :12] = np.arange(24).reshape(2, 12)
    assert video_mod.frame_to_array(padded).tolist() == np.arange(24).reshape(2, 4, 3).tolist()
    assert probe_video(vids["static"])[2:] == (16, 16)


def test_resolve_paths_folder_glob_dedupe(vids):
    d = vids["dir"]
    videos, problems = resolve_video_paths([d, str(d / "a.mp4"), str(d / "*.MP4"), str(d / "**" / "*.mp4")], KEY)
    names = [p.name for p in videos]
    assert names.count("a.mp4") == 1  # de-duplicated
    assert "notes.mp4" in names  # found by the recursive glob only (folders are not recursive)
    assert problems == [(str(d / "*.MP4"), f"glob {str(d / '*.MP4')!r} matches nothing")]  # glob is case-sensitive
    flat, _ = resolve_video_paths([d], KEY)
    assert "notes.mp4" not in [p.name for p in flat]


def test_sample_format(vids):
    ds = make([vids["a"], vids["b"]], scale=4, patch_size=48, seed=0, lr_factors=[4, 2])  # DRN's levels
    s = ds[0]
    assert set(s) == {"lr", "lr_levels", "hr", "paired", "target", "name"}
    assert s["lr"].shape == (3, 12, 12) and s["lr"].dtype == torch.float32
    assert 0.0 <= float(s["lr"].min()) and float(s["lr"].max()) <= 1.0
    assert [tuple(t.shape) for t in s["lr_levels"]] == [(3, 12, 12), (3, 24, 24)]
    assert s["lr_levels"][0] is s["lr"]
    assert not s["lr_levels"][1].any() and not s["hr"].any()
    assert s["hr"].shape == (3, 48, 48)
    assert s["paired"].dtype == torch.bool and not s["paired"]
    assert frame_of(s["name"])[0] in {"a.mp4", "b.mp4"}
    assert len(ds) == 1000 and VideoFrameDataset.paired is False
    # collates with a paired sample of the same sizes
    paired = {"lr": torch.rand(3, 12, 12), "hr": torch.rand(3, 48, 48), "paired": torch.tensor(True),
              "target": torch.tensor(False), "name": "x"}
    paired["lr_levels"] = [paired["lr"], torch.rand(3, 24, 24)]
    batch = default_collate([s, paired])
    assert batch["paired"].tolist() == [False, True] and batch["lr_levels"][1].shape == (2, 3, 24, 24)


def test_unpaired_sample_scale8():
    s = unpaired_sample(torch.rand(3, 6, 6), [8, 4, 2], "n")
    assert [tuple(t.shape) for t in s["lr_levels"]] == [(3, 6, 6), (3, 12, 12), (3, 24, 24)]
    single = unpaired_sample(torch.rand(3, 6, 6), [3], "n")  # a single-output network at x3: the LR only
    assert [tuple(t.shape) for t in single["lr_levels"]] == [(3, 6, 6)] and single["hr"].shape == (3, 18, 18)
    assert s["hr"].shape == (3, 48, 48)


# ---------------------------------------------------------------------------------------------
# frame selection


@pytest.mark.parametrize(
    ("weighting", "expected_a"),
    [("uniform", 0.5), ("sqrt", 22**0.5 / (22**0.5 + 72**0.5)), ("frames", 22 / 94)],
)
def test_video_weighting(vids, weighting, expected_a):
    ds = make([vids["a"], vids["b"]], video_weighting=weighting, seed=3, augment=False)
    assert ds.weights[0] == pytest.approx(expected_a)
    names = [frame_of(ds[i]["name"])[0] for i in range(150)]
    n_a = names.count("a.mp4")
    assert 0 < n_a < 150  # both videos used
    assert abs(n_a / 150 - expected_a) < 0.15


def test_time_range_and_stride(vids):
    ds = make([vids["b"]], time_range=[2.0, 5.0], stride=4, seed=0)
    assert ds.frame_ranges[0] == range(20, 50, 4)
    frames = {frame_of(ds[i]["name"])[1] for i in range(60)}
    assert frames <= set(range(20, 50, 4)) and len(frames) >= 5


def test_end_margin(vids):
    ds = make([vids["a"]], end_margin=8, seed=0)
    frames = {frame_of(ds[i]["name"])[1] for i in range(80)}
    assert max(frames) <= 21 and len(frames) >= 12
    # the margin never removes more than half of a short video
    assert make([vids["a"]], end_margin=100).frame_ranges[0] == range(0, 15)


def test_time_range_without_frames_and_bad_settings(vids):
    with pytest.raises(DataError) as e:
        make([vids["a"]], time_range=[100, 200])
    assert "a.mp4" in str(e.value) and f"{KEY}.time_range" in str(e.value)
    with pytest.raises(DataError, match=f"{KEY}.time_range"):
        make([vids["a"]], time_range=[3, 1])
    with pytest.raises(DataError, match=f"{KEY}.stride"):
        make([vids["a"]], stride=0)
    with pytest.raises(DataError, match=f"{KEY}.video_weighting"):
        make([vids["a"]], video_weighting="length")
    with pytest.raises(DataError, match="data.patch_size"):  # shared by all sources
        make([vids["a"]], patch_size=50)


# ---------------------------------------------------------------------------------------------
# rejection


def test_rejects_black_and_flat_patches(vids):
    ds = make([vids["black"]], min_std=0.05, max_reject_tries=50, seed=0)
    samples = [ds[i] for i in range(30)]
    assert all(luma_std(s["lr"]) > 0.05 for s in samples)
    assert ds.stats["dark"] + ds.stats["flat"] > 0 and ds.stats["gave_up"] == 0
    assert {frame_of(s["name"])[1] for s in samples} <= {3, 9, 14, 20, 27, 31}
    # without rejection black patches do come out (so the check above means something)
    plain = make([vids["black"]], min_std=0, min_mean=0, dup_threshold=0, seed=0)
    assert any(luma_std(plain[i]["lr"]) < 0.05 for i in range(30))


def test_rejects_duplicates_on_static_video(vids):
    kw = {"scale": 2, "patch_size": 32, "max_reject_tries": 3, "crops_per_frame": 1, "seed": 0}
    ds = make([vids["static"]], dup_threshold=0.02, **kw)  # LR patch 16 = the whole frame
    for i in range(4):
        ds[i]
    assert ds.stats["duplicate"] == 9 and ds.stats["gave_up"] == 3  # samples 1..3: every try a duplicate
    off = make([vids["static"]], dup_threshold=0, **kw)
    for i in range(4):
        off[i]
    assert off.stats["duplicate"] == 0 and off.stats["gave_up"] == 0


# ---------------------------------------------------------------------------------------------
# determinism, pickling, DataLoader workers


def _names(nw: int, vids) -> list[str]:
    ds = make([vids["a"], vids["b"]], seed=123)
    loader = DataLoader(ds, batch_size=4, num_workers=nw, timeout=60 if nw else 0)
    out = []
    for k, batch in enumerate(loader):
        out += batch["name"]
        if k == 3:
            break
    return out


@pytest.mark.parametrize("nw", [0, 2])
def test_seeded_runs_repeat(vids, nw):
    first, second = _names(nw, vids), _names(nw, vids)
    assert first == second and len(first) == 16
    assert len(set(first)) > 8  # and they are not all the same patch


def test_a_training_batch_is_a_function_of_the_seed_and_its_number_only(vids):
    """Resume and any worker count see the same batches: not the draw history, not the duplicate check's."""
    from sr_adapt.data.mixed import BatchNumbers, MixedBatchDataset

    def batches(numbers, workers=0):
        ds = make([vids["a"], vids["b"], vids["static"]], scale=2, patch_size=32, dup_threshold=0.5)
        mixed = MixedBatchDataset(None, ds, 6, 1.0, 4, seed=99)
        order = list(numbers)
        loader = DataLoader(mixed, batch_size=None, sampler=order, num_workers=workers, timeout=60 if workers else 0)
        return {n: b for n, b in zip(order, loader)}, ds.stats

    straight, stats = batches(range(6))
    assert stats["duplicate"] > 0  # the check did reject patches, so its history matters
    alone, _ = batches([4, 5])
    two_workers, _ = batches(range(6), workers=2)
    for n in (4, 5):
        assert alone[n]["name"] == straight[n]["name"] and torch.equal(alone[n]["lr"], straight[n]["lr"])
    assert all(two_workers[n]["name"] == straight[n]["name"] for n in range(6))
    assert len({tuple(b["name"]) for b in straight.values()}) == 6  # different numbers, different batches
    order = BatchNumbers(3)
    order.set_epoch(1)
    assert list(order) == [3, 4, 5]
    order.resume(epoch=2, taken=1)  # interrupted after the first batch of epoch 2
    assert list(order) == [7, 8]
    order.set_epoch(3)
    assert list(order) == [9, 10, 11]
    ranks = [BatchNumbers(7, num_replicas=2, rank=r) for r in (0, 1)]  # 3 batches per device and epoch
    for r in ranks:
        r.set_epoch(1)
    assert [list(r) for r in ranks] == [[6, 8, 10], [7, 9, 11]]


def test_unseeded_draws_differ_between_calls(vids):
    ds = make([vids["a"], vids["b"]])
    assert len({ds[0]["name"] for _ in range(10)}) > 1  # same index, fresh sample (counter in the seed)


def test_pickle_before_and_after_reading(vids):
    ds = make([vids["a"], vids["b"]], seed=5)
    clone = pickle.loads(pickle.dumps(ds))
    ds[0]
    assert ds.readers.open_readers  # a reader is open in this process ...
    data = pickle.dumps(ds)  # ... and not pickled
    again = pickle.loads(data)
    assert not again.readers.open_readers
    assert again[1]["lr"].shape == (3, 12, 12) and clone[0]["lr"].shape == (3, 12, 12)


def test_dataloader_two_workers_after_main_process_reads(vids):
    ds = make([vids["a"], vids["b"]], length=32)
    ds[0]  # the workers inherit an open reader through fork and must not use it
    loader = DataLoader(ds, batch_size=8, num_workers=2, timeout=60)
    batches = list(loader)
    assert len(batches) == 4 and batches[0]["lr"].shape == (8, 3, 12, 12)
    assert not batches[0]["paired"].any()


@pytest.mark.slow
def test_dataloader_spawn_workers(vids):
    ds = make([vids["a"]], length=8)
    loader = DataLoader(ds, batch_size=4, num_workers=2, timeout=120, multiprocessing_context="spawn")
    assert sum(len(b["name"]) for b in loader) == 8


# ---------------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize(
    ("case", "needle", "key"),
    [
        ("missing", "does not exist", "paths"),
        ("glob", "matches nothing", "paths"),
        ("folder", "holds no video", "paths"),
        ("txt", "not a video file", "paths"),
        ("text", "not a video, or a corrupt", "paths"),
        ("truncated", "corrupt/truncated", "paths"),
        ("random", "corrupt/truncated", "paths"),
        ("empty", "no video stream", "paths"),
        ("tiny", "smaller than the LR patch 24x24", "data.patch_size"),
    ],
)
def test_bad_input_raises_with_file_and_key(vids, case, needle, key):
    d = vids["dir"]
    path = {
        "missing": d / "nope.mp4",
        "glob": d / "clips" / "*.webm",
        "folder": d / "novideo",
    }.get(case) or vids[case]
    with pytest.raises(DataError) as e:
        make([path], scale=2, patch_size=48)
    msg = str(e.value)
    assert path.name in msg and needle in msg
    assert (key if key.startswith("data.") else f"{KEY}.{key}") in msg and f"{KEY}.skip_bad" in msg


def test_skip_bad_warns_counts_and_uses_the_rest(vids, caplog):
    with caplog.at_level(logging.WARNING, logger="sr_adapt.data"):
        ds = make([vids["a"], vids["text"], vids["empty"], vids["dir"] / "nope.mp4"], skip_bad=True, seed=0)
    assert ds.skipped == 3 and len(ds.skipped_videos) == 3
    assert "notes.mp4" in caplog.text and "empty.mp4" in caplog.text and "nope.mp4" in caplog.text
    assert ds.videos == [vids["a"]]
    assert {frame_of(ds[i]["name"])[0] for i in range(5)} == {"a.mp4"}
    assert "skipped 3" in ds.summary()


def test_skip_bad_with_nothing_left_raises(vids):
    with pytest.raises(DataError, match="No usable video is left") as e:
        make([vids["text"], vids["truncated"]], skip_bad=True)
    assert "notes.mp4" in str(e.value) and "truncated.mp4" in str(e.value)


class _FlakyReader:
    """A real reader whose frames from ``bad_from`` on fail like an over-reported tail."""

    def __init__(self, path, bad_from: int) -> None:
        self._vr = open_video_reader(path)
        self.bad_from = bad_from

    def __len__(self) -> int:
        return len(self._vr)

    def __getitem__(self, i: int):
        if i >= self.bad_from:
            raise RuntimeError(f"av_read_frame failed at {i}")
        return self._vr[i]

    def seek(self, i: int) -> None:
        self._vr.seek(i)


def test_decode_failure_near_end_falls_back_to_earlier_frame(vids, monkeypatch):
    ds = make([vids["a"]], seed=0)
    monkeypatch.setattr(video_readers, "open_video_reader", lambda p: _FlakyReader(p, bad_from=15))
    frames = [frame_of(ds[i]["name"])[1] for i in range(40)]
    assert max(frames) < 15 and ds.readers.stats["decode_errors"] > 0 and ds.skipped == 0


def test_video_that_stops_decoding(vids, monkeypatch, caplog):
    strict = make([vids["a"], vids["b"]], seed=0)
    lenient = make([vids["a"], vids["b"]], seed=0, skip_bad=True)
    real = video_mod.open_video_reader
    monkeypatch.setattr(
        video_readers, "open_video_reader", lambda p: _FlakyReader(p, 0) if Path(p).name == "a.mp4" else real(p)
    )
    with pytest.raises(DataError) as e:
        for i in range(20):
            strict[i]
    assert "a.mp4" in str(e.value) and f"{KEY}.skip_bad" in str(e.value)
    with caplog.at_level(logging.WARNING, logger="sr_adapt.data"):
        names = {frame_of(lenient[i]["name"])[0] for i in range(20)}
    assert names == {"b.mp4"} and lenient.skipped == 1 and "a.mp4" in caplog.text


# ---------------------------------------------------------------------------------------------
# the real clip


def test_real_clip(shared_data):
    clip = shared_data / "video" / "bikes.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    info = probe_video(clip)
    assert info.frames > 100 and info.fps > 0 and (info.height, info.width) == (272, 640)
    ds = VideoFrameDataset([clip], scale=4, patch_size=192, seed=0)
    samples = [ds[i] for i in range(6)]
    assert all(s["lr"].shape == (3, 48, 48) for s in samples)
    assert all(frame_of(s["name"])[1] < info.frames - 8 for s in samples)
    assert all(luma_std(s["lr"]) >= ds.filter.min_std or ds.stats["gave_up"] for s in samples)


# ---------------------------------------------------------------------------------------------
# LR image folders


@pytest.fixture()
def lr_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    return tmp_path


def test_lr_folder_errors_and_skip_bad(lr_dir, caplog):
    key = "data.train_sources.real"
    with pytest.raises(DataError) as e:
        LRFolderDataset(lr_dir, scale=4, patch_size=48, config_key=key)
    msg = str(e.value)
    assert "small.png" in msg and "broken.png" in msg and f"{key}.skip_bad" in msg
    with caplog.at_level(logging.WARNING):
        ds = LRFolderDataset(lr_dir, scale=4, patch_size=48, config_key=key, skip_bad=True, seed=1, cache=True,
                             lr_factors=[4, 2])
    assert "small.png" in caplog.text and len(ds) == 3 and LRFolderDataset.paired is False
    s = ds[2]
    assert s["lr"].shape == (3, 12, 12) and s["hr"].shape == (3, 48, 48) and not s["paired"]
    assert [tuple(t.shape) for t in s["lr_levels"]] == [(3, 12, 12), (3, 24, 24)] and not s["lr_levels"][1].any()
    assert s["name"] == "img2"
    assert torch.equal(ds[2]["lr"], s["lr"])  # seeded: sample i is fixed (paired.py convention)
    with pytest.raises(DataError, match=f"{key}.lr_dir"):
        LRFolderDataset(lr_dir / "missing", scale=4, patch_size=48, config_key=key)


@pytest.mark.parametrize("width", [16, 24, 48])
def test_narrow_videos_decord_cannot_copy_decode_through_the_fallback(tmp_path: Path, width: int) -> None:
    from sr_adapt.io.video import DecodedVideo, open_video_reader, probe_video, read_frames
    from tests.tiny_models import make_video

    path = make_video(tmp_path / f"w{width}.mp4", frames=5, width=width, height=24, audio=False)
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (5, width, 24, 12.0)
    assert isinstance(open_video_reader(path), DecodedVideo)
    frames = read_frames(path, [0, 4])
    assert frames.shape == (2, 3, 24, width) and float(frames.std()) > 0.01


@pytest.mark.parametrize("frames", [30, 55, 250])
def test_held_out_frames_are_never_trained_on_whatever_the_length(frames: int) -> None:
    from sr_adapt.io.video import VideoInfo, drawable_frames, held_out_frames

    info = VideoInfo(frames=frames, fps=25.0, height=64, width=64)
    trained = drawable_frames(info, 8, held_out=0.2)
    shown = held_out_frames(info, 0.2, end_margin=8)
    assert len(shown) == 3 and min(shown) > trained[-1] and max(shown) < frames - 8
    assert held_out_frames(info, 0.0, end_margin=8)[0] < trained[-1]  # nothing held out: over the whole video


def test_held_out_of_a_whole_video_or_a_negative_one_is_named(vids):
    with pytest.raises(DataError, match=rf"{KEY}\.held_out=1\.0: a fraction of each video below 1"):
        make([vids["a"]], held_out=1.0)
    with pytest.raises(DataError, match=rf"{KEY}\.held_out: must be a number >= 0"):
        make([vids["a"]], held_out=-0.2)
