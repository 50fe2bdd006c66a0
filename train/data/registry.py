"""Dataset readers by name, so configs can say ``dataset: streethazards``."""

from train.data.cityscapes import CityscapesDataset
from dense_ood_ros.datasets.lost_and_found import FishyscapesLF, LostAndFound
from train.data.streethazards import StreetHazardsDataset
from train.data.vistas_np import VistasNPDataset

# Every value is called as ``reader(root, split, **kwargs)`` and returns a map-style dataset
# of dense_ood_ros.datasets.sample.Sample. To add a reader, give it that signature (or wrap it
# in a function that has it) and add one entry here.
DATASETS = {
    'cityscapes': CityscapesDataset,
    'streethazards': StreetHazardsDataset,
    'vistas_np': VistasNPDataset,
    'fishyscapes_lf': FishyscapesLF,
    'lostandfound': LostAndFound,
}


def build_dataset(name, root, split, **kwargs):
    """Return ``DATASETS[name](root, split, **kwargs)``; an unknown name lists the known ones."""
    try:
        reader = DATASETS[name]
    except KeyError:
        raise ValueError(f'unknown dataset {name!r}; known datasets: '
                         f'{", ".join(sorted(DATASETS))}') from None
    return reader(root, split, **kwargs)
