"""The sample every dataset reader returns, and the file checks all readers share.

Every reader yields :class:`Sample` in one convention, whatever its dataset stores on disk:
``image`` uint8 HxWx3 RGB; ``semantic`` uint8 HxW class ids with 255 ignored (Cityscapes
trainIds unless the reader documents its own class list); ``ood`` uint8 HxW with 0 inlier,
1 outlier and 255 void (the Fishyscapes Lost & Found convention). A reader without that kind of
ground truth sets the field to None.
"""

import dataclasses
import operator
import pathlib
import re

import cv2
import numpy as np

# ood labels: inlier and outlier; everything else is IGNORE_INDEX (void), as in training.
INLIER, OUTLIER = 0, 1


@dataclasses.dataclass
class Sample:
    """One image with its labels; ``semantic`` and ``ood`` are None where a dataset has none."""

    name: str
    image: np.ndarray
    semantic: np.ndarray | None = None
    ood: np.ndarray | None = None


def read_image(path, flags=cv2.IMREAD_UNCHANGED):
    """Return ``cv2.imread(path, flags)``, raising instead of returning None.

    OpenCV reports a missing or undecodable file by returning None, which would only surface
    later as a confusing error far from the file; this names the file at the point of failure.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'image file not found: {path}')
    array = cv2.imread(str(path), flags)
    if array is None:
        raise ValueError(f'could not decode image file: {path}')
    return array


def read_rgb(path):
    """Return an image file as uint8 HxWx3 RGB (alpha dropped, grey expanded)."""
    bgr = read_image(path, cv2.IMREAD_COLOR)
    if bgr.dtype != np.uint8:
        raise ValueError(f'expected an 8-bit image, got {bgr.dtype}: {path}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path):
    """Return a single-channel 8-bit label PNG as uint8 HxW, values untouched.

    A colour or 16-bit file is rejected rather than converted: converting would silently turn
    a colour visualisation or a palette image into meaningless ids.
    """
    label = read_image(path, cv2.IMREAD_UNCHANGED)
    if label.ndim != 2:
        raise ValueError(f'expected a single-channel label image, got shape {label.shape} '
                         f'(a colour or palette PNG?): {path}')
    if label.dtype != np.uint8:
        raise ValueError(f'expected an 8-bit label image, got {label.dtype}: {path}')
    return label


def check_same_size(image, label, image_path, label_path):
    """Raise ValueError naming both files when a label does not cover its image pixel for pixel."""
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f'label {label_path} is {label.shape[1]}x{label.shape[0]} but image '
                         f'{image_path} is {image.shape[1]}x{image.shape[0]}')


def read_labelled(image_path, label_path):
    """Return (RGB image, single-channel label) of one pair, checked to cover each other."""
    image, label = read_rgb(image_path), read_label(label_path)
    check_same_size(image, label, image_path, label_path)
    return image, label


def require_dirs(root, *relative, dataset):
    """Return ``root / r`` for each ``r``, raising FileNotFoundError for the first missing one.

    The message names the dataset, its root and the directory, because "No such file" from deep
    inside a glob tells the user neither which dataset nor which part of its layout is wrong.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'{dataset}: dataset root {root} is not a directory')
    dirs = []
    for rel in relative:
        path = root / rel
        if not path.is_dir():
            raise FileNotFoundError(f'{dataset}: directory {rel!s} missing under root {root} '
                                    f'(looked for {path})')
        dirs.append(path)
    return tuple(dirs)


def pair_files(images, labels, label_for, *, dataset):
    """Pair each image with its label file; every label file must belong to an image.

    ``images`` are image paths in the order the reader wants, ``labels`` every label file found,
    ``label_for(image) -> path`` the label path the layout prescribes. Returns
    ``[(image, label), ...]``. A one-sided file raises ValueError naming it, since a silently
    dropped image (or label) would change a benchmark without anyone noticing.
    """
    remaining = {pathlib.Path(p) for p in labels}
    pairs = []
    for image in images:
        label = pathlib.Path(label_for(image))
        if label not in remaining:
            raise ValueError(f'{dataset}: image {image} has no label file (expected {label})')
        remaining.discard(label)
        pairs.append((pathlib.Path(image), label))
    if remaining:
        orphan = sorted(remaining)[0]
        raise ValueError(f'{dataset}: label file {orphan} has no image '
                         f'({len(remaining)} label file(s) without an image)')
    return pairs


def apply_limit(items, limit, *, dataset, root, split):
    """Return the first ``limit`` items (all for None); refuse an empty dataset.

    An empty listing is almost always a wrong root or split, so it is an error, never a dataset
    of length 0 that a training loop would spin on or an evaluation would average over.
    """
    items = list(items)
    if not items:
        raise ValueError(f'{dataset}: root {root} holds no images for split {split!r}')
    if limit is None:
        return items
    limit = operator.index(limit)
    if limit < 1:
        raise ValueError(f'{dataset}: limit must be a positive integer or None, got {limit}')
    return items[:limit]


def cityscapes_layout(root, split, *, label_dir, image_suffix, label_suffix, dataset,
                      order=None, limit=None):
    """Return the (image, label) path pairs of ``leftImg8bit/<split>/<city>/`` + labels.

    Cityscapes (``gtFine``) and the original Lost & Found (``gtCoarse``, which copies
    Cityscapes' layout) share it: label ``<label_dir>/<split>/<city>/<stem><label_suffix>``
    belongs to image ``leftImg8bit/<split>/<city>/<stem><image_suffix>``. ``order(image_dir,
    path)`` is the sort key (default: natural order of city, then file name).
    """
    image_dir, labels = require_dirs(root, f'leftImg8bit/{split}', f'{label_dir}/{split}',
                                     dataset=dataset)
    order = order or (lambda base, path: natural_key(path.relative_to(base)))
    images = sorted(image_dir.glob(f'*/*{image_suffix}'), key=lambda p: order(image_dir, p))

    def label_for(image):
        stem = image.name[:-len(image_suffix)]
        return labels / image.parent.name / f'{stem}{label_suffix}'

    pairs = pair_files(images, labels.glob(f'*/*{label_suffix}'), label_for, dataset=dataset)
    return apply_limit(pairs, limit, dataset=dataset, root=root, split=split)


def natural_key(text):
    """Sort key that orders embedded numbers numerically ('t2/10' after 't2/9')."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', str(text))]


class FileDataset:
    """Map-style dataset over a fixed list of items; subclasses implement ``load(item)``."""

    def __init__(self, items):
        self._items = list(items)

    def __len__(self):
        return len(self._items)

    def __getitem__(self, index):
        index = operator.index(index)
        n = len(self._items)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f'index {index} out of range for {n} samples')
        return self.load(self._items[index])

    def load(self, item):
        """Return the :class:`Sample` of one listed item."""
        raise NotImplementedError
