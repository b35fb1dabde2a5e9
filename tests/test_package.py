"""A wheel built from the repo carries the configs, the assets and the console scripts, and the main
job runs from it outside the clone (the editable install shadowed by the wheel's copy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT

SCRIPTS = {"sr-adapt-train", "sr-adapt-evaluate", "sr-adapt-compare", "sr-adapt-upscale", "sr-adapt-export",
           "sr-adapt-benchmark-adaptation", "sr-adapt-prepare-data",
           "sr-adapt-train-kernel-estimator"}


def _tracked_copy(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith(("tests/", "benchmarks/", "notebooks/")) or not (REPO_ROOT / rel).is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, dst / rel)
    return dst


def test_wheel_carries_configs_and_console_scripts_and_runs_the_main_job_outside_the_clone(tmp_path: Path) -> None:
    src = _tracked_copy(tmp_path / "src")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, env=env, capture_output=True)
    (wheel,) = list((tmp_path / "dist").glob("sr_adapt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"sr_adapt/conf/train.yaml", "sr_adapt/conf/hydra/default.yaml", "sr_adapt/conf/experiment/drn_unpaired_video.yaml",
            "sr_adapt/assets/sample_data/video/bikes.mp4"} <= set(names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {line.split(" = ")[0] for line in entry_points.splitlines() if " = " in line} == SCRIPTS

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, env=env, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    run_env = {**env, "PYTHONPATH": str(target), "WANDB_MODE": "offline"}
    proc = subprocess.run([str(target / "bin" / "sr-adapt-train"), "experiment=drn_unpaired_video", "debug=fast",
                           "logger=csv", "hydra.run.dir=run"], cwd=work, env=run_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(target / "sr_adapt") in (work / "run" / "config.yaml").read_text()  # configs and assets of the wheel
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file() and (work / "run" / "metrics.json").is_file()
