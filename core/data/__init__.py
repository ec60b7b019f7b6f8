"""Datasets: bundled sets, MNIST IDX folders, .npz, .csv and synthetic sets, behind one
registry keyed by name. Bad input raises `DatasetError` naming the dataset and path."""
from .dataset import Dataset, DatasetError  # noqa: F401
from .registry import DATASETS, DATASET_SPECS, dataset_names, load_dataset  # noqa: F401
from . import files, synthetic  # noqa: F401  (fill the registry)
