"""The class names and palette a training run takes from its dataset."""

from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


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
