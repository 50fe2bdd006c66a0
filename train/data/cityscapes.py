"""Cityscapes reader: fine annotations mapped from labelIds to the 19 trainIds.

Layout (cityscapesScripts README, "Dataset Structure")::

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Label convention: the ``*_gtFine_labelIds.png`` files hold the Cityscapes label ids 0..33; the
19 evaluated classes get trainIds 0..18 and every other id (void classes, and the classes with
``ignoreInEval`` such as parking, guard rail, caravan) becomes 255. The table below is
cityscapesScripts' ``cityscapesscripts/helpers/labels.py`` (name, id, trainId), copied so that
training does not depend on that package at run time; the test suite checks it against the
installed package id by id. ``Sample.semantic`` holds trainIds, ``Sample.ood`` is None.
"""

import numpy as np

from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX
from dense_ood_ros.datasets.sample import (cityscapes_layout, FileDataset, read_labelled,
                                           Sample)

DATASET = 'Cityscapes'
SPLITS = ('train', 'val', 'test')
IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_SUFFIX = '_gtFine_labelIds.png'

# (name, labelId, trainId) per cityscapesScripts' helpers/labels.py; -1 and 255 mean "not
# trained". License plate has id -1: it never appears in labelId images.
LABELS = (
    ('unlabeled', 0, 255), ('ego vehicle', 1, 255), ('rectification border', 2, 255),
    ('out of roi', 3, 255), ('static', 4, 255), ('dynamic', 5, 255), ('ground', 6, 255),
    ('road', 7, 0), ('sidewalk', 8, 1), ('parking', 9, 255), ('rail track', 10, 255),
    ('building', 11, 2), ('wall', 12, 3), ('fence', 13, 4), ('guard rail', 14, 255),
    ('bridge', 15, 255), ('tunnel', 16, 255), ('pole', 17, 5), ('polegroup', 18, 255),
    ('traffic light', 19, 6), ('traffic sign', 20, 7), ('vegetation', 21, 8),
    ('terrain', 22, 9), ('sky', 23, 10), ('person', 24, 11), ('rider', 25, 12),
    ('car', 26, 13), ('truck', 27, 14), ('bus', 28, 15), ('caravan', 29, 255),
    ('trailer', 30, 255), ('train', 31, 16), ('motorcycle', 32, 17), ('bicycle', 33, 18),
    ('license plate', -1, -1),
)


def _build_lut():
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for _, label_id, train_id in LABELS:
        if label_id >= 0 and 0 <= train_id < IGNORE_INDEX:
            lut[label_id] = train_id
    return lut


LABEL_ID_TO_TRAIN_ID = _build_lut()
LABEL_ID_TO_TRAIN_ID.flags.writeable = False


def label_ids_to_train_ids(label_ids):
    """Map a Cityscapes labelId image (uint8) to trainIds, 255 where not trained."""
    return LABEL_ID_TO_TRAIN_ID[label_ids]


class CityscapesDataset(FileDataset):
    """Cityscapes fine annotations as trainIds; samples sorted by city, then file name."""

    num_classes = len(CITYSCAPES_CLASSES)
    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, root, split, *, limit=None):
        if split not in SPLITS:
            raise ValueError(f'{DATASET}: unknown split {split!r}; expected one of {SPLITS}')
        super().__init__(cityscapes_layout(
            root, split, label_dir='gtFine', image_suffix=IMAGE_SUFFIX,
            label_suffix=LABEL_SUFFIX, dataset=DATASET, limit=limit))
        self.root, self.split = root, split

    def load(self, item):
        """Read one image and its labelIds, mapped to trainIds."""
        image_path, label_path = item
        image, label_ids = read_labelled(image_path, label_path)
        name = image_path.name[:-len(IMAGE_SUFFIX)]
        return Sample(name=name, image=image, semantic=label_ids_to_train_ids(label_ids))
