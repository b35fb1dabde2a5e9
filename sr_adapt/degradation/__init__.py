"""Degradations HR -> LR: kernels, the synthetic targets of the benchmark, the record file
(``degradation.pt``) and its estimation from LR-only images (:mod:`.estimate`)."""

from sr_adapt.degradation.kernels import apply_kernel, gaussian_kernel, kernel_moments
from sr_adapt.degradation.record import DegradationRecord, load_degradation
from sr_adapt.degradation.synthetic import Degradation

__all__ = ["Degradation", "DegradationRecord", "apply_kernel", "gaussian_kernel", "kernel_moments",
           "load_degradation"]
