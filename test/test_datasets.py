"""Dataset readers against tiny fake datasets written in each dataset's real on-disk layout."""

import json

import cv2
import numpy as np
import pytest

from dense_ood_ros.datasets import lost_and_found
from dense_ood_ros.datasets import registry as runtime_registry
from dense_ood_ros.datasets.lost_and_found import FishyscapesLF, LostAndFound
from dense_ood_ros.datasets.sample import read_image, read_label, read_rgb, require_dirs
from train.data import cityscapes, streethazards, vistas_np
from train.data.cityscapes import CityscapesDataset
from dense_ood_ros.tools import dataset_to_bag
from train import config, evaluate
from train.data.registry import DATASETS, build_dataset, known_names, lookup
from train.data.streethazards import StreetHazardsDataset
from train.data.vistas_np import VISTAS_CLASSES, VistasNPDataset

H, W = 16, 32


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array), path
    return path


def _rgb(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _write_rgb(path, rgb):
    return _write(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _stripes(values):
    """HxW label image whose columns cycle through ``values``."""
    return np.tile(np.resize(np.asarray(values, np.uint8), W), (H, 1))


def _expected(stripes_of, table):
    return np.vectorize(table.__getitem__, otypes=[np.uint8])(stripes_of)


# ---------------------------------------------------------------- shared helpers


def test_read_image_names_missing_and_undecodable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.png'):
        read_image(tmp_path / 'nothere.png')
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png at all')
    with pytest.raises(ValueError, match='broken.png'):
        read_rgb(broken)


def test_read_label_refuses_colour_files(tmp_path):
    path = _write_rgb(tmp_path / 'colour.png', _rgb(0))
    with pytest.raises(ValueError, match='single-channel'):
        read_label(path)


def test_read_rgb_returns_rgb_order(tmp_path):
    rgb = _rgb(1)
    assert np.array_equal(read_rgb(_write_rgb(tmp_path / 'x.png', rgb)), rgb)


def test_require_dirs_names_dataset_root_and_directory(tmp_path):
    (tmp_path / 'a').mkdir()
    with pytest.raises(FileNotFoundError) as info:
        require_dirs(tmp_path, 'a', 'b/c', dataset='Foo')
    message = str(info.value)
    assert 'Foo' in message and str(tmp_path) in message and 'b/c' in message
    with pytest.raises(FileNotFoundError, match='Foo'):
        require_dirs(tmp_path / 'missing-root', 'a', dataset='Foo')


# ---------------------------------------------------------------- Cityscapes

CS_IDS = [0, 7, 8, 9, 24, 26, 33, 34, 255]  # 9 parking: ignoreInEval; 34+: no class


def _cityscapes(root, split='train', frames=(('aachen', 19), ('aachen', 4), ('bochum', 7))):
    for i, (city, frame) in enumerate(frames):
        stem = f'{city}_000000_{frame:06d}'
        _write_rgb(root / 'leftImg8bit' / split / city / f'{stem}_leftImg8bit.png', _rgb(i))
        gt = root / 'gtFine' / split / city
        _write(gt / f'{stem}_gtFine_labelIds.png', _stripes(np.roll(CS_IDS, i)))
        # The other gtFine files of the real release must not be taken for labels.
        _write(gt / f'{stem}_gtFine_labelTrainIds.png', _stripes([0]))
    return root


def test_cityscapes_table_equals_cityscapesscripts():
    labels = pytest.importorskip('cityscapesscripts.helpers.labels').labels
    expected = np.full(256, 255, np.uint8)
    for label in labels:
        if label.id >= 0 and label.trainId not in (255, -1) and not label.ignoreInEval:
            expected[label.id] = label.trainId
    assert np.array_equal(cityscapes.LABEL_ID_TO_TRAIN_ID, expected)
    assert [(lb.name, lb.id, lb.trainId) for lb in labels] == list(cityscapes.LABELS)


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    ds = CityscapesDataset(_cityscapes(tmp_path), 'train')
    assert len(ds) == 3
    assert [ds[i].name for i in range(3)] == ['aachen_000000_000004', 'aachen_000000_000019',
                                              'bochum_000000_000007']
    sample = ds[0]  # frame 4 was written second, with ids rolled by one
    assert sample.image.dtype == np.uint8 and np.array_equal(sample.image, _rgb(1))
    assert sample.ood is None
    train_ids = {0: 255, 7: 0, 8: 1, 9: 255, 24: 11, 26: 13, 33: 18, 34: 255, 255: 255}
    expected = _expected(_stripes(np.roll(CS_IDS, 1)), train_ids)
    assert np.array_equal(sample.semantic, expected)
    assert ds[-1].name == 'bochum_000000_000007'
    with pytest.raises(IndexError):
        ds[3]


def test_cityscapes_layout_errors(tmp_path):
    root = _cityscapes(tmp_path / 'ok')
    (root / 'leftImg8bit/val').mkdir()
    with pytest.raises(FileNotFoundError, match='Cityscapes.*gtFine/val'):
        CityscapesDataset(root, 'val')
    with pytest.raises(ValueError, match='split'):
        CityscapesDataset(root, 'training')

    label = root / 'gtFine/train/bochum/bochum_000000_000007_gtFine_labelIds.png'
    label.unlink()
    with pytest.raises(ValueError, match='bochum_000000_000007_leftImg8bit.png'):
        CityscapesDataset(root, 'train')

    root = _cityscapes(tmp_path / 'orphan')
    (root / 'leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png').unlink()
    with pytest.raises(ValueError, match='aachen_000000_000019_gtFine_labelIds.png'):
        CityscapesDataset(root, 'train')

    empty = tmp_path / 'empty'
    for sub in ('leftImg8bit/train', 'gtFine/train'):
        (empty / sub).mkdir(parents=True)
    with pytest.raises(ValueError, match='holds no images'):
        CityscapesDataset(empty, 'train')


def test_cityscapes_limit(tmp_path):
    root = _cityscapes(tmp_path)
    assert len(CityscapesDataset(root, 'train', limit=2)) == 2
    assert len(CityscapesDataset(root, 'train', limit=10)) == 3
    with pytest.raises(ValueError, match='limit'):
        CityscapesDataset(root, 'train', limit=0)


# ---------------------------------------------------------------- StreetHazards

SH_VALUES = [0, 1, 2, 8, 13, 14, 15]


def _streethazards(root, split='train'):
    archive, sub = {'train': ('train', 'training'), 'val': ('train', 'validation'),
                    'test': ('test', 'test')}[split]
    for i, (town, n) in enumerate([('t1', 10), ('t1', 2), ('t3', 0)]):
        _write_rgb(root / archive / 'images' / sub / town / f'{n}.png', _rgb(i))
        _write(root / archive / 'annotations' / sub / town / f'{n}.png',
               _stripes(np.roll(SH_VALUES, i)))
    return root


def test_streethazards_maps_to_own_classes_and_anomaly(tmp_path):
    ds = StreetHazardsDataset(_streethazards(tmp_path, 'test'), 'test')
    assert ds.num_classes == 13 and len(ds.class_names) == 13
    assert ds.class_names == streethazards.CLASS_NAMES
    assert ds.class_names[7] == 'road' and ds.class_names[12] == 'traffic sign'
    assert [ds[i].name for i in range(len(ds))] == ['t1_2', 't1_10', 't3_0']  # numeric order
    sample = ds[0]
    assert np.array_equal(sample.image, _rgb(1))
    values = _stripes(np.roll(SH_VALUES, 1))
    # file value v in 1..13 is class v - 1; 14 is the anomaly; 0 and 15 are not classes,
    # yet inliers of the OOD labels, as anomaly-seg's evaluation counts them
    semantic = {0: 255, 1: 0, 2: 1, 8: 7, 13: 12, 14: 255, 15: 255}
    ood = {0: 0, 1: 0, 2: 0, 8: 0, 13: 0, 14: 1, 15: 0}
    assert np.array_equal(sample.semantic, _expected(values, semantic))
    assert np.array_equal(sample.ood, _expected(values, ood))


def test_streethazards_split_names_and_errors(tmp_path):
    root = _streethazards(tmp_path / 'a', 'val')
    assert len(StreetHazardsDataset(root, 'validation')) == 3
    assert len(StreetHazardsDataset(root, 'val', limit=1)) == 1
    with pytest.raises(FileNotFoundError, match='train/images/training'):
        StreetHazardsDataset(root, 'train')
    (root / 'train/annotations/validation/t3/0.png').unlink()
    with pytest.raises(ValueError, match='t3/0.png'):
        StreetHazardsDataset(root, 'val')
    root = _streethazards(tmp_path / 'b', 'val')
    (root / 'train/images/validation/t1/2.png').unlink()
    with pytest.raises(ValueError, match='annotations/validation/t1/2.png'):
        StreetHazardsDataset(root, 'val')
    for sub in ('test/images/test', 'test/annotations/test'):
        (tmp_path / 'c' / sub).mkdir(parents=True)
    with pytest.raises(ValueError, match='holds no images'):
        StreetHazardsDataset(tmp_path / 'c', 'test')


# ---------------------------------------------------------------- Vistas-NP

V = {name: i for i, (name, _) in enumerate(VISTAS_CLASSES)}
VISTAS_IDS = [V['construction--flat--road'], V['construction--barrier--curb'],
              V['object--vehicle--car'], V['object--vehicle--bicycle'], V['animal--bird'],
              V['void--unlabeled'], V['human--person'], V['human--rider--motorcyclist']]


def _vistas_colour_bgr(ids):
    colours = np.array([colour for _, colour in VISTAS_CLASSES], np.uint8)
    return colours[ids][..., ::-1]


def _vistas(root, split, *, encoding='colour', config=True):
    ids = _stripes(VISTAS_IDS)
    for key in ('b_key', 'a_key'):
        _write(root / split / 'images' / f'{key}.jpg', _rgb(0)[..., ::-1])
        label = root / split / 'labels' / f'{key}.png'
        if encoding == 'colour':
            _write(label, _vistas_colour_bgr(ids))
        elif encoding == 'ids':
            _write(label, ids)
        else:  # a palette PNG, as the official files are
            image = pytest.importorskip('PIL.Image')
            palette = np.zeros((256, 3), np.uint8)
            palette[:len(VISTAS_CLASSES)] = [colour for _, colour in VISTAS_CLASSES]
            png = image.fromarray(ids, mode='P')
            png.putpalette(palette.ravel().tolist())
            label.parent.mkdir(parents=True, exist_ok=True)
            png.save(label)
    if config:
        labels = [{'name': name, 'color': list(colour)} for name, colour in VISTAS_CLASSES]
        (root / 'config.json').write_text(json.dumps({'labels': labels}))
    return root, ids


def test_vistas_colour_table_is_unambiguous_and_mapping_names_exist():
    colours = [colour for _, colour in VISTAS_CLASSES]
    assert len(VISTAS_CLASSES) == 66 and len(set(colours)) == 66
    assert set(vistas_np.VISTAS_TO_CITYSCAPES) <= set(V)


@pytest.mark.parametrize('encoding', ['colour', 'ids', 'palette'])
def test_vistas_np_training_maps_to_cityscapes_train_ids(tmp_path, encoding):
    root, ids = _vistas(tmp_path, 'training', encoding=encoding)
    ds = VistasNPDataset(root, 'train')
    assert [ds[i].name for i in range(len(ds))] == ['a_key', 'b_key']
    sample = ds[0]
    assert sample.image.shape == (H, W, 3) and sample.ood is None
    # road, curb->sidewalk, car, bicycle, bird (unmapped), unlabeled, person, rider
    train_ids = dict(zip(VISTAS_IDS, [0, 1, 13, 18, 255, 255, 11, 12]))
    assert np.array_equal(sample.semantic, _expected(ids, train_ids))
    assert ds.num_classes == 19


def test_vistas_np_compact_uses_the_authors_17_classes(tmp_path):
    root, ids = _vistas(tmp_path, 'validation')
    ds = VistasNPDataset(root, 'val', compact=True)
    assert ds.num_classes == 17 and 'person' not in ds.class_names
    compact = dict(zip(VISTAS_IDS, [0, 1, 11, 16, 255, 255, 255, 255]))
    assert np.array_equal(ds[0].semantic, _expected(ids, compact))


def test_vistas_np_test_split_marks_persons_and_riders_as_outliers(tmp_path):
    root, ids = _vistas(tmp_path, 'test')
    sample = VistasNPDataset(root, 'test')[1]
    ood = dict(zip(VISTAS_IDS, [0, 0, 0, 0, 255, 255, 1, 1]))
    semantic = dict(zip(VISTAS_IDS, [0, 1, 13, 18, 255, 255, 255, 255]))
    assert np.array_equal(sample.ood, _expected(ids, ood))
    assert np.array_equal(sample.semantic, _expected(ids, semantic))


def test_vistas_np_errors(tmp_path):
    root, _ = _vistas(tmp_path / 'a', 'training')
    with pytest.raises(FileNotFoundError, match='test/images'):
        VistasNPDataset(root, 'test')
    (root / 'config.json').write_text(json.dumps({'labels': [{'name': 'x'}] * 124}))
    with pytest.raises(ValueError, match='config.json'):
        VistasNPDataset(root, 'training')

    root, _ = _vistas(tmp_path / 'b', 'training', config=False)
    bad = np.zeros((H, W, 3), np.uint8)
    bad[3, 5] = (1, 2, 3)
    _write(root / 'training/labels/a_key.png', bad)
    ds = VistasNPDataset(root, 'training')  # no config.json: nothing to check it against
    with pytest.raises(ValueError, match='a_key.png'):
        ds[0]
    (root / 'training/labels/b_key.png').unlink()
    with pytest.raises(ValueError, match='b_key.jpg'):
        VistasNPDataset(root, 'training')


# ---------------------------------------------------------------- Fishyscapes L&F


def _fishyscapes(root, *, semantic=True):
    for i, name in enumerate(['img_10', 'img_9']):
        _write_rgb(root / 'images' / f'{name}.png', _rgb(i))
        _write(root / 'labels_masks' / f'{name}.png', _stripes([0, 1, 255, 0]))
        if semantic:
            _write(root / 'semantic' / f'{name}.png', _stripes([0, 13, 255]))
    return root


def test_fishyscapes_lf_reads_masks_and_optional_semantic(tmp_path):
    ds = FishyscapesLF(_fishyscapes(tmp_path / 'a'))
    assert [ds[i].name for i in range(2)] == ['img_9', 'img_10']
    sample = ds[1]
    assert np.array_equal(sample.image, _rgb(0))
    assert np.array_equal(sample.ood, _stripes([0, 1, 255, 0]))
    assert np.array_equal(sample.semantic, _stripes([0, 13, 255]))
    plain = FishyscapesLF(_fishyscapes(tmp_path / 'b', semantic=False), 'test', limit=1)
    assert len(plain) == 1 and plain[0].semantic is None


def test_fishyscapes_lf_errors(tmp_path):
    root = _fishyscapes(tmp_path / 'a')
    (root / 'semantic/img_9.png').unlink()
    with pytest.raises(ValueError, match='semantic/img_9.png'):
        FishyscapesLF(root)
    root = _fishyscapes(tmp_path / 'b')
    _write(root / 'labels_masks/img_9.png', _stripes([0, 2]))  # e.g. raw L&F labelIds
    with pytest.raises(ValueError, match='img_9.png'):
        FishyscapesLF(root)[0]
    (tmp_path / 'c/images').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='labels_masks'):
        FishyscapesLF(tmp_path / 'c')


def test_fishyscapes_lf_reads_the_synthetic_world_export(tmp_path):
    from train.data.synthetic import write_lf_layout
    root = write_lf_layout(tmp_path, num_images=2, height=H * 2, width=W * 2)
    ds = FishyscapesLF(root)
    assert len(ds) == 2
    sample = ds[0]
    assert sample.image.shape == (H * 2, W * 2, 3) and sample.semantic.shape == (H * 2, W * 2)
    assert set(np.unique(sample.ood)) <= {0, 1, 255}


# ---------------------------------------------------------------- original Lost & Found

LAF_IDS = [0, 1, 2, 31, 39, 43, 44]


def _lost_and_found(root, split='test', frames=None):
    frames = frames or [('02_Hanns_Klemm_Str_44', 0, 100), ('02_Hanns_Klemm_Str_44', 0, 80),
                        ('01_Hanns_Klemm_Str_45', 3, 20), ('01_Hanns_Klemm_Str_45', 1, 250)]
    for i, (sequence, seq, frame) in enumerate(frames):
        stem = f'{sequence}_{seq:06d}_{frame}'
        _write_rgb(root / 'leftImg8bit' / split / sequence / f'{stem}_leftImg8bit.png', _rgb(i))
        gt = root / 'gtCoarse' / split / sequence
        _write(gt / f'{stem}_gtCoarse_labelIds.png', _stripes(np.roll(LAF_IDS, i)))
        _write(gt / f'{stem}_gtCoarse_instanceIds.png', _stripes([0]))
    return root


def test_lost_and_found_keeps_numeric_frame_order_and_maps_ids(tmp_path):
    ds = LostAndFound(_lost_and_found(tmp_path))
    assert [ds[i].name for i in range(len(ds))] == [
        '01_Hanns_Klemm_Str_45_000001_250', '01_Hanns_Klemm_Str_45_000003_20',
        '02_Hanns_Klemm_Str_44_000000_80', '02_Hanns_Klemm_Str_44_000000_100']
    sample = ds[2]  # frame 80, written second
    assert np.array_equal(sample.image, _rgb(1)) and sample.semantic is None
    # 0 background -> void, 1 free space -> inlier, hazards -> outlier, non-hazards 31/39
    # and ids beyond the table -> void
    ood = {0: 255, 1: 0, 2: 1, 31: 255, 39: 255, 43: 1, 44: 255}
    assert np.array_equal(sample.ood, _expected(_stripes(np.roll(LAF_IDS, 1)), ood))


def test_lost_and_found_table():
    lut = lost_and_found.LAF_ID_TO_OOD
    hazards = set(range(2, 44)) - set(lost_and_found.NON_HAZARD_IDS)
    assert {i for i in range(256) if lut[i] == 1} == hazards
    assert [i for i in range(256) if lut[i] == 0] == [1]


def test_lost_and_found_errors(tmp_path):
    root = _lost_and_found(tmp_path / 'a', 'train')
    with pytest.raises(FileNotFoundError, match='leftImg8bit/test'):
        LostAndFound(root)
    assert len(LostAndFound(root, 'train', limit=3)) == 3
    (root / 'gtCoarse/train/01_Hanns_Klemm_Str_45/01_Hanns_Klemm_Str_45_000003_20'
     '_gtCoarse_labelIds.png').unlink()
    with pytest.raises(ValueError, match='01_Hanns_Klemm_Str_45_000003_20_leftImg8bit.png'):
        LostAndFound(root, 'train')
    root = _lost_and_found(tmp_path / 'b')
    _write_rgb(root / 'leftImg8bit/test/x/no_frame_number_leftImg8bit.png', _rgb(0))
    with pytest.raises(ValueError, match='no_frame_number'):
        LostAndFound(root)


# ---------------------------------------------------------------- registry


def test_readers_with_a_label_space_give_one_colour_per_class(tmp_path):
    root, _ = _vistas(tmp_path, 'test')
    readers = [CityscapesDataset(_cityscapes(tmp_path / 'cs'), 'train'),
               StreetHazardsDataset(_streethazards(tmp_path / 'sh'), 'train'),
               VistasNPDataset(root, 'test'), VistasNPDataset(root, 'test', compact=True),
               FishyscapesLF(_fishyscapes(tmp_path / 'fs'))]
    for ds in readers:
        assert ds.num_classes == len(ds.class_names) == len(ds.palette), type(ds).__name__
        assert all(len(colour) == 3 for colour in ds.palette)


def test_registry_builds_readers_and_lists_known_names(tmp_path):
    assert set(DATASETS) == {'cityscapes', 'streethazards', 'vistas_np', 'fishyscapes_lf',
                             'lostandfound', 'synthetic_lf'}
    ds = build_dataset('cityscapes', _cityscapes(tmp_path), 'train', limit=1)
    assert isinstance(ds, CityscapesDataset) and len(ds) == 1
    with pytest.raises(ValueError, match='cityscapes.*lostandfound'):
        build_dataset('kitti', tmp_path, 'train')


def test_entries_say_which_split_evaluation_reads_and_how_it_is_scored(tmp_path):
    assert lookup('cityscapes').split == 'val'
    tests = ('streethazards', 'vistas_np', 'fishyscapes_lf', 'lostandfound', 'synthetic_lf')
    assert {lookup(name).split for name in tests} == {'test'}
    assert [name for name in DATASETS if lookup(name).per_image] == ['streethazards']
    # Without a split, a dataset is read at its entry's; 'synthetic' is the tools' old name
    # of the on-disk synthetic world, which is in the Fishyscapes L&F layout.
    root = _fishyscapes(tmp_path)
    for name in ('synthetic', 'synthetic_lf', 'fishyscapes_lf'):
        ds = build_dataset(name, root, limit=1)
        assert isinstance(ds, FishyscapesLF) and ds.split == 'test' and len(ds) == 1
    assert runtime_registry.lookup('synthetic') is runtime_registry.DATASETS['synthetic_lf']


def test_every_tool_takes_its_dataset_names_from_the_one_registry():
    # The runtime table is part of train's; the package alone knows only its own readers.
    assert runtime_registry.DATASETS.items() <= DATASETS.items()
    assert set(runtime_registry.known_names()) == {'fishyscapes_lf', 'lostandfound',
                                                   'synthetic_lf', 'synthetic'}
    assert dataset_to_bag.DATASETS == runtime_registry.known_names() + ('folder',)
    assert set(known_names()) == set(DATASETS) | {'synthetic'}
    # A training config's 'synthetic' is the world rendered in memory, not an alias.
    assert set(config.DATASETS) == set(DATASETS) | {'synthetic', 'cifar10'}
    for name in known_names():
        args = evaluate.parse_args(['--checkpoint', 'm.pt', '--dataset', name, '--root', 'r'])
        assert args.dataset == name
    with pytest.raises(SystemExit):
        evaluate.parse_args(['--checkpoint', 'm.pt', '--dataset', 'kitti', '--root', 'r'])
