"""sr_adapt: super-resolution training and LR-only adaptation to real footage."""

__version__ = "0.1.0"
