"""What every training source shares: config keys in messages, problem reports, seeding, skip_bad.

A *source* is a ``torch.utils.data.Dataset`` of training samples (:mod:`sr_adapt.data.samples`)
built from user files. Its settings live under one config key (``data.train_sources.<name>``,
passed by the datamodule), and every message it raises names that key, the offending file and
the fix.

Problems found at construction (header reads only: unreadable files, missing LR files, sizes)
are collected and reported at once by :meth:`Source.report_problems`: a :class:`DataError`
listing them, or, with ``skip_bad=true``, one warning and the bad inputs dropped. Inputs that
fail later (while decoding) go through :meth:`Source.drop_item`, which raises or, with
``skip_bad``, remembers the item as bad in this process and counts it in ``skipped``.

Randomness: :meth:`Source.draw` takes the ``random.Random`` a sample is drawn from. Training
batches (:class:`sr_adapt.data.mixed.MixedBatchDataset`) pass a stream derived from the run's seed
and the batch number, so the samples of a run do not depend on workers and a resumed run draws
what an uninterrupted one would. ``source[i]`` uses :meth:`Source.rng`: with an integer ``seed``
sample ``i`` is a fixed function of ``(seed, i)`` (tests, fixed patches); with ``seed=None`` a
stream seeded by ``(torch.initial_seed(), worker id, index, draw counter)``.

Sources hold paths and small metadata (plus decoded arrays with ``cache=True``), so they pickle
for ``spawn`` workers.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from sr_adapt.degradation import DegradationRecord, load_degradation
from sr_adapt.errors import DataError
from sr_adapt.io.atomic import show_path
from sr_adapt.io.images import image_size, load_image_array

__all__ = ["Problem", "Source", "FolderSource", "listing", "target_degradation", "wh"]

logger = logging.getLogger(__name__)

MAX_LISTED = 5  # file names quoted per problem kind in messages
MAX_RETRIES = 20  # replacement draws per sample with skip_bad before giving up


class Problem(NamedTuple):
    """One unusable input found at construction."""

    item: Any  # what becomes unusable (a path)
    kind: str  # key of the source's fix table
    text: str  # one line naming the file(s)


def listing(items: Sequence[str]) -> str:
    """Bullet lines for a message, at most :data:`MAX_LISTED` of them."""
    lines = [f"  - {s}" for s in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"  ... and {len(items) - MAX_LISTED} more")
    return "\n".join(lines)


def wh(size: tuple[int, int]) -> str:
    """``(H, W)`` as ``WxH`` text, the way image viewers show sizes."""
    return f"{size[1]}x{size[0]}"


def target_degradation(degradation: Any, key: str, scale: int, what: str) -> DegradationRecord:
    """The target degradation a source degrades with: a record (checked) or a ``degradation.pt`` path
    (loaded, checked); None is a :class:`DataError` naming ``key`` and ``what`` needs it."""
    if degradation is None:
        raise DataError(f"{key} is null: {what} need the target degradation (a degradation.pt from an estimate; the "
                        "training task estimates one when degradation_file=null and LR-only data is given)")
    if isinstance(degradation, DegradationRecord):
        degradation.check(key, scale)
        return degradation
    return load_degradation(degradation, key, scale)


class Source(Dataset):
    """Base of the training sources.

    Args:
        config_key: prefix of this source's settings, used in messages (the datamodule passes
            ``data.train_sources.<name>``); default: the class name.
        skip_bad: drop unusable inputs with a warning instead of raising.
        seed: None (training) or an int (reproducible samples).
        patch_size_key: the setting of the HR patch size, shared by every source.
    """

    paired = True  # HR targets present; LR-only sources (video frames, LR folders) set False

    def __init__(
        self, config_key: str | None = None, skip_bad: bool = False, seed: int | None = None,
        patch_size_key: str = "data.patch_size",
    ) -> None:
        self.config_key = config_key or type(self).__name__
        self.patch_size_key = patch_size_key
        self.skip_bad = bool(skip_bad)
        self.seed = seed
        self.skipped = 0  # per process: each DataLoader worker counts its own
        self.bad: set[int] = set()
        self._draws = 0

    # ---- settings ----

    def key(self, name: str) -> str:
        """The full config key of setting ``name``."""
        return f"{self.config_key}.{name}"

    def check_int(self, name: str, value: Any, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{self.key(name)}: must be an integer >= {low}, got {value!r}.")
        return int(value)

    def check_float(self, name: str, value: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v) or v < 0:
            raise DataError(f"{self.key(name)}: must be a number >= 0, got {value!r}.")
        return v

    def check_scale_patch(self, scale: int, patch_size: int, lr_factors: Sequence[int] | None = None) -> None:
        """An integer scale >= 2 and an HR patch that every LR level divides; sets ``self.factors``, the
        downscale factors of the LR levels a sample carries (``lr_factors``, the trained network's
        :meth:`~sr_adapt.models.base.SRModel.lr_level_factors`; default ``[scale]``)."""
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise DataError(f"{self.config_key}: the scale is an integer >= 2 (2, 3, 4, 8), got scale={scale!r}.")
        factors = [scale] if lr_factors is None else [int(f) for f in lr_factors]
        if factors[0] != scale or any(scale % f for f in factors):
            raise DataError(f"{self.config_key}: LR level factors {factors} do not fit scale {scale} (the first is the "
                            "scale, every one divides it)")
        self.factors = factors
        if not isinstance(patch_size, int) or patch_size < scale or patch_size % scale:
            hint = max(scale, patch_size // scale * scale) if isinstance(patch_size, int) else 48 * scale
            raise DataError(
                f"{self.patch_size_key}: the HR patch size {patch_size!r} must be a positive multiple "
                f"of the scale {scale} so every LR level gets a whole-pixel patch; "
                f"set {self.patch_size_key} to e.g. {hint} ({self.config_key})."
            )

    # ---- problems ----

    def report_problems(
        self, problems: Sequence[Problem], total: int, where: str, fixes: Mapping[str, str], what: str = "images",
        **fmt: Any,
    ) -> set[Any]:
        """Raise one :class:`DataError` for construction-time ``problems`` (or, with skip_bad, warn).

        ``fixes`` maps each problem kind to a header with advice; ``{k}`` in it is the config key,
        ``{patch_key}`` the patch size key, other fields come from ``fmt``. Returns the dropped items.
        """
        if not problems:
            return set()
        dropped = {p.item for p in problems}
        parts = [f"{self.config_key}: {len(dropped)} of {total} {what} in {where} cannot be used."]
        for kind, header in fixes.items():
            texts = [p.text for p in problems if p.kind == kind]
            if texts:
                parts.append(f"{header.format(k=self.config_key, patch_key=self.patch_size_key, **fmt)}, {len(texts)}:")
                parts.append(listing(texts))
        if not self.skip_bad:
            parts.append(f"Or set {self.key('skip_bad')}=true to drop unusable {what} with a warning.")
            raise DataError("\n".join(parts))
        if len(dropped) >= total:
            raise DataError("\n".join([*parts, f"No usable {what[:-1] if what.endswith('s') else what} is left; fix the inputs above."]))
        logger.warning("%s\nDropped %d (%s=true).", "\n".join(parts), len(dropped), self.key("skip_bad"))
        return dropped

    def drop_item(self, item: int, message: str) -> None:
        """An input failed while sampling: raise, or (skip_bad) mark it bad in this process and warn."""
        if not self.skip_bad:
            raise DataError(f"{message} Or set {self.key('skip_bad')}=true to skip it with a warning.")
        self.bad.add(item)
        self.skipped += 1
        logger.warning("%s Skipping it in this process (%s=true).", message, self.key("skip_bad"))

    def pick(self, rng: random.Random, n_items: int, weights: Sequence[float] | None = None) -> int:
        """A random item that is not known bad (weighted when ``weights`` is given)."""
        good = [i for i in range(n_items) if i not in self.bad]
        if not good:
            raise DataError(f"{self.config_key}: every input failed to load in this process; see the warnings above.")
        if weights is None:
            return rng.choice(good)
        return rng.choices(good, weights=[weights[i] for i in good])[0]

    # ---- randomness ----

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.draw(index, self.rng(index))

    def draw(self, index: int, rng: random.Random) -> dict[str, Any]:
        """Sample ``index`` drawn from ``rng`` (training batches pass a stream of their own, see
        :class:`sr_adapt.data.mixed.MixedBatchDataset`)."""
        raise NotImplementedError

    def rng(self, index: int) -> random.Random:
        """The random stream of one sample (see the module docstring)."""
        if self.seed is not None:
            return random.Random(f"{self.seed}:{index}")  # str seeds hash stably across processes
        info = get_worker_info()
        worker = info.id if info is not None else 0
        self._draws += 1
        return random.Random(f"{torch.initial_seed()}:{worker}:{index}:{self._draws}")


_FILE_FIXES = {
    "unreadable": "Unreadable images (replace or delete them)",
    "small": "Images smaller than the patch size {patch} (lower {patch_key} or remove them)",
}


class FolderSource(Source):
    """A source whose items are image files: header checks, optional decode cache, skip_bad retries.

    Subclasses fill ``self.files`` (through :meth:`prepare_files` or their own checks) and
    implement :meth:`make_sample`. ``len`` is the number of files times ``repeat``.
    """

    def __init__(
        self, config_key: str | None = None, skip_bad: bool = False, seed: int | None = None, repeat: int = 1,
        patch_size_key: str = "data.patch_size",
    ) -> None:
        super().__init__(config_key, skip_bad, seed, patch_size_key)
        self.repeat = self.check_int("repeat", repeat, 1)
        self.files: list[Path] = []
        self.cache: list[Any] | None = None

    def prepare_files(
        self, files: list[Path], folder: Path, too_small: Callable[[int, int], str | None], cache: bool, **fmt: Any
    ) -> None:
        """Header-reads ``files`` and keeps the usable ones in ``self.files``; with ``cache`` decodes them.

        ``too_small(h, w)`` returns why an image is too small (text after "is WxH (WxH), ") or None.
        """
        problems: list[Problem] = []
        for f in files:
            try:
                h, w = image_size(f)
            except DataError as e:
                problems.append(Problem(f, "unreadable", str(e)))
                continue
            text = too_small(h, w)
            if text:
                problems.append(Problem(f, "small", f"{f} is {wh((h, w))} (WxH), {text}"))
        dropped = self.report_problems(problems, len(files), show_path(folder), _FILE_FIXES, **fmt)
        self.files = [f for f in files if f not in dropped]
        if cache:
            self.fill_cache(lambda i: load_image_array(self.files[i]), folder)

    def fill_cache(self, decode: Callable[[int], Any], folder: Path) -> None:
        """``decode(item)`` for every item now (in the main process, so ``fork`` workers share
        the cache); meant for small sets."""
        decoded: dict[Path, Any] = {}
        problems = []
        for i, f in enumerate(self.files):
            try:
                decoded[f] = decode(i)
            except DataError as e:
                problems.append(Problem(f, "unreadable", str(e)))
        dropped = self.report_problems(problems, len(self.files), show_path(folder), _FILE_FIXES)
        self.keep([i for i, f in enumerate(self.files) if f not in dropped])
        self.cache = [decoded[f] for f in self.files]

    def keep(self, indices: Iterable[int]) -> None:
        """Restrict the items to ``indices`` (subclasses with per-file lists extend this)."""
        self.files = [self.files[i] for i in indices]

    def array(self, item: int) -> np.ndarray:
        """The decoded ``(H, W, 3)`` array of file ``item`` (from the cache when there is one)."""
        return self.cache[item] if self.cache is not None else load_image_array(self.files[item])

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def make_sample(self, item: int, rng: random.Random) -> dict[str, Any]:
        raise NotImplementedError

    def draw(self, index: int, rng: random.Random) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of length {len(self)}")
        item = index % len(self.files)
        for _ in range(MAX_RETRIES):
            if item not in self.bad:  # known-bad files (skip_bad) are not decoded again
                try:
                    return self.make_sample(item, rng)
                except DataError as e:
                    self.drop_item(item, f"{self.config_key}: {e}")
            else:
                self.skipped += 1
            item = self.pick(rng, len(self.files))
        raise DataError(f"{self.config_key}: {MAX_RETRIES} images in a row failed to load; check the data folder.")
