"""Vistas-NP reader: Mapillary Vistas without persons, the paper's contributed dataset.

Vistas-NP (Grcić et al., VISAPP 2021, section 4; github.com/matejgrcic/Vistas-NP) moves every
Mapillary Vistas v1.2 image (training and validation) that contains a person or one of the
three rider classes into the test split; the rest keep their split (8003 training, 830
validation, 11167 test images). The repository's make_vistas_np.py copies the original files
unchanged into::

    root/config.json                       (Vistas v1.2 class list, copied from Vistas)
    root/<training|validation|test>/images/<key>.jpg
    root/<training|validation|test>/labels/<key>.png

Label convention: each label PNG stores Vistas v1.2 class ids 0..65 (the index into
``config.json['labels']``; the official files are palette PNGs whose palette is the class
colour). OpenCV expands palettes to colours, so this reader turns colours back into ids with the
v1.2 colour table (:data:`VISTAS_CLASSES`, as listed in config.json v1.2; also reproduced in
facebookresearch/Mask2Former's register_mapillary_vistas.py); a single-channel file is read as
ids directly. Ids map to Cityscapes trainIds by class name with the authors' table
(``vistas_to_cityscapes`` in make_vistas_np.py / vistas_np_dataset.py); unmapped classes are
ignored (255).

Outliers (vistas_np_ood.py): pixels whose class maps to Cityscapes person or rider are ``ood ==
1``, pixels of unmapped (ignored) classes are 255, all others 0. ``ood`` is given for the test
split only (training and validation contain no outliers by construction), and ``semantic`` is
255 on outlier pixels: they belong to no known class.

Class space: by default ``semantic`` holds the 19 Cityscapes trainIds (person and rider simply
never occur), so a model shares the palette of every other Cityscapes-space dataset. With
``compact=True`` it uses the authors' 17-class space instead: person and rider removed and the
trainIds above them shifted down by two (car 11 ... bicycle 16), as vistas_np_dataset.py does.

Assumptions: the root is the directory make_vistas_np.py produced; if its config.json is
present, its class names are checked against the table below, so labels from another Vistas
version (v2.0 has 124 classes) fail loudly instead of being misread.
"""

import functools
import json
import pathlib

import numpy as np

from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX
from dense_ood_ros.datasets.sample import (FileDataset, INLIER, OUTLIER, Sample,
                                           apply_limit, check_same_size, natural_key, pair_files,
                                           read_image, read_rgb, require_dirs)

DATASET = 'Vistas-NP'
SPLITS = ('training', 'validation', 'test')
_ALIASES = {'train': 'training', 'val': 'validation'}

# Mapillary Vistas v1.2 classes in id order (config.json 'labels'): (name, RGB colour).
VISTAS_CLASSES = (
    ('animal--bird', (165, 42, 42)),
    ('animal--ground-animal', (0, 192, 0)),
    ('construction--barrier--curb', (196, 196, 196)),
    ('construction--barrier--fence', (190, 153, 153)),
    ('construction--barrier--guard-rail', (180, 165, 180)),
    ('construction--barrier--other-barrier', (90, 120, 150)),
    ('construction--barrier--wall', (102, 102, 156)),
    ('construction--flat--bike-lane', (128, 64, 255)),
    ('construction--flat--crosswalk-plain', (140, 140, 200)),
    ('construction--flat--curb-cut', (170, 170, 170)),
    ('construction--flat--parking', (250, 170, 160)),
    ('construction--flat--pedestrian-area', (96, 96, 96)),
    ('construction--flat--rail-track', (230, 150, 140)),
    ('construction--flat--road', (128, 64, 128)),
    ('construction--flat--service-lane', (110, 110, 110)),
    ('construction--flat--sidewalk', (244, 35, 232)),
    ('construction--structure--bridge', (150, 100, 100)),
    ('construction--structure--building', (70, 70, 70)),
    ('construction--structure--tunnel', (150, 120, 90)),
    ('human--person', (220, 20, 60)),
    ('human--rider--bicyclist', (255, 0, 0)),
    ('human--rider--motorcyclist', (255, 0, 100)),
    ('human--rider--other-rider', (255, 0, 200)),
    ('marking--crosswalk-zebra', (200, 128, 128)),
    ('marking--general', (255, 255, 255)),
    ('nature--mountain', (64, 170, 64)),
    ('nature--sand', (230, 160, 50)),
    ('nature--sky', (70, 130, 180)),
    ('nature--snow', (190, 255, 255)),
    ('nature--terrain', (152, 251, 152)),
    ('nature--vegetation', (107, 142, 35)),
    ('nature--water', (0, 170, 30)),
    ('object--banner', (255, 255, 128)),
    ('object--bench', (250, 0, 30)),
    ('object--bike-rack', (100, 140, 180)),
    ('object--billboard', (220, 220, 220)),
    ('object--catch-basin', (220, 128, 128)),
    ('object--cctv-camera', (222, 40, 40)),
    ('object--fire-hydrant', (100, 170, 30)),
    ('object--junction-box', (40, 40, 40)),
    ('object--mailbox', (33, 33, 33)),
    ('object--manhole', (100, 128, 160)),
    ('object--phone-booth', (142, 0, 0)),
    ('object--pothole', (70, 100, 150)),
    ('object--street-light', (210, 170, 100)),
    ('object--support--pole', (153, 153, 153)),
    ('object--support--traffic-sign-frame', (128, 128, 128)),
    ('object--support--utility-pole', (0, 0, 80)),
    ('object--traffic-light', (250, 170, 30)),
    ('object--traffic-sign--back', (192, 192, 192)),
    ('object--traffic-sign--front', (220, 220, 0)),
    ('object--trash-can', (140, 140, 20)),
    ('object--vehicle--bicycle', (119, 11, 32)),
    ('object--vehicle--boat', (150, 0, 255)),
    ('object--vehicle--bus', (0, 60, 100)),
    ('object--vehicle--car', (0, 0, 142)),
    ('object--vehicle--caravan', (0, 0, 90)),
    ('object--vehicle--motorcycle', (0, 0, 230)),
    ('object--vehicle--on-rails', (0, 80, 100)),
    ('object--vehicle--other-vehicle', (128, 64, 64)),
    ('object--vehicle--trailer', (0, 0, 110)),
    ('object--vehicle--truck', (0, 0, 70)),
    ('object--vehicle--wheeled-slow', (0, 0, 192)),
    ('void--car-mount', (32, 32, 32)),
    ('void--ego-vehicle', (120, 10, 10)),
    ('void--unlabeled', (0, 0, 0)),
)

# The Vistas-NP authors' Vistas -> Cityscapes class table (make_vistas_np.py); classes not
# listed are ignored.
VISTAS_TO_CITYSCAPES = {
    'construction--barrier--curb': 'sidewalk',
    'construction--barrier--fence': 'fence',
    'construction--barrier--guard-rail': 'fence',
    'construction--barrier--wall': 'wall',
    'construction--flat--bike-lane': 'road',
    'construction--flat--crosswalk-plain': 'road',
    'construction--flat--curb-cut': 'sidewalk',
    'construction--flat--parking': 'road',
    'construction--flat--pedestrian-area': 'sidewalk',
    'construction--flat--rail-track': 'road',
    'construction--flat--road': 'road',
    'construction--flat--service-lane': 'road',
    'construction--flat--sidewalk': 'sidewalk',
    'construction--structure--bridge': 'building',
    'construction--structure--building': 'building',
    'construction--structure--tunnel': 'building',
    'human--person': 'person',
    'human--rider--bicyclist': 'rider',
    'human--rider--motorcyclist': 'rider',
    'human--rider--other-rider': 'rider',
    'marking--crosswalk-zebra': 'road',
    'marking--general': 'road',
    'nature--sand': 'terrain',
    'nature--sky': 'sky',
    'nature--snow': 'terrain',
    'nature--terrain': 'terrain',
    'nature--vegetation': 'vegetation',
    'object--support--pole': 'pole',
    'object--support--traffic-sign-frame': 'traffic sign',
    'object--support--utility-pole': 'pole',
    'object--traffic-light': 'traffic light',
    'object--traffic-sign--front': 'traffic sign',
    'object--vehicle--bicycle': 'bicycle',
    'object--vehicle--bus': 'bus',
    'object--vehicle--car': 'car',
    'object--vehicle--motorcycle': 'motorcycle',
    'object--vehicle--on-rails': 'train',
    'object--vehicle--truck': 'truck',
}

OUTLIER_CLASSES = ('person', 'rider')  # Cityscapes classes whose images form the test split
COMPACT_CLASSES = tuple(c for c in CITYSCAPES_CLASSES if c not in OUTLIER_CLASSES)
COMPACT_PALETTE = tuple(colour for c, colour in zip(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE)
                        if c not in OUTLIER_CLASSES)


def _build_tables():
    train_id = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}
    compact_id = {name: i for i, name in enumerate(COMPACT_CLASSES)}
    to_train = np.full(256, IGNORE_INDEX, np.uint8)
    to_compact = np.full(256, IGNORE_INDEX, np.uint8)
    to_ood = np.full(256, IGNORE_INDEX, np.uint8)
    for vistas_id, (name, _) in enumerate(VISTAS_CLASSES):
        target = VISTAS_TO_CITYSCAPES.get(name)
        if target is None:
            continue
        to_train[vistas_id] = train_id[target]
        if target in OUTLIER_CLASSES:
            to_ood[vistas_id] = OUTLIER  # and no compact id: that space has no humans
        else:
            to_ood[vistas_id] = INLIER
            to_compact[vistas_id] = compact_id[target]
    for table in (to_train, to_compact, to_ood):
        table.flags.writeable = False
    return to_train, to_compact, to_ood


VISTAS_TO_TRAIN_ID, VISTAS_TO_COMPACT, VISTAS_TO_OOD = _build_tables()


@functools.cache
def _colour_to_id():
    """24-bit packed RGB -> Vistas id, 255 for colours outside the table (16 MiB, built once)."""
    lut = np.full(1 << 24, IGNORE_INDEX, np.uint8)
    for vistas_id, (_, (r, g, b)) in enumerate(VISTAS_CLASSES):
        lut[(r << 16) | (g << 8) | b] = vistas_id
    lut.flags.writeable = False
    return lut


def decode_vistas_label(raw, path):
    """Return Vistas class ids (uint8 HxW) from a label image as ``cv2.imread`` returned it.

    ``raw`` is HxW ids, or HxWx3 BGR (BGRA) when OpenCV expanded the palette of the official
    files.
    """
    if raw.dtype != np.uint8:
        raise ValueError(f'expected an 8-bit label image, got {raw.dtype}: {path}')
    if raw.ndim == 3 and raw.shape[2] in (3, 4):
        bgr = raw[..., :3].astype(np.int32)  # a palette with transparency comes back as BGRA
        ids = _colour_to_id()[(bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]]
        unknown = ids == IGNORE_INDEX
        if unknown.any():
            y, x = np.argwhere(unknown)[0]
            raise ValueError(f'label {path} has colour {tuple(raw[y, x, ::-1].tolist())} (RGB) '
                             f'at x={x}, y={y}, which is not a Mapillary Vistas v1.2 class colour')
        return ids
    if raw.ndim != 2:
        raise ValueError(f'unexpected label image shape {raw.shape}: {path}')
    if raw.max(initial=0) >= len(VISTAS_CLASSES):
        raise ValueError(f'label {path} holds id {raw.max()}, beyond the '
                         f'{len(VISTAS_CLASSES)} Vistas v1.2 classes')
    return raw


def _check_config(root):
    path = root / 'config.json'
    if not path.is_file():
        return
    with open(path, encoding='utf-8') as file:
        names = [label['name'] for label in json.load(file)['labels']]
    expected = [name for name, _ in VISTAS_CLASSES]
    if names != expected:
        raise ValueError(f'{DATASET}: {path} lists {len(names)} classes that differ from the '
                         f'{len(expected)} Mapillary Vistas v1.2 classes this reader maps')


class VistasNPDataset(FileDataset):
    """Vistas-NP with Cityscapes trainIds (or the 17-class space) and persons as outliers.

    ``split`` is 'training' / 'validation' / 'test' ('train' and 'val' are accepted too).
    Samples are sorted by image key.
    """

    def __init__(self, root, split, *, limit=None, compact=False):
        split = _ALIASES.get(split, split)
        if split not in SPLITS:
            raise ValueError(f'{DATASET}: unknown split {split!r}; expected one of {SPLITS}')
        image_dir, label_dir = require_dirs(root, f'{split}/images', f'{split}/labels',
                                            dataset=DATASET)
        _check_config(pathlib.Path(root))
        images = sorted(image_dir.glob('*.jpg'), key=lambda p: natural_key(p.name))
        pairs = pair_files(images, label_dir.glob('*.png'),
                           lambda p: label_dir / f'{p.stem}.png', dataset=DATASET)
        super().__init__(apply_limit(pairs, limit, dataset=DATASET, root=root, split=split))
        self.root, self.split, self.compact = root, split, bool(compact)
        self.class_names = COMPACT_CLASSES if self.compact else CITYSCAPES_CLASSES
        self.palette = COMPACT_PALETTE if self.compact else CITYSCAPES_PALETTE
        self.num_classes = len(self.class_names)

    def load(self, item):
        """Read one image and map its Vistas labels to semantic (and, for test, ood) labels."""
        image_path, label_path = item
        image = read_rgb(image_path)
        ids = decode_vistas_label(read_image(label_path), label_path)
        check_same_size(image, ids, image_path, label_path)
        semantic = (VISTAS_TO_COMPACT if self.compact else VISTAS_TO_TRAIN_ID)[ids]
        ood = None
        if self.split == 'test':
            ood = VISTAS_TO_OOD[ids]
            semantic[ood == OUTLIER] = IGNORE_INDEX
        return Sample(name=image_path.stem, image=image, semantic=semantic, ood=ood)
