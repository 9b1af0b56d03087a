"""The digits dataset: scikit-learn's bundled 8x8 handwritten digits (no download).

1797 grey images of the digits 0-9 with pixel values 0..16 (UCI's optdigits
test set as shipped by ``sklearn.datasets.load_digits``). Pixels are mapped to
``[-1, 1]`` (``x / 8 - 1``), images to ``(N, 1, 8, 8)`` float32 tensors. The
train/test split is fixed: a permutation from ``numpy.random.default_rng(0)``,
the first 20% for test.
"""

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Dataset", "digits", "synthetic", "TEST_FRACTION"]

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass
class Dataset:
    x: torch.Tensor              # (N, ...) float32
    y: torch.Tensor = None       # (N,) int64 class labels, or None

    def __len__(self):
        return self.x.shape[0]


def digits():
    """``(train, test)`` :class:`Dataset` of the digits, split the same way every time."""
    from sklearn.datasets import load_digits
    raw = load_digits()
    x = raw.images.astype(np.float32) / 8.0 - 1.0
    y = raw.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_test = int(round(len(y) * TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]

    def make(idx):
        return Dataset(torch.from_numpy(x[idx][:, None]).contiguous(), torch.from_numpy(y[idx]))

    return make(train), make(test)


def synthetic(shape, n, seed=0):
    """``n`` seeded images of ``shape`` (C, H, W) for calibration without a dataset.

    Smooth random fields (white noise blurred at a few scales) normalised per
    channel to mean 0 and standard deviation 1, the statistics of images after
    the usual ImageNet normalisation; no labels. Nothing is downloaded.
    """
    rng = np.random.default_rng(seed)
    c, h, w = shape
    x = np.zeros((n, c, h, w), np.float32)
    for scale in (1, 4, 16):
        coarse = rng.standard_normal((n, c, -(-h // scale), -(-w // scale))).astype(np.float32)
        x += np.repeat(np.repeat(coarse, scale, axis=2), scale, axis=3)[:, :, :h, :w]
    x -= x.mean(axis=(0, 2, 3), keepdims=True)
    x /= x.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return Dataset(torch.from_numpy(x))
