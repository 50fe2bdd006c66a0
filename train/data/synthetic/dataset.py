"""The synthetic street world as a dataset of Scenes, and the scene seeds of its splits."""

import operator

import numpy as np

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

    Torch-free, but usable as a ``torch.utils.data.Dataset``: ``world[i]`` is a ``Scene``.
    """

    def __init__(self, split, *, num_images, height=256, width=512, seed=0):
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if num_images < 0 or seed < 0:
            raise ValueError('num_images and seed must be non-negative')
        self.split, self.num_images = split, int(num_images)
        self.height, self.width, self.seed = int(height), int(width), int(seed)

    def __len__(self):
        return self.num_images

    def seed_of(self, index):
        """Return the scene seed of an image index (negative indices count from the end)."""
        index = operator.index(index)
        if index < 0:
            index += self.num_images
        if not 0 <= index < self.num_images:
            raise IndexError(f'index {index} out of range for {self.num_images} images')
        return image_seed(self.seed, self.split, index)

    def __getitem__(self, index):
        return render_scene(self.seed_of(index), height=self.height, width=self.width,
                            anomalies=self.split == 'test')
