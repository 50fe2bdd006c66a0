"""Training data: joint transforms, the resumable sharded batch order, the synthetic adapter."""

import numpy as np
import pytest
import torch

from dense_ood_ros.labels import CITYSCAPES_CLASSES
from train.build import training_dataset, validation_dataset
from train.config import resolve
from train.data.label_space import label_space
from train.data.synthetic import SyntheticStreetWorld
from train.loader import ResumableBatchSampler, TransformedSamples, to_device
from train.transforms import (
    RandomCrop, RandomHorizontalFlip, ResizeShortEdge, training_transform)


def _pair(height=30, width=50):
    image = np.arange(height * width * 3, dtype=np.uint32).reshape(height, width, 3) % 251
    label = (np.arange(height * width).reshape(height, width) % 7).astype(np.uint8)
    return image.astype(np.uint8), label


def test_resize_short_edge_keeps_label_ids_and_aspect():
    image, label = _pair(30, 60)
    image, label = ResizeShortEdge(64)(image, label)
    assert image.shape == (64, 128, 3) and label.shape == (64, 128)
    assert set(np.unique(label)) <= set(range(7))


def test_random_crop_pads_small_images_with_ignore():
    image, label = _pair(20, 40)
    image, label = RandomCrop(32)(image, label, np.random.default_rng(0))
    assert image.shape == (32, 32, 3) and label.shape == (32, 32)
    assert (label[20:] == 255).all()
    assert (image[20:] == 0).all()


def test_random_crop_reaches_every_offset_and_keeps_pairs_aligned():
    image, _ = _pair(10, 12)
    label = np.arange(120, dtype=np.uint8).reshape(10, 12)  # every pixel its own id
    image[..., 0] = label * 2
    corners = set()
    for seed in range(400):
        img, lbl = RandomCrop(8)(image, label, np.random.default_rng(seed))
        assert np.array_equal(img[..., 0], lbl * 2)
        corners.add(divmod(int(lbl[0, 0]), 12))
    assert corners == {(top, left) for top in range(10 - 8 + 1) for left in range(12 - 8 + 1)}


@pytest.mark.parametrize('seed', range(6))
def test_a_label_kept_at_twice_the_resolution_is_cropped_over_the_same_scene(seed):
    # The image encodes its row and column; the 2x label encodes the image pixel it covers.
    rows, cols = np.mgrid[0:40, 0:60]
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    label = np.kron(rows * 0 + cols, np.ones((2, 2), np.int64)).astype(np.uint8)
    transform = training_transform(short_edge=40, crop_size=24, hflip=True,
                                   keep_label_resolution=True)
    img, lbl = transform(image, label, np.random.default_rng(seed))
    assert img.shape[:2] == (24, 24) and lbl.shape == (48, 48)
    np.testing.assert_array_equal(lbl[::2, ::2], img[..., 1])
    np.testing.assert_array_equal(lbl[1::2, 1::2], img[..., 1])


def test_keeping_the_label_resolution_pads_it_to_scale():
    image = np.zeros((20, 30, 3), np.uint8)
    label = np.ones((40, 60), np.uint8)
    img, lbl = RandomCrop(32)(image, label, np.random.default_rng(0))
    assert img.shape[:2] == (32, 32) and lbl.shape == (64, 64)
    assert (lbl[40:] == 255).all() and (lbl[:40, :60] == 1).all()


def test_flip_mirrors_image_and_label_together():
    image, label = _pair(4, 6)
    flipped = {RandomHorizontalFlip()(image, label, np.random.default_rng(s))[1].tobytes()
               for s in range(20)}
    assert flipped == {label.tobytes(), label[:, ::-1].tobytes()}


def test_the_transform_is_a_function_of_the_seed():
    image, label = _pair(40, 80)
    transform = training_transform(short_edge=36, crop_size=32, hflip=True)
    first = transform(image, label, np.random.default_rng([0, 4, 7, 0, 1]))
    again = transform(image, label, np.random.default_rng([0, 4, 7, 0, 1]))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def _batches(**kwargs):
    return list(ResumableBatchSampler(10, batch_size=3, seed=5, **kwargs))


def test_batch_order_resumes_mid_epoch_exactly():
    straight = _batches(start=0, end=9)
    assert _batches(start=4, end=9) == straight[4:]
    # 3 batches per epoch (10 images, last incomplete batch dropped); epochs reshuffle.
    first_epoch = [i for batch in straight[:3] for i, _ in batch]
    second_epoch = [i for batch in straight[3:6] for i, _ in batch]
    assert len(set(first_epoch)) == 9 and first_epoch != second_epoch


def test_every_sample_seed_is_distinct_and_carries_iteration_rank_slot():
    batches = _batches(start=0, end=4)
    seeds = [seed for batch in batches for _, seed in batch]
    assert len(set(seeds)) == len(seeds)
    assert batches[2][1][1][2:] == (2, 0, 1)


def test_ranks_get_disjoint_shards():
    ranks = [list(ResumableBatchSampler(12, batch_size=2, seed=0, start=0, end=3, rank=r,
                                        world_size=2)) for r in range(2)]
    indices = [{i for batch in rank for i, _ in batch} for rank in ranks]
    assert not indices[0] & indices[1]


def test_too_few_images_for_one_batch_is_an_error():
    with pytest.raises(ValueError, match='cannot fill one batch'):
        ResumableBatchSampler(3, batch_size=2, seed=0, start=0, end=1, world_size=2)


def test_synthetic_world_gives_its_scenes_as_samples_and_caches_them():
    samples = SyntheticStreetWorld('test', num_images=2, height=32, width=48, seed=1, cache=True)
    sample = samples[1]
    assert sample.name == 'synthetic_test_00001'
    assert sample.image.shape == (32, 48, 3) and sample.image.dtype == np.uint8
    scene = samples.scene(1)
    for field in ('image', 'semantic', 'ood'):
        np.testing.assert_array_equal(getattr(sample, field), getattr(scene, field))
    assert samples[1] is sample and samples[-1] is sample
    assert label_space(samples) == (list(CITYSCAPES_CLASSES),
                                    [list(c) for c in SyntheticStreetWorld.palette])


def test_transformed_samples_give_uint8_images_and_labels():
    dataset = TransformedSamples(
        SyntheticStreetWorld('train', num_images=1, height=32, width=64, seed=0),
        training_transform(short_edge=32, crop_size=32, hflip=True))
    image, label = dataset[(0, (0, 4, 0, 0, 0))]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert label.shape == (32, 32)
    images, labels = to_device((image[None], label[None]), 'cpu')
    assert images.dtype == torch.float32 and images.max() <= 1 and labels.dtype == torch.int64


def test_config_dispatch_builds_synthetic_sets_with_the_validation_limit():
    config = resolve({'data': {'dataset': 'synthetic', 'synthetic': {'num_images': 3}},
                      'validation': {'dataset': 'synthetic', 'split': 'test', 'max_images': 2,
                                     'synthetic': {'num_images': 5}}})
    assert len(training_dataset(config)) == 3
    assert len(validation_dataset(config)) == 2
    assert validation_dataset(resolve({})) is None


def test_a_missing_dataset_root_gives_the_readers_message(tmp_path):
    config = resolve({'data': {'dataset': 'cityscapes', 'root': str(tmp_path / 'missing')}})
    with pytest.raises(FileNotFoundError, match='missing'):
        training_dataset(config)
