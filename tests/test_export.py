"""scripts/export.py: ONNX graphs with dynamic size that onnxruntime runs like PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sr_adapt.errors import SRAdaptError
from tests.conftest import compose, run_script
from tests.tiny_models import save_ours, tiny_drn, tiny_drrn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sr_adapt.inference.onnx import export_onnx, ort_session, run_onnx
from sr_adapt.tasks.export import run as export  # noqa: E402


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_cli_exports_drn_with_dynamic_size_matching_pytorch(tmp_path: Path) -> None:
    net = tiny_drn()
    ckpt = save_ours(net, tmp_path / "drn.ckpt")
    out = tmp_path / "drn.onnx"
    proc = run_script("export.py", f"ckpt_path={ckpt}", f"output={out}", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "max abs diff" in proc.stdout
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["lr"] and [o.name for o in graph.output] == ["sr"]
    assert _dims(graph.input[0]) == ["batch", 3, "height", "width"]
    session = ort_session(out)
    for shape in [(1, 3, 16, 16), (2, 3, 23, 41)]:  # sizes other than the export's sample
        x = torch.rand(shape)
        with torch.no_grad():
            ref = net.super_resolve(x).clamp(0, 1)
        got = run_onnx(session, x)
        assert got.shape == ref.shape and (got - ref).abs().max() < 1e-3
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_luma_model_exports_its_y_network(tmp_path: Path) -> None:
    net = tiny_drrn()
    path = export_onnx(net, tmp_path / "drrn.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["y"] and _dims(graph.input[0])[1] == 1
    y = torch.rand(1, 1, 30, 27)
    with torch.no_grad():
        ref = net(y).clamp(0, 1)
    assert (run_onnx(ort_session(path), y) - ref).abs().max() < 1e-3


def test_export_refuses_bad_output_and_scale(tmp_path: Path) -> None:
    ckpt = save_ours(tiny_drn(), tmp_path / "drn.ckpt")
    with pytest.raises(SRAdaptError, match=r"\.onnx"):
        export(compose("export", [f"ckpt_path={ckpt}", f"output={tmp_path}/m.bin"], tmp_path))
    with pytest.raises(SRAdaptError, match="scale=8"):
        export(compose("export", [f"ckpt_path={ckpt}", f"output={tmp_path}/m.onnx", "scale=8"], tmp_path))
    with pytest.raises(SRAdaptError, match="is a file, not a folder"):
        export(compose("export", [f"ckpt_path={ckpt}", f"output={ckpt}/m.onnx"], tmp_path))
    assert not (tmp_path / "m.onnx").exists()


def test_weights_only_file_keeps_primal_and_duals_and_loads_safely(tmp_path: Path) -> None:
    """``output=*.pt``: what ships in sr_adapt/assets/weights (no optimizer state, float32)."""
    from sr_adapt.checkpoints import load_checkpoint

    from sr_adapt.models.drn import build_dual_models

    net = tiny_drn()
    duals = build_dual_models(4, net.config.n_feats, net.config.negval)
    sd = {**{f"net.{k}": v for k, v in net.state_dict().items()}, **{f"duals.{k}": v for k, v in duals.state_dict().items()}}
    ckpt = tmp_path / "drn.ckpt"
    torch.save({"state_dict": sd, "sr_adapt": {"arch": "drn", "hparams": net.hparams()},
                "optimizer_states": [{"big": torch.zeros(10000)}]}, ckpt)
    result = export(compose("export", [f"ckpt_path={ckpt}", f"output={tmp_path}/w.pt"], tmp_path))
    assert result["duals"] and result["bytes"] < ckpt.stat().st_size
    obj = torch.load(tmp_path / "w.pt", weights_only=True)
    assert set(obj) == {"state_dict", "sr_adapt"} and obj["sr_adapt"]["arch"] == "drn"
    back = load_checkpoint(tmp_path / "w.pt", expect={"scale": 4})
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(back.net(x)[-1], net(x)[-1])
    assert back.duals is not None and len(back.duals) == 2
