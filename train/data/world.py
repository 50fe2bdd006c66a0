"""Datasets named by a training config: the synthetic street world or a registered reader.

The synthetic world is not in train.data.registry (it has no root on disk); this module adds
it and hands every other name to ``build_dataset``.
"""

from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from train.data.synthetic import SyntheticStreetWorld


def _dataset(section, *, limit=None):
    """Return the dataset a config section ('data' or 'validation') names."""
    name = section['dataset']
    if name == 'synthetic':
        return SyntheticStreetWorld.from_config(section, limit=limit)
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
