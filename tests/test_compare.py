"""The compare task: one markdown table, every model at the scales it serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sr_adapt.errors import CheckpointNotFoundError, ConfigError
from tests.conftest import FIXTURES, MINI, run_script, run_task


def test_cli_table_of_bicubic_drrn_and_drn(tmp_path: Path) -> None:
    out, js = tmp_path / "table.md", tmp_path / "table.json"
    models = f"[bicubic,{FIXTURES / 'drrn_port_tiny_c8.pth'},{FIXTURES / 'drn_tiny_x4_official.pt'}]"
    proc = run_script("compare.py", f"models={models}", "scales=[2,3,4]", f"benchmarks=[{MINI}]", f"output={out}",
                      f"json_output={js}", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = out.read_text().strip().splitlines()
    assert lines[0] == "| model | params | mini x2 | mini x3 | mini x4 |"
    assert len(lines) == 5
    drn_row = next(line for line in lines if line.startswith("| drn_tiny_x4_official"))
    assert drn_row.count("—") == 2  # a DRN x4 has no x2 / x3 result
    report = json.loads(js.read_text())
    assert set(report["models"]["drrn_port_tiny_c8"]["results"]) == {"mini_x2", "mini_x3", "mini_x4"}
    bic = report["models"]["bicubic"]["results"]["mini_x4"]["psnr"]
    assert bic == pytest.approx(29.8847, abs=1e-3) and "**29.88 / 0.7367**" in out.read_text()  # best of its column


def test_empty_or_bad_model_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="models is empty"):
        run_task("compare", ["models=[]", f"benchmarks=[{MINI}]"], tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="nope.pt"):
        run_task("compare", [f"models=[{tmp_path / 'nope.pt'}]", f"benchmarks=[{MINI}]"], tmp_path)
