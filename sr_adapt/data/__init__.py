"""Image loading, transforms and folder datasets (HR/LR pairs, DRN LR pyramids)."""

from sr_adapt.data.errors import DataError
from sr_adapt.data.image_io import IMAGE_EXTENSIONS, image_size, list_images, load_image, save_image
from sr_adapt.data.paired import BenchmarkFolderDataset, HRFolderDataset, PairedFolderDataset
from sr_adapt.data.transforms import lr_pyramid, mod_crop, random_flip_transpose

__all__ = [
    "DataError",
    "IMAGE_EXTENSIONS",
    "list_images",
    "load_image",
    "image_size",
    "save_image",
    "mod_crop",
    "random_flip_transpose",
    "lr_pyramid",
    "PairedFolderDataset",
    "HRFolderDataset",
    "BenchmarkFolderDataset",
]
