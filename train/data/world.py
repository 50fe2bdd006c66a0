"""Datasets named by a training config: the synthetic street world or a registered reader.

The synthetic world is not in train.data.registry (it has no root on disk); this module adds
it, adapts its Scenes to Samples and hands every other name to ``build_dataset``.
"""

from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from dense_ood_ros.datasets.sample import Sample
from train.data.synthetic import SyntheticStreetWorld


class SyntheticSamples:
    """The synthetic street world as a dataset of Samples (Cityscapes trainIds).

    Scenes are rendered on first access; with `cache` they are kept, which pays off when a
    small world is seen for many epochs (a 128x256 scene costs about 80 KB and 25 ms).
    """

    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, split, *, num_images, height, width, seed, cache=True):
        self.world = SyntheticStreetWorld(split, num_images=num_images, height=height,
                                          width=width, seed=seed)
        self.split = split
        self.cache = {} if cache else None

    def __len__(self):
        return len(self.world)

    def __getitem__(self, index):
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        scene = self.world[index]
        sample = Sample(name=f'synthetic_{self.split}_{index:05d}', image=scene.image,
                        semantic=scene.semantic, ood=scene.ood)
        if self.cache is not None:
            self.cache[index] = sample
        return sample

    @classmethod
    def from_config(cls, section, *, limit=None):
        """Build from a config section ('data' or 'validation'), at most `limit` images."""
        world = section['synthetic']
        num_images = min(world['num_images'], limit or world['num_images'])
        return cls(section['split'], num_images=num_images, height=world['height'],
                   width=world['width'], seed=world['seed'])


def _dataset(section, *, limit=None):
    """Return the dataset a config section ('data' or 'validation') names."""
    name = section['dataset']
    if name == 'synthetic':
        return SyntheticSamples.from_config(section, limit=limit)
    # Imported here so that the synthetic world works while readers are being added.
    from train.data.registry import build_dataset

    kwargs = {'limit': limit} if limit else {}
    return build_dataset(name, section['root'], section['split'], **kwargs)


def training_dataset(config):
    """Return the training dataset of a resolved config."""
    return _dataset(config['data'])


def validation_dataset(config):
    """Return the validation dataset of a resolved config, or None when it names none."""
    section = config['validation']
    if section['dataset'] is None:
        return None
    return _dataset(section, limit=section['max_images'] or None)


def label_space(dataset):
    """Return (class_names, palette) of a dataset: its own lists, else Cityscapes trainIds.

    Readers follow dense_ood_ros.datasets.sample's convention: Cityscapes trainIds unless the
    reader documents its own class list as ``class_names`` (and ``palette``) attributes.
    """
    names = list(getattr(dataset, 'class_names', CITYSCAPES_CLASSES))
    palette = getattr(dataset, 'palette', None)
    if palette is None:
        if len(names) != len(CITYSCAPES_CLASSES):
            raise ValueError(f'dataset {type(dataset).__name__} lists {len(names)} classes but '
                             'no palette')
        palette = CITYSCAPES_PALETTE
    return names, [list(map(int, colour)) for colour in palette]
