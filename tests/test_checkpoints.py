"""Checkpoint import/export: parity with the official DRN code, round trips, and clear errors."""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sr_adapt.errors import CheckpointError, CheckpointNotFoundError
from sr_adapt.checkpoints import (
    LoadedModel,
    infer_drn_config,
    load_checkpoint,
    save_official,
    variant_name,
)
from sr_adapt.models.drn import DRN

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[1]
_SHARED_DATA = Path(os.environ.get("SR_ADAPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
OFFICIAL_KEYS = _SHARED_DATA.parent / "docs" / "official_keys"

TOL_255 = 1e-3  # max abs difference allowed on the 0..255 scale
MEAN_SHIFT_KEYS = ("sub_mean.weight", "add_mean.weight", "add_mean.bias")

RELEASED = {  # file stem -> (size, scale, n_blocks, n_feats, primal params, dual params each)
    "drn_s_x4": ("s", 4, 30, 16, 4_804_065, 864),
    "drn_l_x4": ("l", 4, 40, 20, 9_825_893, 1_080),
    "drn_s_x8": ("s", 8, 30, 8, 5_403_000, 432),
    "drn_l_x8": ("l", 8, 36, 10, 10_004_018, 540),
}


def _fixture(name: str) -> Path:
    return FIXTURES / name


def _io(tag: str) -> dict:
    return torch.load(_fixture(f"drn_tiny_{tag}_io.pt"), weights_only=True)


def _official_sd(tag: str) -> dict[str, torch.Tensor]:
    return torch.load(_fixture(f"drn_tiny_{tag}_official.pt"), weights_only=True)


def _run(loaded: LoadedModel, x255: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Our nets on a 0..255 input -> (primal outputs, dual outputs), both back on 0..255."""
    net = loaded.net.eval()
    with torch.no_grad():
        outs = net(x255 / 255.0)
        duals = [] if loaded.duals is None else [d.eval()(outs[i + 1]) for i, d in enumerate(loaded.duals)]
    return [o * 255.0 for o in outs], [d * 255.0 for d in duals]


def _max_diffs(ours: list[torch.Tensor], ref: list[torch.Tensor]) -> list[float]:
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
    return [float((a - b).abs().max()) for a, b in zip(ours, ref)]


def _ulp_close(a: torch.Tensor, b: torch.Tensor, ulps: int = 1) -> bool:
    """Every element of a within ``ulps`` float32 rounding steps of b."""
    spacing = torch.finfo(torch.float32).eps * b.abs().clamp_min(torch.finfo(torch.float32).tiny)
    return bool(((a - b).abs() <= ulps * spacing).all())


def _save_ours_ckpt(path: Path, net: DRN, duals: nn.ModuleList | None, hparams: dict | None = None) -> None:
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    if duals is not None:
        sd.update({f"duals.{i}.{k}": v for i, d in enumerate(duals) for k, v in d.state_dict().items()})
    torch.save(
        {"state_dict": sd, "epoch": 3, "global_step": 42,
         "sr_adapt": {"arch": "drn", "hparams": hparams if hparams is not None else net.hparams()}},
        path,
    )


# ------------------------------------------------------------------------------------------
# parity with the official code


PARITY_CASES = [
    ("x4", "drn_tiny_x4_official.pt", "drn_tiny_x4_official_dual.pt", "official"),
    ("x4", "drn_tiny_x4_official.pdparams", None, "paddle"),
    ("x8", "drn_tiny_x8_official.pt", "drn_tiny_x8_official_dual.pt", "official"),
]


@pytest.mark.parametrize(("tag", "primal", "dual", "source"), PARITY_CASES)
def test_parity_with_official_outputs(tag, primal, dual, source):
    ref = _io(tag)
    loaded = load_checkpoint(_fixture(primal), _fixture(dual) if dual else None)
    assert loaded.source == source
    assert loaded.path == _fixture(primal)
    assert loaded.meta["config"] == {k: ref["config"][k] for k in ("scale", "n_blocks", "n_feats")}
    assert loaded.duals is not None and len(loaded.duals) == len(ref["dual_outputs"])

    outs, dual_outs = _run(loaded, ref["input"])
    primal_diffs = _max_diffs(outs, ref["outputs"])
    dual_diffs = _max_diffs(dual_outs, ref["dual_outputs"])
    assert max(primal_diffs) <= TOL_255, primal_diffs
    assert max(dual_diffs) <= TOL_255, dual_diffs
    # the outputs are real images on the 0..255 scale, not something trivially matching
    assert all(float(o.abs().max()) > 50 for o in ref["outputs"])


def test_pdparams_fixture_is_paddlegan_format():
    with open(_fixture("drn_tiny_x4_official.pdparams"), "rb") as f:
        raw = f.read()
    assert raw[:2] == b"\x80\x02"  # pickle protocol 2
    obj = pickle.loads(raw, encoding="latin1")
    assert sorted(obj) == ["dual_model_0", "dual_model_1", "generator"]
    for net in obj.values():
        assert "StructuredToParameterName@@" in net
        assert all(isinstance(v, np.ndarray) for k, v in net.items() if k != "StructuredToParameterName@@")
    sd = _official_sd("x4")
    for k, v in sd.items():
        np.testing.assert_array_equal(obj["generator"][k], v.numpy())


def test_dual_model_is_homogeneous_so_weights_need_no_rescaling():
    loaded = load_checkpoint(_fixture("drn_tiny_x4_official.pt"), _fixture("drn_tiny_x4_official_dual.pt"))
    x = torch.rand(2, 3, 16, 18, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for d in loaded.duals:
            torch.testing.assert_close(d(x * 255.0), d(x) * 255.0, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------------------
# conversions and round trips


def test_our_parameters_are_the_official_ones():
    """The x255 is a constant of the forward: a fresh net holds the official initial values."""
    ours = DRN(scale=4, n_blocks=1, n_feats=4).state_dict()
    assert torch.equal(ours["sub_mean.weight"], torch.eye(3).view(3, 3, 1, 1))
    assert torch.equal(ours["add_mean.weight"], torch.eye(3).view(3, 3, 1, 1))
    torch.testing.assert_close(ours["add_mean.bias"], 255 * torch.tensor([0.4488, 0.4371, 0.4040]))
    torch.testing.assert_close(ours["sub_mean.bias"], -255 * torch.tensor([0.4488, 0.4371, 0.4040]))


def test_save_official_then_load_gives_identical_outputs(tmp_path):
    ref = _io("x4")
    loaded = load_checkpoint(_fixture("drn_tiny_x4_official.pt"), _fixture("drn_tiny_x4_official_dual.pt"))
    primal_path, dual_path = save_official(loaded.net, loaded.duals, tmp_path / "export" / "DRNT4x.pt")
    assert dual_path == tmp_path / "export" / "DRNT4x_dual_model.pt"
    assert sorted(p.name for p in primal_path.parent.iterdir()) == ["DRNT4x.pt", "DRNT4x_dual_model.pt"]

    # exactly the official format: a plain state_dict / a list of state_dicts, official keys and scale
    exported = torch.load(primal_path, weights_only=True)
    original = _official_sd("x4")
    assert list(exported) == list(original)
    for k, v in original.items():
        assert _ulp_close(exported[k], v) if k in MEAN_SHIFT_KEYS else torch.equal(exported[k], v), k
    dual_list = torch.load(dual_path, weights_only=True)
    official_duals = torch.load(_fixture("drn_tiny_x4_official_dual.pt"), weights_only=True)
    assert isinstance(dual_list, list) and len(dual_list) == len(official_duals)
    for a, b in zip(dual_list, official_duals):
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in b)

    again = load_checkpoint(primal_path, dual_path)
    assert again.source == "official"
    outs_a, duals_a = _run(loaded, ref["input"])
    outs_b, duals_b = _run(again, ref["input"])
    for a, b in zip(outs_a + duals_a, outs_b + duals_b):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-4)
    assert max(_max_diffs(outs_b, ref["outputs"])) <= TOL_255


def test_save_official_without_duals(tmp_path):
    net = DRN(scale=4, n_blocks=1, n_feats=4)
    primal_path, dual_path = save_official(net, None, tmp_path / "p.pt")
    assert dual_path is None and not (tmp_path / "p_dual_model.pt").exists()
    loaded = load_checkpoint(primal_path)
    assert loaded.duals is None
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        for a, b in zip(net(x), loaded.net(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_our_lightning_checkpoint(tmp_path):
    src = load_checkpoint(_fixture("drn_tiny_x8_official.pt"), _fixture("drn_tiny_x8_official_dual.pt"))
    path = tmp_path / "last.ckpt"
    _save_ours_ckpt(path, src.net, src.duals)
    loaded = load_checkpoint(path, expect={"arch": "drn", "scale": 8, "n_blocks": 0, "n_feats": 4})
    assert loaded.source == "sr_adapt"
    assert loaded.meta["epoch"] == 3 and loaded.meta["global_step"] == 42
    for k, v in src.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k
    ref = _io("x8")
    outs, dual_outs = _run(loaded, ref["input"])
    assert max(_max_diffs(outs, ref["outputs"])) <= TOL_255
    assert max(_max_diffs(dual_outs, ref["dual_outputs"])) <= TOL_255


def test_our_checkpoint_whose_hparams_disagree_with_weights(tmp_path):
    net = DRN(scale=4, n_blocks=1, n_feats=4)
    path = tmp_path / "bad.ckpt"
    _save_ours_ckpt(path, net, None, hparams={"scale": 4, "n_blocks": 3, "n_feats": 4})
    with pytest.raises(CheckpointError, match=r"bad\.ckpt.*n_blocks"):
        load_checkpoint(path)


def test_plain_torch_save_of_our_net_loads_as_is(tmp_path):
    net = DRN(scale=4, n_blocks=1, n_feats=4)
    torch.save(net.state_dict(), tmp_path / "ours.pt")
    loaded = load_checkpoint(tmp_path / "ours.pt")
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_and_module_prefixed_official_files(tmp_path, wrapper):
    sd = _official_sd("x4")
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in sd.items()}, "epoch": 7}, path)
    loaded = load_checkpoint(path)
    assert loaded.source == "official"
    assert loaded.meta["wrapper_key"] == wrapper and loaded.meta["stripped_prefixes"] == ["module."]
    ref = _io("x4")
    outs, _ = _run(loaded, ref["input"])
    assert max(_max_diffs(outs, ref["outputs"])) <= TOL_255


def test_pdparams_written_with_numpy2_module_names(tmp_path):
    """Files pickled under numpy >= 2 reference numpy._core; both spellings must load."""
    with open(_fixture("drn_tiny_x4_official.pdparams"), "rb") as f:
        raw = f.read()
    assert b"cnumpy.core.multiarray\n" in raw
    path = tmp_path / "np2.pdparams"
    path.write_bytes(raw.replace(b"cnumpy.core.multiarray\n", b"cnumpy._core.multiarray\n"))
    loaded = load_checkpoint(path, expect={"scale": 4})
    ref = _io("x4")
    outs, dual_outs = _run(loaded, ref["input"])
    assert max(_max_diffs(outs, ref["outputs"])) <= TOL_255
    assert max(_max_diffs(dual_outs, ref["dual_outputs"])) <= TOL_255


# ------------------------------------------------------------------------------------------
# released variants (shapes from the official key lists)


def _parse_keys(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[int, dict[str, tuple[int, ...]]]]:
    primal: dict[str, tuple[int, ...]] = {}
    duals: dict[int, dict[str, tuple[int, ...]]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, shape_txt = line.rsplit("\t", 1)
        shape = tuple(int(s) for s in re.findall(r"\d+", shape_txt))
        m = re.match(r"^dual\[(\d+)\] (.+)$", name)
        if m:
            duals.setdefault(int(m.group(1)), {})[m.group(2)] = shape
        else:
            primal[name] = shape
    return primal, duals


def _random_sd(shapes: dict[str, tuple[int, ...]], gen: torch.Generator) -> dict[str, torch.Tensor]:
    return OrderedDict((k, torch.randn(s, generator=gen) * 0.01) for k, s in shapes.items())


@pytest.mark.parametrize("stem", sorted(RELEASED))
def test_released_variant_shapes(tmp_path, stem):
    key_file = OFFICIAL_KEYS / f"{stem}_keys_all.txt"
    if not key_file.is_file():
        pytest.skip(f"official key list not found: {key_file}")
    size, scale, n_blocks, n_feats, n_params, n_dual = RELEASED[stem]
    shapes, dual_shapes = _parse_keys(key_file)
    gen = torch.Generator().manual_seed(1)
    sd = _random_sd(shapes, gen)
    assert sum(t.numel() for t in sd.values()) == n_params

    cfg = infer_drn_config(sd)
    assert cfg == {"scale": scale, "n_blocks": n_blocks, "n_feats": n_feats}
    assert variant_name(cfg) == f"DRN-{size.upper()} x{scale}"

    torch.save(sd, tmp_path / "primal.pt")
    torch.save([_random_sd(dual_shapes[i], gen) for i in sorted(dual_shapes)], tmp_path / "dual.pt")
    loaded = load_checkpoint(tmp_path / "primal.pt", tmp_path / "dual.pt", expect={"arch": "drn", "variant": size, "scale": scale})
    assert loaded.net.num_parameters() == n_params
    assert len(loaded.duals) == len(dual_shapes) == {4: 2, 8: 3}[scale]
    assert all(sum(p.numel() for p in d.parameters()) == n_dual for d in loaded.duals)
    assert torch.equal(loaded.net.state_dict()["tail.0.weight"], sd["tail.0.weight"])


def test_infer_config_for_custom_sizes():
    for scale, n_blocks, n_feats in [(2, 0, 4), (4, 3, 12), (8, 1, 6), (16, 1, 4)]:
        sd = DRN(scale=scale, n_blocks=n_blocks, n_feats=n_feats).state_dict()
        cfg = infer_drn_config(sd)
        assert cfg == {"scale": scale, "n_blocks": n_blocks, "n_feats": n_feats}
        assert variant_name(cfg) == f"DRN (n_blocks={n_blocks}, n_feats={n_feats}) x{scale}"


# ------------------------------------------------------------------------------------------
# bad input -> clear errors


@pytest.fixture(scope="module")
def drn_s_x4_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("released") / "DRNS4x.pt"
    torch.save(DRN.variant("s", 4).state_dict(), path)
    return path


def test_wrong_variant_names_file_both_variants_and_fix(drn_s_x4_file):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(drn_s_x4_file, expect={"arch": "drn", "scale": 4, "n_blocks": 40, "n_feats": 20})
    msg = str(info.value)
    assert "DRNS4x.pt" in msg
    assert "DRN-S x4: n_blocks=30, n_feats=16" in msg
    assert "DRN-L x4: n_blocks=40, n_feats=20" in msg
    assert "model=drn_s scale=4" in msg
    # the same request spelled as a variant name
    with pytest.raises(CheckpointError, match="DRN-L x4"):
        load_checkpoint(drn_s_x4_file, expect={"variant": "drn_l", "scale": 4})
    # and the right request loads
    assert load_checkpoint(drn_s_x4_file, expect={"variant": "s", "scale": 4}).meta["variant"] == "DRN-S x4"


def test_wrong_scale():
    path = _fixture("drn_tiny_x8_official.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expect={"arch": "drn", "scale": 4})
    msg = str(info.value)
    assert "drn_tiny_x8_official.pt" in msg
    assert "DRN x8: n_blocks=0, n_feats=4" in msg and "scale=4" in msg
    assert "model=drn_s model.net.n_blocks=0 model.net.n_feats=4 scale=8" in msg


def test_wrong_arch_requested():
    with pytest.raises(CheckpointError, match="arch='drrn'"):
        load_checkpoint(_fixture("drn_tiny_x4_official.pt"), expect={"arch": "drrn"})


def test_non_drn_state_dict(tmp_path):
    path = tmp_path / "linear.pt"
    torch.save(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "linear.pt" in msg and "not a DRN state_dict" in msg and "'0.weight'" in msg

    path = tmp_path / "misc.pt"
    torch.save({"epoch": 3, "lr": 0.1, "model": {"layer.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match=r"misc\.pt: not an architecture sr_adapt or spandrel knows \(keys "
                                              r"'layer\.weight'\); not a DRN or DRRN state_dict"):
        load_checkpoint(path)

    with pytest.raises(CheckpointError, match="not a DRN state_dict"):
        infer_drn_config({"foo": torch.zeros(1)})


def test_dual_file_passed_as_primal():
    with pytest.raises(CheckpointError, match="dual_path"):
        load_checkpoint(_fixture("drn_tiny_x4_official_dual.pt"))


def test_dual_file_with_wrong_count(tmp_path):
    duals = torch.load(_fixture("drn_tiny_x8_official_dual.pt"), weights_only=True)
    with pytest.raises(CheckpointError, match=r"holds 3 dual models.*needs 2"):
        load_checkpoint(_fixture("drn_tiny_x4_official.pt"), _fixture("drn_tiny_x8_official_dual.pt"))
    torch.save(duals[:2] + [{"bogus": torch.zeros(1)}], tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match=r"d\.pt.*dual model 2"):
        load_checkpoint(_fixture("drn_tiny_x8_official.pt"), tmp_path / "d.pt")


def test_missing_key_is_listed(tmp_path):
    sd = _official_sd("x4")
    del sd["up_blocks.1.0.body.2.weight"]
    sd["extra.thing"] = torch.zeros(3)
    sd["tail.1.weight"] = torch.zeros(3, 5, 3, 3)
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "broken.pt" in msg
    assert "missing keys (1):" in msg and "up_blocks.1.0.body.2.weight" in msg
    assert "unexpected keys (1):" in msg and "extra.thing" in msg
    assert "shape mismatches (1)" in msg and "tail.1.weight: (3, 5, 3, 3) vs (3, 16, 3, 3)" in msg


def test_key_diff_is_grouped_and_truncated(tmp_path):
    sd = _official_sd("x4")
    # drop both RCABs of the second up stage and add 12 stray entries
    dropped = [k for k in sd if k.startswith("up_blocks.1.0.") or k.startswith("up_blocks.1.1.")]
    for k in dropped:
        del sd[k]
    for i in range(12):
        sd[f"stray{i}.weight"] = torch.zeros(1)
    path = tmp_path / "many.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert f"missing keys ({len(dropped)}):" in msg
    assert "up_blocks.1.{0-1}.body.{0,2}.weight (4 keys)" in msg
    assert "stray9.weight" in msg and "stray10.weight" not in msg  # natural order, then truncated
    assert "unexpected keys (12):" in msg and "... and 2 more" in msg
    assert max(len(section.splitlines()) for section in msg.split("keys (")) <= 12


def test_corrupt_files(tmp_path):
    for name in ("garbage.pt", "garbage.pdparams", "garbage.ckpt"):
        path = tmp_path / name
        path.write_bytes(b"\x00\x01this is not a checkpoint\xff" * 10)
        with pytest.raises(CheckpointError, match=re.escape(name) + ".*corrupt"):
            load_checkpoint(path)
    trunc = tmp_path / "truncated.pt"
    trunc.write_bytes(_fixture("drn_tiny_x4_official.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"truncated\.pt.*corrupt"):
        load_checkpoint(trunc)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="nope.pt") as info:
        load_checkpoint(tmp_path / "nope.pt")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CheckpointError)
    with pytest.raises(FileNotFoundError, match="nodual.pt"):
        load_checkpoint(_fixture("drn_tiny_x4_official.pt"), tmp_path / "nodual.pt")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pdparams_with_disallowed_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    payload = {"generator": {"head.weight": _Evil(marker)}}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "evil.pdparams" in msg and "refused" in msg and "system" in msg
    assert not marker.exists()


def test_pt_with_disallowed_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"head.weight": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_our_module_state_dict_saved_bare_loads(tmp_path: Path) -> None:
    """torch.save(module.state_dict()) of our training module (net.* and duals.* keys) is a file of ours."""
    from sr_adapt.checkpoints import load_checkpoint
    from sr_adapt.models.drn import build_dual_models
    from tests.tiny_models import tiny_drn

    net = tiny_drn()
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    sd.update({f"duals.{k}": v for k, v in build_dual_models(4, 8).state_dict().items()})
    torch.save(sd, tmp_path / "mine.pt")
    loaded = load_checkpoint(tmp_path / "mine.pt", expect={"scale": 4})
    assert loaded.net.hparams()["n_feats"] == 8 and loaded.duals is not None
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.net.super_resolve(x), net.super_resolve(x))
