"""A synthetic split written to disk in the Fishyscapes Lost & Found layout."""

import pathlib
import shutil
import tempfile

import cv2

from dense_ood_ros.atomic_file import replace_dir
from train.data.synthetic.dataset import SyntheticStreetWorld

LF_DIRS = ('images', 'labels_masks', 'semantic')


def _write_png(path, array):
    if not cv2.imwrite(str(path), array):
        raise OSError(f'could not write {path}')


def write_lf_layout(root, *, num_images, height=256, width=512, seed=0, split='test'):
    """Write a split in the Fishyscapes Lost & Found layout and return the root path.

    ``root/images/synthetic_NNNN.png`` (RGB), ``root/labels_masks/`` (0 road, 1 anomaly,
    255 void) and ``root/semantic/`` (trainIds, 255 void). Each directory is written into a
    temporary sibling and renamed into place, so readers never see a partial directory.
    """
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    world = SyntheticStreetWorld(split, num_images=num_images, height=height, width=width,
                                 seed=seed)
    digits = max(4, len(str(max(num_images - 1, 0))))
    temp = {}
    try:
        for name in LF_DIRS:
            temp[name] = pathlib.Path(tempfile.mkdtemp(prefix=f'.{name}.', dir=root))
            temp[name].chmod(0o755)
        for i in range(num_images):
            sample = world[i]
            file = f'synthetic_{i:0{digits}d}.png'
            _write_png(temp['images'] / file, cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
            _write_png(temp['labels_masks'] / file, sample.ood)
            _write_png(temp['semantic'] / file, sample.semantic)
        for name in LF_DIRS:
            replace_dir(temp[name], root / name)
    finally:
        for path in temp.values():
            shutil.rmtree(path, ignore_errors=True)
    return root
