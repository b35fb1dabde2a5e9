"""Degradations HR -> LR: kernels and free-form kernel families, the chain of stages, the synthetic
targets of the benchmark, the record file (``degradation.pt``), the input correction, and the estimates
from LR-only images (:mod:`.estimate`, :mod:`.kernel_net`; the KernelGAN-style peer, :mod:`.kernelgan`)."""

from sr_adapt.degradation.kernels import apply_kernel, gaussian_kernel, kernel_moments
from sr_adapt.degradation.record import DegradationRecord, load_degradation
from sr_adapt.degradation.synthetic import Degradation

__all__ = ["Degradation", "DegradationRecord", "apply_kernel", "gaussian_kernel", "kernel_moments",
           "load_degradation"]
