"""Data sets: scikit-learn's bundled digits and users' image folders, both as tensors in [-1, 1]."""

from slimfusion.data.digits import load_digits_split
from slimfusion.data.folder import load_image_folder
from slimfusion.data.registry import load_images

__all__ = ["load_digits_split", "load_image_folder", "load_images"]
