"""Training data: sources of samples (:mod:`.sources`), the sample format, mixed batches,
transforms, synthetic degradations and LR folder preparation."""
