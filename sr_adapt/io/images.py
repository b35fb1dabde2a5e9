"""Reading and writing image files as float tensors (Pillow).

Conventions: images are ``(3, H, W)`` float32 RGB tensors in [0, 1]. Decoding goes
through an intermediate ``(H, W, 3)`` numpy array (uint8, uint16 or float32) so the
datasets can crop (and cache) images before paying for the float conversion.

Decisions worth knowing:

- EXIF orientation is NOT applied: SR benchmarks and training sets are stored raw, and
  rotating HR but not a pre-made LR file (or vice versa) would break the pairing.
- Alpha channels (RGBA, LA, PA) are dropped, not composited onto a background.
- Grayscale is replicated to three channels; 16-bit data is scaled by 65535.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sr_adapt.errors import DataError
from sr_adapt.io.atomic import atomic_path, show_path
from sr_adapt.ops.color import to_uint8

__all__ = [
    "IMAGE_EXTENSIONS",
    "is_image_file",
    "list_images",
    "load_image_array",
    "array_to_tensor",
    "load_image",
    "image_size",
    "save_image",
    "show_path",
    "WRITE_FORMATS",
]

#: Accepted file suffixes (compared lower-cased).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

#: Suffixes :func:`save_image` writes -> Pillow format names.
WRITE_FORMATS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
}

_EXT_TEXT = ", ".join(sorted(IMAGE_EXTENSIONS))


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a name with an accepted suffix that is not a hidden file (e.g. macOS ``._x.png``)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(folder: str | os.PathLike, config_key: str) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        DataError: the folder is missing, not a directory, or holds no image; the
            message names the folder and ``config_key``.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise DataError(
            f"{config_key}: image folder {show_path(folder)} does not exist. "
            f"Set {config_key} to an existing folder of images ({_EXT_TEXT})."
        )
    if not folder.is_dir():
        raise DataError(
            f"{config_key}: {show_path(folder)} is not a folder. "
            f"Set {config_key} to a folder of images ({_EXT_TEXT}), not a single file."
        )
    files = sorted(p for p in folder.iterdir() if is_image_file(p) and p.is_file())
    if not files:
        raise DataError(
            f"{config_key}: no images in folder {show_path(folder)}. Accepted extensions "
            f"(any case): {_EXT_TEXT}. Put images there or point {config_key} at another folder."
        )
    return files


def _bad_file(path: Path, what: str) -> DataError:
    return DataError(
        f"cannot read image {show_path(path)}: {what}. Replace or delete the file."
    )


def _int_mode_max(img: Image.Image) -> float:
    """Full-scale value of a 32-bit integer ('I') image: its TIFF bit depth, else 16 bits."""
    tags = getattr(img, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None  # TIFF BitsPerSample
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return float(2 ** int(bits) - 1) if bits else 65535.0


def _to_array(img: Image.Image) -> np.ndarray:
    """Decoded PIL image -> ``(H, W, 3)`` uint8 / uint16 / float32-in-[0,1] array."""
    mode = img.mode
    if mode in ("RGB", "L"):
        arr = np.asarray(img)
    elif mode == "1":
        arr = np.asarray(img.convert("L"))
    elif mode in ("LA", "La"):
        arr = np.asarray(img.getchannel(0))  # alpha dropped
    elif mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.uint16)  # also makes big-endian I;16B native
    elif mode == "I":
        arr = (np.asarray(img).astype(np.float64) / _int_mode_max(img)).clip(0.0, 1.0).astype(np.float32)
    elif mode == "F":
        arr = np.asarray(img).astype(np.float32).clip(0.0, 1.0)  # float images assumed in [0, 1]
    else:
        # P/PA (palette), RGBA/RGBX/RGBa (alpha dropped), CMYK, YCbCr, ...
        arr = np.asarray(img.convert("RGB"))
    if arr.ndim == 2:
        arr = np.stack([arr, arr, arr], axis=-1)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"unexpected decoded shape {arr.shape} for mode {mode}")
    return arr


def load_image_array(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` RGB array.

    dtype uint8 (0..255, most files), uint16 (0..65535, 16-bit files) or float32 in
    [0, 1] (32-bit integer / float files); :func:`array_to_tensor` knows each scale.

    Raises:
        DataError: the file is missing, not an image, truncated or corrupt (names the path).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated/corrupt data fails here, not later
            return _to_array(img)
    except FileNotFoundError:
        raise _bad_file(path, "the file does not exist") from None
    except Image.DecompressionBombError as e:
        raise _bad_file(path, f"image too large for Pillow's safety limit ({e})") from None
    except Exception as e:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise _bad_file(path, f"not a valid image or corrupt/truncated ({type(e).__name__}: {e})") from None


def array_to_tensor(arr: np.ndarray) -> Tensor:
    """``(H, W, 3)`` array from :func:`load_image_array` (or a crop of it) -> ``(3, H, W)`` float32 in [0, 1]."""
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype == np.float32:
        scale = 1.0
    else:
        raise TypeError(f"array_to_tensor: unsupported dtype {arr.dtype}")
    t = torch.from_numpy(arr.astype(np.float32))  # copy: writable, contiguous, crop-sized
    if scale != 1.0:
        t.div_(scale)  # division (not * 1/255) gives exactly the values of ops.color.quantize
    return t.permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike) -> Tensor:
    """Read an image as a ``(3, H, W)`` float32 RGB tensor in [0, 1].

    Grayscale (L, 1, 16-bit I;16, I) is replicated to 3 channels; alpha is dropped;
    palette and CMYK are converted to RGB; EXIF orientation is ignored.

    Raises:
        DataError: unreadable, corrupt or truncated file (names the path).
    """
    return array_to_tensor(load_image_array(path))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` read from the file header only (no pixel decoding).

    Raises:
        DataError: missing file or unrecognised header (names the path).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise _bad_file(path, "the file does not exist") from None
    except Exception as e:  # noqa: BLE001
        raise _bad_file(path, f"not a valid image ({type(e).__name__}: {e})") from None
    return int(h), int(w)


def save_image(img: Tensor, path: str | os.PathLike, quality: int = 95) -> Path:
    """Write a ``(3, H, W)`` or ``(1, H, W)`` float tensor in [0, 1] as an 8-bit image, atomically.

    The format follows the suffix (:data:`WRITE_FORMATS`: PNG, JPEG/WebP at ``quality``, BMP,
    TIFF). Values are rounded like :func:`~sr_adapt.ops.color.quantize` (NaN -> 0). Parent
    folders are created; readers never see a half-written file (:func:`~sr_adapt.io.atomic.atomic_path`).

    Returns:
        the path written.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"save_image: unsupported suffix {path.suffix!r} in {path}; use one of {sorted(WRITE_FORMATS)}")
    t = img.detach().to("cpu")
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"save_image expects (3, H, W) or (1, H, W), got shape {tuple(img.shape)}")
    arr = to_uint8(t).permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pil.save(f, format=fmt, **({"quality": int(quality)} if fmt in ("JPEG", "WEBP") else {}))
    return path
