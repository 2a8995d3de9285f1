"""SAR rasters -> normalised patches -> train/val split and nested subsets, cached on disk."""

from __future__ import annotations

from training.cache import cache_root
from training.data.dataset import PreparedData, SplitData, describe_split, load_data, nested_subset, prepare, split
from training.data.readers import read_raster
from training.data.synthetic import speckled_scene, synthetic_dir

__all__ = [
    "PreparedData", "SplitData", "cache_root", "describe_split", "load_data", "nested_subset", "prepare",
    "read_raster", "speckled_scene", "split", "synthetic_dir",
]
