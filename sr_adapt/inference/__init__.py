"""Applying trained models: tiled inference, self-ensemble, image/folder/video upscaling."""
