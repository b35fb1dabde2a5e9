"""The benchmark scripts that have no GPU here still run: end to end at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytest.importorskip("onnxruntime")


def test_gpu_script_dry_run_writes_every_table(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/gpu.py", "--dry-run", "--out", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["dry_run"] is True
    assert [r["config"] for r in result["training"]] == ["fp32", "bf16-mixed", "bf16-mixed + channels_last"]
    assert all(r["samples_per_s"] > 0 for r in result["training"])
    engines = {r["engine"] for r in result["upscale"]}
    assert {"torch fp32", "torch bf16", "onnxruntime fp32 (CPUExecutionProvider)"} <= engines
    assert {r["tile"] for r in result["upscale"]} == {"untiled", 16}
    assert result["loading"] and all(r["patches_per_s"] > 0 for r in result["loading"])
    table = (tmp_path / "gpu.md").read_text()
    assert "DRY RUN" in table and "| upscale engine |" in table


def test_gpu_script_refuses_to_measure_without_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run([sys.executable, "benchmarks/gpu.py", "--out", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
