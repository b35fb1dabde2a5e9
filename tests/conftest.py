"""Shared pytest fixtures.

``shared_data`` points at ``../shared/data`` beside the checkout (development and CI
machines have it, a user's fresh clone does not): tests that need it skip cleanly.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from sr_adapt.config import ASSETS_DIR, CONF_DIR
from sr_adapt.config import compose as sr_adapt_compose

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLE_DATA = ASSETS_DIR / "sample_data"  # bundled with the package: every test can use it
MINI = SAMPLE_DATA / "benchmarks" / "mini"  # two small HR images (coffee, hubble)
SHARED_DATA = Path(os.environ.get("SR_ADAPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# Exported graphs and measured margins of this test session (commands run as subprocesses see it too);
# never the user's ~/.cache.
os.environ["SR_ADAPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="sr_adapt_test_cache_")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set SR_ADAPT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def set5_dir(shared_data: Path) -> Path:
    return shared_data / "benchmarks" / "Set5"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def mini_dir() -> Path:
    return MINI


EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def compose(config_name: str, overrides: list[str], out_dir: Path):
    """Composes a config like the command does, with its outputs in ``out_dir``."""
    return sr_adapt_compose(
        config_name,
        [*overrides, f"paths.output_dir={out_dir}", f"paths.root_dir={REPO_ROOT}", f"paths.log_dir={out_dir}/logs"],
    )


def run_task(task: str, overrides: list[str], out_dir: Path):
    """``sr_adapt.tasks.<task>.run`` on the composed ``<task>`` config, in this process."""
    import importlib

    return importlib.import_module(f"sr_adapt.tasks.{task}").run(compose(task, overrides, out_dir))


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: int = 300):
    """Runs ``scripts/<script>`` in a subprocess with this interpreter; returns CompletedProcess."""
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / script), *args],
        cwd=cwd or REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``gpu`` run only where CUDA is available."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
