"""Training data: sources of samples (:mod:`.sources`), the sample format, mixed batches,
transforms and LR folder preparation (degradations: :mod:`sr_adapt.degradation`)."""
