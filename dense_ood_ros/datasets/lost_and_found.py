"""Lost & Found readers: the Fishyscapes L&F masks, and the original Lost & Found release.

:class:`FishyscapesLF` reads Fishyscapes Lost & Found (Blum et al., "The Fishyscapes
Benchmark"): 100 Lost & Found frames with masks made by the Fishyscapes authors, distributed
separately from L&F (fishyscapes_lostandfound.zip in hermannsblum/bdl-benchmark). Mask
convention: 1 anomaly, 0 in-distribution, 255 void; the benchmark scores pixels with
``mask <= 1`` and counts ``mask == 1`` as positive (bdlb/fishyscapes/benchmark.py). Layout, as
commonly unpacked and as ``train.data.synthetic.write_lf_layout`` writes it::

    root/images/<name>.png  root/labels_masks/<name>.png  [root/semantic/<name>.png]

``semantic/`` (Cityscapes trainIds, 255 void) is optional; real FS L&F has none.

:class:`LostAndFound` reads the original release (Pinggera et al., IROS 2016), laid out like
Cityscapes (tensorflow_datasets' lost_and_found builder)::

    root/leftImg8bit/<split>/<sequence>/<sequence>_<seq>_<frame>_leftImg8bit.png
    root/gtCoarse/<split>/<sequence>/<sequence>_<seq>_<frame>_gtCoarse_labelIds.png

Label convention of ``gtCoarse_labelIds``: the L&F label table (http://www.6d-vision.com/
laf_table.pdf, as transcribed with its categories and trainIds in robin-chan/meta-ood,
src/dataset/lost_and_found.py): 0 unlabeled / background (ego vehicle, borders and everything
off the road share id 0), 1 free space (drivable road), 2..43 the placed objects. The objects
fall in the categories standard objects, random hazards, emotional hazards and humans (trainId
2, hazard) and "random non-hazards" 31, 33, 34, 36-39 (lying marker pole, lying post, post
stand, timber, wheel cap, thin wood; trainId 0). The usual L&F anomaly protocol scores free
space as inlier and hazards as outlier and ignores the rest (meta-ood's ``train_id_in = 1``,
``train_id_out = 2``; DenseHybrid's L&F loader likewise), so ``ood`` here is 0 on free space,
1 on hazards, 255 elsewhere, including the non-hazard objects.

This road-restricted mask is NOT the Fishyscapes mask of the same frame: the FS masks are
distributed on their own and label much more than the road as in-distribution (81.2% inlier
pixels, Table 2 of Grcic et al. 2021), so they cannot be rebuilt from gtCoarse and results on
the two readers are not comparable. Frames are kept in
recording order: sequences sorted by name, frames within a sequence by their number
(numerically, not as text).
"""

import re

import numpy as np

from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX
from dense_ood_ros.datasets.sample import (apply_limit, check_same_size, cityscapes_layout,
                                           FileDataset, INLIER, natural_key, OUTLIER, pair_files,
                                           read_label, read_labelled, require_dirs, Sample)

FS_DATASET = 'Fishyscapes Lost & Found'
LAF_DATASET = 'Lost & Found'
LAF_SPLITS = ('train', 'test')
FS_SPLITS = ('test', 'val', 'validation')  # one public set; the names are aliases of it
IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_SUFFIX = '_gtCoarse_labelIds.png'

FREE_SPACE_ID = 1
NON_HAZARD_IDS = (31, 33, 34, 36, 37, 38, 39)  # category "Random non-hazards"
MAX_OBJECT_ID = 43
_FS_VALUES = (INLIER, OUTLIER, IGNORE_INDEX)
_FRAME_RE = re.compile(r'^(?P<sequence>.+)_(?P<seq>\d+)_(?P<frame>\d+)' + re.escape(IMAGE_SUFFIX)
                       + '$')


def _build_laf_lut():
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[FREE_SPACE_ID] = INLIER
    lut[FREE_SPACE_ID + 1:MAX_OBJECT_ID + 1] = OUTLIER
    lut[list(NON_HAZARD_IDS)] = IGNORE_INDEX
    lut.flags.writeable = False
    return lut


LAF_ID_TO_OOD = _build_laf_lut()


class FishyscapesLF(FileDataset):
    """Fishyscapes Lost & Found masks (0 inlier, 1 outlier, 255 void), sorted by file name."""

    # The label space of the optional semantic/ files.
    num_classes = len(CITYSCAPES_CLASSES)
    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, root, split='test', *, limit=None):
        if split not in FS_SPLITS:
            raise ValueError(f'{FS_DATASET}: unknown split {split!r}; expected one of '
                             f'{FS_SPLITS} (all name the one public set)')
        image_dir, mask_dir = require_dirs(root, 'images', 'labels_masks', dataset=FS_DATASET)
        images = sorted(image_dir.glob('*.png'), key=lambda p: natural_key(p.name))
        pairs = pair_files(images, mask_dir.glob('*.png'), lambda p: mask_dir / p.name,
                           dataset=FS_DATASET)
        semantic_dir = image_dir.parent / 'semantic'
        if semantic_dir.is_dir():
            semantics = pair_files(images, semantic_dir.glob('*.png'),
                                   lambda p: semantic_dir / p.name, dataset=FS_DATASET)
            items = [(img, mask, sem) for (img, mask), (_, sem) in zip(pairs, semantics)]
        else:
            items = [(img, mask, None) for img, mask in pairs]
        super().__init__(apply_limit(items, limit, dataset=FS_DATASET, root=root, split=split))
        self.root, self.split = root, split

    def load(self, item):
        """Read one image, its outlier mask and, where exported, its trainIds."""
        image_path, mask_path, semantic_path = item
        image, ood = read_labelled(image_path, mask_path)
        # A raw L&F labelIds file or a colour mask dropped here by mistake would otherwise
        # be scored as if it were a mask.
        bad = ~np.isin(ood, _FS_VALUES)
        if bad.any():
            raise ValueError(f'{FS_DATASET}: mask {mask_path} holds value {ood[bad][0]}; '
                             f'masks may only hold 0 (inlier), 1 (outlier), 255 (void)')
        semantic = None
        if semantic_path is not None:
            semantic = read_label(semantic_path)
            check_same_size(image, semantic, image_path, semantic_path)
        return Sample(name=image_path.stem, image=image, semantic=semantic, ood=ood)


def _frame_key(image_dir, path):
    match = _FRAME_RE.match(path.name)
    if match is None:
        raise ValueError(f'{LAF_DATASET}: image {path} is not named '
                         f'<sequence>_<seq>_<frame>{IMAGE_SUFFIX}')
    return (natural_key(path.parent.relative_to(image_dir)), int(match['seq']),
            int(match['frame']))


class LostAndFound(FileDataset):
    """Original Lost & Found with free space as inlier and hazards as outliers (road only)."""

    def __init__(self, root, split='test', *, limit=None):
        if split not in LAF_SPLITS:
            raise ValueError(f'{LAF_DATASET}: unknown split {split!r}; expected one of '
                             f'{LAF_SPLITS}')
        super().__init__(cityscapes_layout(
            root, split, label_dir='gtCoarse', image_suffix=IMAGE_SUFFIX,
            label_suffix=LABEL_SUFFIX, dataset=LAF_DATASET, order=_frame_key, limit=limit))
        self.root, self.split = root, split

    def load(self, item):
        """Read one frame and map its labelIds to the road-restricted outlier mask."""
        image_path, label_path = item
        image, label_ids = read_labelled(image_path, label_path)
        return Sample(name=image_path.name[:-len(IMAGE_SUFFIX)], image=image,
                      ood=LAF_ID_TO_OOD[label_ids])
