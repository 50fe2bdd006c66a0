"""CIFAR-10 from its python release (``cifar-10-batches-py``), read from local files only.

The release (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) holds pickled dicts
``data_batch_1`` .. ``data_batch_5`` (training, 10000 images each) and ``test_batch``; each
has ``b'data'``, a (N, 3072) uint8 array of 32x32 images stored plane by plane (1024 red,
1024 green, 1024 blue values, rows first), and ``b'labels'``, N class ids in 0..9 in the
order of ``batches.meta``'s ``label_names``.
"""

import os
import pickle

import numpy as np

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')
# The checkpoint format wants one colour per class; these are matplotlib's tab10.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
# Per-channel mean and std of the 50000 training images in [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

FOLDER = 'cifar-10-batches-py'
RELEASE_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
SPLIT_FILES = {
    'train': tuple(f'data_batch_{i}' for i in range(1, 6)),
    'test': ('test_batch',),
}
IMAGE_SIDE = 32

# What the batches may reference: numpy's array reconstruction and nothing else, so that a
# tampered file cannot run code (the release was pickled by numpy under Python 2).
_ALLOWED_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode'),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f'refusing to load {module}.{name}')
        if name == '_reconstruct':
            module = 'numpy._core.multiarray' if hasattr(np, '_core') else module
        return super().find_class(module, name)


def batch_folder(root):
    """Return the folder of the batch files: ``root/cifar-10-batches-py`` or ``root``."""
    root = os.fspath(root)
    nested = os.path.join(root, FOLDER)
    return nested if os.path.isdir(nested) else root


def read_batch(path):
    """Return (images (N, 32, 32, 3) uint8 RGB, labels (N,) int64) of one batch file."""
    with open(path, 'rb') as stream:
        try:
            batch = _ArrayUnpickler(stream, encoding='bytes').load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f'{path} is not a CIFAR-10 python batch: {error}') from None
    if not isinstance(batch, dict) or b'data' not in batch or b'labels' not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (no b'data' and b'labels')")
    data = np.asarray(batch[b'data'], dtype=np.uint8)
    labels = np.asarray(batch[b'labels'], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIDE ** 2 or len(labels) != len(data):
        raise ValueError(f'{path}: expected (N, 3072) data and N labels, got data '
                         f'{data.shape} and {len(labels)} labels')
    if labels.size and not 0 <= labels.min() <= labels.max() < len(CLASSES):
        raise ValueError(f'{path}: labels outside 0..{len(CLASSES) - 1}')
    images = data.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


class Cifar10:
    """CIFAR-10's 'train' (50000) or 'test' (10000) split held in memory.

    ``dataset[i]`` is (image (32, 32, 3) uint8 RGB, class id); ``images`` and ``labels``
    hold the whole split. ``limit`` keeps the first images only. A missing batch file raises
    FileNotFoundError naming every expected file and where the release comes from.
    """

    class_names = CLASSES
    palette = PALETTE

    def __init__(self, root, split='train', *, limit=None):
        if split not in SPLIT_FILES:
            raise ValueError(f'CIFAR-10 split must be one of {sorted(SPLIT_FILES)}, got '
                             f'{split!r}')
        folder = batch_folder(root)
        paths = [os.path.join(folder, name) for name in SPLIT_FILES[split]]
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(
                f'CIFAR-10 {split} split: missing {", ".join(missing)}; expected the python '
                f'release ({RELEASE_URL}) extracted so that {root} or '
                f'{os.path.join(root, FOLDER)} holds {", ".join(SPLIT_FILES[split])}')
        parts = [read_batch(path) for path in paths]
        self.images = np.concatenate([images for images, _ in parts])[:limit]
        self.labels = np.concatenate([labels for _, labels in parts])[:limit]
        self.split = split

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])
