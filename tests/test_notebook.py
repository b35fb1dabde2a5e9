"""The notebook runs end to end (tiny settings) and shows its before/after comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "adapt_to_your_video.ipynb"


def test_adapt_to_your_video_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    tiny = {"NB_PRETRAIN_STEPS": "2", "NB_ADAPT_STEPS": "2", "NB_N_BLOCKS": "1", "NB_N_FEATS": "8",
            "NB_OUT": str(tmp_path / "runs"), "WANDB_MODE": "offline"}
    for key, value in tiny.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the frames strip + one before/after row per held-out frame
    last = nb.cells[-1].outputs[-1]["data"]["text/plain"]
    assert "before" in last and "after" in last and "lr_consistency_psnr" in last
    assert (tmp_path / "runs" / "adapt" / "checkpoints" / "last.ckpt").is_file()
