"""DRN architecture: official key names, shapes and parameter counts; any input size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sr_adapt.models import Bicubic, build_drn, build_dual_models, build_model
from sr_adapt.models.drn import DRN

OFFICIAL_KEYS = Path(__file__).resolve().parents[2] / "shared" / "docs" / "official_keys"

# (size, scale): (primal params incl. the 24 mean-shift params, params of one dual model)
PAPER_COUNTS = {
    ("s", 4): (4_804_065, 864),
    ("l", 4): (9_825_893, 1_080),
    ("s", 8): (5_403_000, 432),
    ("l", 8): (10_004_018, 540),
}


@pytest.mark.parametrize(("size", "scale"), sorted(PAPER_COUNTS))
def test_parameter_counts_match_paper(size: str, scale: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        net = build_drn(size, scale)
        duals = build_dual_models(scale, net.config.n_feats)
    primal, dual = PAPER_COUNTS[(size, scale)]
    assert net.num_parameters() == primal
    assert len(duals) == {4: 2, 8: 3}[scale]
    assert all(sum(p.numel() for p in d.parameters()) == dual for d in duals)


@pytest.mark.parametrize(("size", "scale"), sorted(PAPER_COUNTS))
def test_state_dict_keys_and_shapes_equal_official(size: str, scale: int) -> None:
    listing = OFFICIAL_KEYS / f"drn_{size}_x{scale}_keys_all.txt"
    if not listing.is_file():
        pytest.skip(f"official key listing not found: {listing}")
    rows = [line.split("\t") for line in listing.read_text().splitlines() if line.strip()]
    with torch.device("meta"):
        net = build_drn(size, scale)
        duals = build_dual_models(scale, net.config.n_feats)
    ours = {k: str(tuple(v.shape)) for k, v in net.state_dict().items()}
    official = {k: shape for k, shape in rows if not k.startswith("dual[")}
    assert list(ours) == list(official)  # same keys in the same order
    assert ours == official
    ours_dual = {f"dual[{i}] {k}": str(tuple(v.shape)) for i, d in enumerate(duals) for k, v in d.state_dict().items()}
    assert ours_dual == {k: shape for k, shape in rows if k.startswith("dual[")}


@pytest.mark.parametrize("hw", [(7, 9), (16, 16), (13, 24)])
@pytest.mark.parametrize("scale", [4, 8])
def test_any_input_size_gives_every_level(hw: tuple[int, int], scale: int) -> None:
    net = DRN(scale=scale, n_blocks=1, n_feats=8).eval()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        outs = net(x)
    assert [o.shape[-2:] for o in outs] == [torch.Size((hw[0] * 2**k, hw[1] * 2**k)) for k in range(len(outs))]
    assert net.super_resolve(x).shape == (2, 3, hw[0] * scale, hw[1] * scale)
    duals = build_dual_models(scale, 8)
    for i, d in enumerate(duals):
        assert d(outs[i + 1]).shape == outs[i].shape


def test_fresh_model_maps_mean_colour_through_the_official_scale() -> None:
    """Features live on the official 0..255 scale; a zero-tail net returns the DIV2K mean."""
    net = DRN(scale=4, n_blocks=1, n_feats=8)
    feats = net.head(net.sub_mean(torch.full((1, 3, 4, 4), 1.0)))
    assert feats.abs().max() > 10  # features on the official 0..255 scale, not [0,1]
    with torch.no_grad():
        for conv in net.tail:
            conv.weight.zero_()
            conv.bias.zero_()
    out = net(torch.rand(1, 3, 5, 5))[-1]
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.4488, 0.4371, 0.4040]), atol=1e-6)


def test_mean_shift_can_be_frozen() -> None:
    net = DRN(scale=4, n_blocks=1, n_feats=8, train_mean_shift=False)
    assert not any(p.requires_grad for p in net.sub_mean.parameters())
    assert all(p.requires_grad for p in net.head.parameters())


def test_registry_and_bicubic() -> None:
    net = build_model("drn", scale=4, n_blocks=1, n_feats=8)
    assert isinstance(net, DRN) and net.hparams()["n_feats"] == 8
    bic = Bicubic(scale=4)
    assert bic.num_parameters() == 0
    assert bic.super_resolve(torch.full((1, 3, 6, 5), 0.25)).allclose(torch.full((1, 3, 24, 20), 0.25))
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("edsr")
    with pytest.raises(ValueError, match="n_blocks"):
        build_drn("s", 16)
