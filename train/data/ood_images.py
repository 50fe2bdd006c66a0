"""Image-wide outlier test sets of Table 1: SVHN (.mat) and image folders (LSUN, TinyImageNet).

SVHN's cropped-digit release (http://ufldl.stanford.edu/housenumbers/) ships ``test_32x32.mat``
with ``X`` of shape (32, 32, 3, N) uint8 RGB and ``y`` (N, 1) labels (unused here). The resized
LSUN and TinyImageNet sets are those of ODIN's release (Liang et al. 2018:
``LSUN_resize.tar.gz``, ``Imagenet_resize.tar.gz``): folders of 32x32 JPEGs, nested one or two
levels deep; any folder tree of images is accepted.
"""

import os

import cv2
import numpy as np

from dense_ood_ros.datasets.sample import read_rgb

SVHN_FILE = 'test_32x32.mat'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.webp')


def read_svhn(path, *, limit=None):
    """Return SVHN images (N, 32, 32, 3) uint8 RGB from ``test_32x32.mat`` or its folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, SVHN_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'SVHN: missing {path}; expected {SVHN_FILE} of the cropped-'
                                'digits release (http://ufldl.stanford.edu/housenumbers/)')
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError('reading SVHN .mat files needs scipy (pip install scipy)') from None
    try:
        mat = loadmat(path, variable_names=['X'])
    except (ValueError, OSError, TypeError) as error:
        raise ValueError(f'SVHN: {path} is not a readable .mat file ({error})') from None
    images = mat.get('X')
    if images is None or images.ndim != 4 or images.shape[2] != 3:
        raise ValueError(f'SVHN: {path} has no X of shape (H, W, 3, N)')
    images = np.ascontiguousarray(images.transpose(3, 0, 1, 2)[:limit])
    return images.astype(np.uint8, copy=False)


def image_files(root):
    """Return the sorted paths of every image file under ``root`` (recursively)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f'image folder {root} does not exist')
    found = []
    for folder, _, names in os.walk(root):
        found.extend(os.path.join(folder, name) for name in names
                     if name.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
        raise FileNotFoundError(f'no image files ({", ".join(IMAGE_EXTENSIONS)}) under {root}')
    return sorted(found)


def read_image_folder(root, *, side=32, limit=None):
    """Return every image under ``root`` as (N, side, side, 3) uint8 RGB.

    ODIN's resized sets are 32x32 already; anything else is resized with INTER_AREA so that
    a folder of larger images still gives the classifier its input size.
    """
    paths = image_files(root)[:limit]
    images = np.empty((len(paths), side, side, 3), np.uint8)
    for index, path in enumerate(paths):
        image = read_rgb(path)
        if image.shape[:2] != (side, side):
            image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        images[index] = image
    return images


def read_ood_set(name, path, *, limit=None):
    """Return the images of an outlier set: SVHN's .mat when ``name`` or ``path`` says so.

    ``name`` starting with 'svhn' or ``path`` ending in '.mat' reads :data:`SVHN_FILE`;
    everything else is an image folder.
    """
    if name.lower().startswith('svhn') or os.fspath(path).endswith('.mat'):
        return read_svhn(path, limit=limit)
    return read_image_folder(path, limit=limit)
