"""Data: the dataset model, its Arrow cache, specs of datasets and benchmarks, and a
benchmark prepared as tensors on a device (train set, evaluated parts)."""
