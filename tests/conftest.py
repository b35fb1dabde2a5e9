"""Shared pytest fixtures.

``shared_data`` points at ``../shared/data`` beside the checkout (development and CI
machines have it, a user's fresh clone does not): tests that need it skip cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("SR_ADAPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


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


CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def compose(config_name: str, overrides: list[str], out_dir: Path):
    """Composes a config like the CLI does (resolvers registered, outputs in ``out_dir``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import sr_adapt.utils.hydra  # noqa: F401  (registers resolvers)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(
            config_name,
            overrides=[*overrides, f"paths.output_dir={out_dir}", f"paths.root_dir={REPO_ROOT}", f"paths.log_dir={out_dir}/logs"],
        )


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: int = 300):
    """Runs ``scripts/<script>`` in a subprocess with this interpreter; returns CompletedProcess."""
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / script), *args],
        cwd=cwd or REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
