"""StreetHazards reader (Hendrycks et al., "A Benchmark for Anomaly Segmentation").

Layout, as the two archives streethazards_train.tar and streethazards_test.tar unpack into one
root (paths from create_dataset.py in github.com/hendrycks/anomaly-seg)::

    root/train/images/training/<town>/<n>.png     root/train/annotations/training/<town>/<n>.png
    root/train/images/validation/<town>/<n>.png   root/train/annotations/validation/<town>/...
    root/test/images/test/<town>/<n>.png          root/test/annotations/test/<town>/<n>.png

Label convention: annotations are single-channel PNGs of 1-based class ids. The benchmark's own
loader subtracts one (``segm_transform`` in anomaly-seg's dataset.py: ``np.array(segm) - 1``),
giving 0 unlabeled, 1 building, 2 fence, 3 other, 4 pedestrian, 5 pole, 6 road line, 7 road,
8 sidewalk, 9 vegetation, 10 car, 11 wall, 12 traffic sign, 13 anomaly (the colour table in
create_dataset.py), and its evaluation treats exactly class 13 as out-of-distribution
(``out_label=13`` in anom_utils.py; every other pixel is an inlier). So on disk 1..13 are the
13 known classes and 14 is the anomaly; 0 would become -1, the loss's ignore index.

This reader maps that onto our conventions:

- ``semantic``: StreetHazards' OWN 13-class space (:data:`CLASS_NAMES`, ids 0..12 = file value
  minus one), not Cityscapes trainIds; anomaly and file value 0 become 255. The dataset object
  exposes ``num_classes`` (13), ``class_names`` and ``palette`` (the benchmark's colours) so
  training builds a 13-way classifier.
- ``ood``: 1 on the anomaly (file value 14), 0 on every other value, as in the official
  evaluation: anomaly-seg's eval_ood.py splits pixels by ``seg_label == 13`` alone and passes
  no mask (``mask = None``), so "unlabeled" (file value 1) and a file value 0, should one
  occur (it would become -1 there), both count as inliers. Whether the released test
  annotations hold any 0 could not be checked here (no data on this machine); the mapping
  matches the benchmark either way.

Note: the same group's later DenseHybrid code (github.com/matejgrcic/DenseHybrid,
streethazards_test.py) instead ignores class "other" in both labels; we follow the benchmark's
own code.
"""

import numpy as np

from dense_ood_ros.datasets.sample import (apply_limit, FileDataset, INLIER, natural_key,
                                           OUTLIER, pair_files, read_labelled, require_dirs,
                                           Sample)
from dense_ood_ros.labels import IGNORE_INDEX

DATASET = 'StreetHazards'
CLASS_NAMES = ('unlabeled', 'building', 'fence', 'other', 'pedestrian', 'pole', 'road line',
               'road', 'sidewalk', 'vegetation', 'car', 'wall', 'traffic sign')
# Colours of the classes above, from the StreetHazards colour table in anomaly-seg's
# create_dataset.py (the anomaly is drawn in (60, 250, 240) there).
PALETTE = ((0, 0, 0), (70, 70, 70), (190, 153, 153), (250, 170, 160), (220, 20, 60),
           (153, 153, 153), (157, 234, 50), (128, 64, 128), (244, 35, 232), (107, 142, 35),
           (0, 0, 142), (102, 102, 156), (220, 220, 0))
ANOMALY_FILE_VALUE = len(CLASS_NAMES) + 1  # 14 on disk, class 13 after the benchmark's "- 1"

# split -> (archive directory, split directory inside images/ and annotations/)
_SPLIT_DIRS = {'train': ('train', 'training'), 'val': ('train', 'validation'),
               'test': ('test', 'test')}
_ALIASES = {'training': 'train', 'validation': 'val'}


def _build_luts():
    semantic = np.full(256, IGNORE_INDEX, np.uint8)
    # The benchmark has no void in its OOD labels: everything but the anomaly is an inlier.
    ood = np.full(256, INLIER, np.uint8)
    for class_id in range(len(CLASS_NAMES)):
        semantic[class_id + 1] = class_id
    ood[ANOMALY_FILE_VALUE] = OUTLIER
    semantic.flags.writeable = ood.flags.writeable = False
    return semantic, ood


FILE_TO_SEMANTIC, FILE_TO_OOD = _build_luts()


class StreetHazardsDataset(FileDataset):
    """StreetHazards in its own 13-class space with the anomaly as ``ood == 1``.

    ``split`` is 'train' / 'val' / 'test' ('training' and 'validation' are accepted too).
    Samples are sorted by town, then numerically by file name.
    """

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = PALETTE

    def __init__(self, root, split, *, limit=None):
        split = _ALIASES.get(split, split)
        if split not in _SPLIT_DIRS:
            raise ValueError(f'{DATASET}: unknown split {split!r}; expected one of '
                             f'{tuple(_SPLIT_DIRS)}')
        archive, sub = _SPLIT_DIRS[split]
        image_dir, label_dir = require_dirs(root, f'{archive}/images/{sub}',
                                            f'{archive}/annotations/{sub}', dataset=DATASET)
        images = sorted(image_dir.rglob('*.png'),
                        key=lambda p: natural_key(p.relative_to(image_dir)))
        pairs = pair_files(images, label_dir.rglob('*.png'),
                           lambda p: label_dir / p.relative_to(image_dir), dataset=DATASET)
        # Names join town and file ('t5_300'): file names repeat across towns, and a name
        # without '/' can be used as an output file name as is.
        items = [('_'.join(img.relative_to(image_dir).with_suffix('').parts), img, lbl)
                 for img, lbl in pairs]
        super().__init__(apply_limit(items, limit, dataset=DATASET, root=root, split=split))
        self.root, self.split = root, split

    def load(self, item):
        """Read one image and map its annotation to the 13-class and ood labels."""
        name, image_path, label_path = item
        image, values = read_labelled(image_path, label_path)
        return Sample(name=name, image=image, semantic=FILE_TO_SEMANTIC[values],
                      ood=FILE_TO_OOD[values])
