"""Tiny stand-ins for CIFAR-10, SVHN and ODIN's resized sets, written in their real formats."""

import contextlib
import pickle

import cv2
import numpy as np
import torch
from scipy.io import savemat

from train.data.cifar import SPLIT_FILES


@contextlib.contextmanager
def single_thread():
    """Run the block on one torch thread, then restore the setting.

    On a 2-core machine that something else keeps busy, OpenMP's spinning workers make each
    tiny operator wait for a time slice (100x slower here); one thread never waits.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def class_images(labels, *, seed=0, side=32):
    """Return (N, side, side, 3) uint8 RGB images whose mean colour depends on the class."""
    rng = np.random.default_rng(seed)
    base = (np.asarray(labels)[:, None] * 25 + np.array([0, 40, 80])) % 256
    noise = rng.integers(-20, 21, (len(labels), side, side, 3))
    return np.clip(base[:, None, None, :] + noise, 0, 255).astype(np.uint8)


def write_cifar(root, *, per_batch=8, test_images=16, seed=0):
    """Write cifar-10-batches-py/ under `root` as the python release lays it out.

    Each batch is a pickled dict with b'data' (N, 3072) uint8, planes R, G, B, rows first,
    and b'labels' a list of ints; returns {file name: (images NHWC, labels)}.
    """
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [*SPLIT_FILES['train'], *SPLIT_FILES['test']]
    for index, name in enumerate(names):
        count = test_images if name == 'test_batch' else per_batch
        labels = [(index + i) % 10 for i in range(count)]
        images = class_images(labels, seed=seed + index)
        data = images.transpose(0, 3, 1, 2).reshape(count, -1)
        with open(folder / name, 'wb') as stream:
            pickle.dump({b'batch_label': name.encode(), b'labels': labels, b'data': data,
                         b'filenames': [f'{i}.png'.encode() for i in range(count)]},
                        stream, protocol=2)
        written[name] = (images, np.asarray(labels))
    return written


def write_svhn(folder, *, count=12, seed=1):
    """Write ``test_32x32.mat`` (X: 32x32x3xN uint8, y: Nx1) into `folder`; return NHWC."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    savemat(folder / 'test_32x32.mat', {'X': images.transpose(1, 2, 3, 0),
                                        'y': np.arange(1, count + 1).reshape(-1, 1) % 10 + 1})
    return images


def write_image_folder(folder, *, count=10, seed=2, nested=True):
    """Write 32x32 JPEGs as ODIN's LSUN_resize/<class>/ (nested) or flat layout."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        target = folder / (f'class{index % 2}' if nested else '')
        target.mkdir(parents=True, exist_ok=True)
        path = target / f'{index:04d}.jpg'
        cv2.imwrite(str(path), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        paths.append(path)
    return paths
