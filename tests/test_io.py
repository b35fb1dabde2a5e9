"""The one writer (atomic, umask-honouring), image files by suffix, and the prepare_data command."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_adapt.errors import ConfigError, OutputError
from sr_adapt.io.atomic import atomic_path, atomic_torch_save, atomic_write_json, check_writable
from sr_adapt.io.images import load_image, save_image
from tests.conftest import MINI, run_script


@pytest.fixture()
def umask():
    """Sets a umask for the test and restores the previous one."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_get_normal_permissions_under_the_umask(tmp_path: Path, umask) -> None:
    umask(0o022)
    atomic_torch_save({"x": torch.zeros(2)}, tmp_path / "a.ckpt")
    atomic_write_json({"psnr": 1.0}, tmp_path / "m.json")
    save_image(torch.zeros(3, 4, 4), tmp_path / "p.png")
    assert [_mode(tmp_path / n) for n in ("a.ckpt", "m.json", "p.png")] == [0o644] * 3
    umask(0o077)
    atomic_write_json({}, tmp_path / "private.json")
    assert _mode(tmp_path / "private.json") == 0o600
    umask(0o002)
    atomic_write_json({}, tmp_path / "group.json")
    assert _mode(tmp_path / "group.json") == 0o664


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == '{\n  "v": 1\n}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


@pytest.mark.parametrize(("where", "error", "pattern"), [
    ("create", PermissionError(errno.EACCES, "Permission denied"), r"no permission \(Permission denied\).*choose a folder"),
    ("write", OSError(errno.ENOSPC, "No space left on device"), r"the disk is full; \d+ MiB free in .*; free some space"),
    ("write", OSError(errno.EROFS, "Read-only file system"), r"no permission \(Read-only file system\)"),
])
def test_write_failures_name_the_file_and_why(tmp_path: Path, monkeypatch, where: str, error: OSError, pattern: str) -> None:
    target = tmp_path / "out" / "m.json"
    atomic_write_json({"v": 1}, target)

    def fail(*args, **kwargs):
        raise error

    with pytest.raises(OutputError, match=r"cannot write .*m\.json: " + pattern):
        if where == "create":
            monkeypatch.setattr("tempfile.mkstemp", fail)
            atomic_write_json({"v": 2}, target)
        else:
            with atomic_path(target) as tmp:
                tmp.write_text("half")
                fail()
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1} and [p.name for p in target.parent.iterdir()] == ["m.json"]
    with pytest.raises(FileNotFoundError):  # an input error inside the block is not a write failure
        with atomic_path(target):
            open(tmp_path / "missing.txt")


def test_save_image_chooses_the_format_by_suffix_and_rounds_like_quantize(tmp_path: Path) -> None:
    img = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 1.2]).view(1, 1, 4).expand(3, 2, 4).clone()
    for suffix, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF")):
        path = save_image(img, tmp_path / f"x{suffix}")
        assert Image.open(path).format == fmt
    assert np.asarray(Image.open(tmp_path / "x.png"))[0, :, 0].tolist() == [0, 1, 2, 255]
    assert torch.equal(load_image(tmp_path / "x.png")[0, 0], torch.tensor([0, 1, 2, 255]) / 255.0)
    with pytest.raises(ValueError, match=r"'\.gif'"):
        save_image(img, tmp_path / "x.gif")


def test_check_writable_names_the_key(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "deeper" / "out.png", "output")  # folders to be made are fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"save_dir=.*is a file, not a folder"):
        check_writable(tmp_path / "file" / "out.png", "save_dir")


def test_cli_prepare_data_writes_lr_folders_and_refuses_a_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "LR_bicubic"
    proc = run_script("prepare_data.py", str(MINI), str(out), "--factors", "2", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    hr = Image.open(MINI / "coffee.png")
    assert Image.open(out / "X4" / "coffeex4.png").size == (hr.width // 4, hr.height // 4)
    assert sorted(p.name for p in (out / "X2").iterdir()) == ["coffeex2.png", "hubblex2.png"]
    proc = run_script("prepare_data.py", str(tmp_path / "nope"), str(out))
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr
