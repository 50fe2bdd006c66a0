"""The synthetic street world as a dataset of Samples, and the scene seeds of its splits."""

import operator

import numpy as np

from dense_ood_ros.datasets.sample import Sample
from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from train.data.synthetic.scene import render_scene

SPLITS = ('train', 'val', 'test')


def image_seed(seed, split, index):
    """Return the scene seed of image ``index`` of ``split``; splits never share a seed."""
    code = SPLITS.index(split)
    state = np.random.SeedSequence([seed, code, index]).generate_state(2, np.uint32)
    # The split code sits in the two low bits, so seeds of different splits cannot coincide.
    return ((int(state[0]) << 29 | int(state[1]) >> 3) << 2) | code  # < 2**63


class SyntheticStreetWorld:
    """Map-style dataset of rendered street scenes; only the 'test' split has anomalies.

    Torch-free, but usable as a ``torch.utils.data.Dataset``: ``world[i]`` is a ``Sample``
    (Cityscapes trainIds, the Lost & Found ``ood`` convention) for training and evaluation;
    ``world.scene(i)`` is the full ``Scene``, with the anomaly kinds and instance ids.

    Scenes are rendered on access; with ``cache`` the Samples are kept, which pays off when a
    small world is seen for many epochs (a 128x256 scene costs about 80 KB and 25 ms).
    """

    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, split, *, num_images, height=256, width=512, seed=0, cache=False):
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if num_images < 0 or seed < 0:
            raise ValueError('num_images and seed must be non-negative')
        self.split, self.num_images = split, int(num_images)
        self.height, self.width, self.seed = int(height), int(width), int(seed)
        self._cache = {} if cache else None

    def __len__(self):
        return self.num_images

    def _index(self, index):
        index = operator.index(index)
        if index < 0:
            index += self.num_images
        if not 0 <= index < self.num_images:
            raise IndexError(f'index {index} out of range for {self.num_images} images')
        return index

    def seed_of(self, index):
        """Return the scene seed of an image index (negative indices count from the end)."""
        return image_seed(self.seed, self.split, self._index(index))

    def scene(self, index):
        """Return the Scene of an image index, rendered anew (the cache holds Samples only)."""
        return render_scene(self.seed_of(index), height=self.height, width=self.width,
                            anomalies=self.split == 'test')

    def __getitem__(self, index):
        index = self._index(index)
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        scene = self.scene(index)
        sample = Sample(name=f'synthetic_{self.split}_{index:05d}', image=scene.image,
                        semantic=scene.semantic, ood=scene.ood)
        if self._cache is not None:
            self._cache[index] = sample
        return sample
