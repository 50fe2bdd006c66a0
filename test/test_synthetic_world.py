"""The synthetic street world: determinism, labels, L&F-style anomaly masks and the disk layout."""

import cv2
import numpy as np
import pytest

from train.data.synthetic import (ANOMALY_KINDS, LF_DIRS, SyntheticStreetWorld, export,
                                  image_seed, render_scene, write_lf_layout)
from train.data.synthetic.__main__ import main

H, W = 256, 512
N = 20
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR = 0, 1, 2, 8, 10, 13


@pytest.fixture(scope='module')
def train_scenes():
    world = SyntheticStreetWorld('train', num_images=N, height=H, width=W, seed=3)
    return [world.scene(i) for i in range(N)]


@pytest.fixture(scope='module')
def test_scenes():
    world = SyntheticStreetWorld('test', num_images=N, height=H, width=W, seed=3)
    return [world.scene(i) for i in range(N)]


def _assert_scenes_equal(a, b):
    for field in ('image', 'semantic', 'ood', 'anomaly_ids'):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.anomalies == b.anomalies and a.anomaly_styles == b.anomaly_styles


@pytest.mark.parametrize('anomalies', [False, True])
def test_same_seed_renders_identical_scenes(anomalies):
    first = render_scene(1234, height=128, width=256, anomalies=anomalies)
    second = render_scene(1234, height=128, width=256, anomalies=anomalies)
    _assert_scenes_equal(first, second)


def test_different_seeds_render_different_scenes():
    a, b = render_scene(1, height=128, width=256), render_scene(2, height=128, width=256)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() > 5
    assert (a.semantic != b.semantic).mean() > 0.05


def test_split_seeds_never_coincide_and_index_the_dataset():
    seeds = {split: [image_seed(7, split, i) for i in range(500)]
             for split in ('train', 'val', 'test')}
    for split, values in seeds.items():
        assert len(set(values)) == len(values), split
    assert not set(seeds['train']) & set(seeds['test'])
    assert not set(seeds['train']) & set(seeds['val'])
    assert not set(seeds['val']) & set(seeds['test'])
    assert image_seed(8, 'train', 0) != image_seed(7, 'train', 0)
    world = SyntheticStreetWorld('test', num_images=3, height=64, width=128, seed=7)
    assert world.seed_of(2) == seeds['test'][2] == world.seed_of(-1)
    _assert_scenes_equal(world.scene(1), render_scene(seeds['test'][1], height=64, width=128,
                                                      anomalies=True))


def test_dataset_protocol():
    world = SyntheticStreetWorld('val', num_images=2, height=64, width=128)
    assert len(world) == 2
    assert len(list(world)) == 2  # iteration stops at IndexError
    with pytest.raises(IndexError):
        world[2]
    with pytest.raises(ValueError):
        SyntheticStreetWorld('training', num_images=2)


@pytest.mark.parametrize('size', [(64, 128), (96, 96), (H, W)])
def test_shapes_and_dtypes(size):
    scene = render_scene(5, height=size[0], width=size[1], anomalies=True)
    assert scene.image.shape == (*size, 3)
    for array in (scene.image, scene.semantic, scene.ood, scene.anomaly_ids):
        assert array.dtype == np.uint8
    assert scene.semantic.shape == scene.ood.shape == scene.anomaly_ids.shape == size
    assert len(scene.anomalies) >= 1


def test_semantic_values_are_trainids_or_void(train_scenes, test_scenes):
    allowed = set(range(19)) | {255}
    for scene in train_scenes + test_scenes:
        assert set(np.unique(scene.semantic).tolist()) <= allowed


@pytest.mark.parametrize('class_id', [ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR])
def test_main_classes_appear_in_most_scenes(train_scenes, class_id):
    present = sum(int((s.semantic == class_id).sum() > 50) for s in train_scenes)
    assert present >= 0.8 * N


def test_scenes_show_varied_classes(train_scenes):
    seen = set()
    for scene in train_scenes:
        seen |= set(np.unique(scene.semantic).tolist())
    # Beyond the main classes: terrain, poles, signs, persons and walls/fences/lights show up.
    assert {0, 1, 2, 5, 7, 8, 9, 10, 11, 13} <= seen
    assert len(seen & {3, 4, 6, 14, 15}) >= 2


def test_road_covers_a_sensible_fraction(train_scenes):
    fractions = np.array([(s.semantic == ROAD).mean() for s in train_scenes])
    assert fractions.min() > 0.1 and fractions.max() < 0.7
    assert 0.2 < fractions.mean() < 0.55


def test_images_are_not_colour_coded(train_scenes):
    # Texture and lighting: pixels of one class vary, and classes overlap in brightness.
    for scene in train_scenes[:5]:
        road = scene.image[scene.semantic == ROAD].astype(float)
        assert road.std(0).mean() > 4
    means = [s.image[s.semantic == ROAD].mean() for s in train_scenes]
    assert np.ptp(means) > 30


def test_train_split_has_no_outliers(train_scenes):
    for scene in train_scenes:
        assert scene.anomalies == []
        assert not (scene.ood == 1).any()
        assert not (scene.anomaly_ids > 0).any()
        assert not (scene.semantic == 255).any()


def test_ood_mask_follows_lost_and_found(test_scenes):
    for scene in test_scenes:
        assert 1 <= len(scene.anomalies) <= 3
        assert set(scene.anomalies) <= set(ANOMALY_KINDS)
        anomaly = scene.anomaly_ids > 0
        np.testing.assert_array_equal(scene.ood == 1, anomaly)
        assert (scene.semantic[anomaly] == 255).all()
        # 0 exactly on road pixels (lane markings included), void everywhere else.
        np.testing.assert_array_equal(scene.ood == 0, scene.semantic == ROAD)
        assert set(np.unique(scene.ood).tolist()) <= {0, 1, 255}
        assert (scene.semantic == 255).sum() == anomaly.sum()
        ids = np.unique(scene.anomaly_ids[anomaly]).tolist()
        assert ids == list(range(1, len(scene.anomalies) + 1))


def test_anomalies_lie_on_the_road(test_scenes):
    kernel = np.ones((9, 9), np.uint8)
    for scene in test_scenes:
        for k in range(1, len(scene.anomalies) + 1):
            mask = (scene.anomaly_ids == k).astype(np.uint8)
            ring = cv2.dilate(mask, kernel).astype(bool) & ~mask.astype(bool)
            below = ring & (np.arange(H)[:, None] >= np.nonzero(mask)[0].max())
            if below.any():
                assert (scene.semantic[below] == ROAD).mean() > 0.5


def test_anomalies_are_not_coloured_like_their_road(test_scenes):
    kernel = np.ones((11, 11), np.uint8)
    distances, saturation = [], []
    for scene in test_scenes:
        for k in range(1, len(scene.anomalies) + 1):
            mask = scene.anomaly_ids == k
            ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
            ring &= scene.semantic == ROAD
            if mask.sum() < 20 or ring.sum() < 20:
                continue
            inside = scene.image[mask].astype(float)
            # The median ignores lane markings and shadow edges in the ring.
            road = np.median(scene.image[ring], 0)
            distances.append(np.linalg.norm(inside.mean(0) - road))
            saturation.append(np.ptp(inside.mean(0)))
    assert len(distances) >= N
    assert min(distances) > 3  # never simply the road's colour (noise alone gives ~1)
    # Hard and easy ones: some stay close to the road colour, some are vividly coloured.
    assert sum(d < 40 for d in distances) >= 2
    assert max(saturation) > 60


def test_each_anomaly_names_the_style_it_is_painted_in(test_scenes):
    # Grey objects take shades of the asphalt only; vivid and road-like ones carry palette
    # colours (road-like ones in a stripe), i.e. pixels far from any grey.
    coloured = {'vivid': [], 'grey': [], 'roadlike': []}
    for scene in test_scenes:
        assert len(scene.anomaly_styles) == len(scene.anomalies)
        for k, style in enumerate(scene.anomaly_styles, 1):
            inside = scene.image[scene.anomaly_ids == k].astype(int)
            coloured[style].append((np.ptp(inside, 1) > 60).mean())
    assert all(len(shares) >= 3 for shares in coloured.values()), coloured
    assert max(coloured['grey']) < 0.02, coloured['grey']
    assert np.median(coloured['vivid'] + coloured['roadlike']) > 0.1, coloured


def test_anomaly_kinds_vary_and_scale_with_perspective(test_scenes):
    kinds = [kind for scene in test_scenes for kind in scene.anomalies]
    assert set(kinds) == set(ANOMALY_KINDS)
    rows, sizes = [], []
    for scene in test_scenes:
        for k in range(1, len(scene.anomalies) + 1):
            ys = np.nonzero(scene.anomaly_ids == k)[0]
            rows.append(ys.max())
            sizes.append(np.sqrt(len(ys)))
    # Nearer (lower in the image) anomalies are larger, and some are small.
    rank = np.corrcoef(np.argsort(np.argsort(rows)), np.argsort(np.argsort(sizes)))[0, 1]
    assert rank > 0.3
    assert min(sizes) < 8


def test_anomalies_leave_the_rest_of_the_scene_unchanged():
    clean = render_scene(99, height=128, width=256)
    dirty = render_scene(99, height=128, width=256, anomalies=True)
    outside = dirty.anomaly_ids == 0
    np.testing.assert_array_equal(clean.semantic[outside], dirty.semantic[outside])


def test_write_lf_layout_round_trips(tmp_path):
    root = tmp_path / 'lf'
    assert write_lf_layout(root, num_images=3, height=64, width=128, seed=4) == root
    assert sorted(p.name for p in root.iterdir()) == sorted(LF_DIRS)  # no temporaries left
    names = [sorted(p.name for p in (root / d).iterdir()) for d in LF_DIRS]
    assert names[0] == names[1] == names[2] == [f'synthetic_{i:04d}.png' for i in range(3)]
    world = SyntheticStreetWorld('test', num_images=3, height=64, width=128, seed=4)
    for name, sample in zip(names[0], world):
        image = cv2.imread(str(root / 'images' / name), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), sample.image)
        for folder, expected in (('labels_masks', sample.ood), ('semantic', sample.semantic)):
            label = cv2.imread(str(root / folder / name), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2
            np.testing.assert_array_equal(label, expected)


def test_write_lf_layout_replaces_an_old_split(tmp_path):
    write_lf_layout(tmp_path, num_images=3, height=48, width=64)
    write_lf_layout(tmp_path, num_images=1, height=48, width=64, split='val')
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(LF_DIRS)
    for folder in LF_DIRS:
        assert [p.name for p in (tmp_path / folder).iterdir()] == ['synthetic_0000.png']
    assert not (cv2.imread(str(tmp_path / 'labels_masks' / 'synthetic_0000.png'),
                           cv2.IMREAD_UNCHANGED) == 1).any()


def test_write_lf_layout_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    def broken(path, array):
        raise OSError('disk full')

    monkeypatch.setattr(export, '_write_png', broken)
    with pytest.raises(OSError, match='disk full'):
        write_lf_layout(tmp_path, num_images=1, height=48, width=64)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_the_layout(tmp_path, capsys):
    out = tmp_path / 'cli'
    assert main(['--out', str(out), '--num-images', '2', '--height', '48', '--width', '64',
                 '--seed', '1']) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and '2 test scenes' in printed
    for folder in LF_DIRS:
        assert len(list((out / folder).iterdir())) == 2
    with pytest.raises(SystemExit):
        main(['--out', str(out), '--num-images', '0'])
