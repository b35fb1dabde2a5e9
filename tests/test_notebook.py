"""The notebook runs end to end (tiny settings) and shows its before/after comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "adapt_to_your_video.ipynb"


def test_adapt_to_your_video_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    tiny = {"NB_ADAPT_STEPS": "2", "NB_OUT": str(tmp_path / "runs"), "WANDB_MODE": "offline"}
    for key, value in tiny.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # the frames strip, the kernel picture, one row per held-out frame
    last = nb.cells[-1].outputs[-1]["data"]["text/plain"]
    assert all(k in last for k in ("before", "control", "adapted", "target_consistency_psnr"))
    assert (tmp_path / "runs" / "degradation.pt").is_file()
    for run in ("adapt", "control"):
        assert (tmp_path / "runs" / run / "checkpoints" / "last.ckpt").is_file()
