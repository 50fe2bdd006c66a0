"""Dataset readers by name, so configs can say ``dataset: streethazards``.

The runtime package's table (dense_ood_ros.datasets.registry: the Lost & Found sets) with
the training readers added; train.config and train.evaluate take their names from here.
"""

from dense_ood_ros.datasets import registry as runtime
from dense_ood_ros.datasets.registry import DatasetEntry
from train.data.cityscapes import CityscapesDataset
from train.data.streethazards import StreetHazardsDataset
from train.data.vistas_np import VistasNPDataset

# To add a reader, give it the signature ``reader(root, split, *, limit=None)`` returning a
# map-style dataset of dense_ood_ros.datasets.sample.Sample (or wrap it in a function that
# has it) and add one entry here.
DATASETS = {
    'cityscapes': DatasetEntry(CityscapesDataset, 'val', description='Cityscapes'),
    # Scored per image with the benchmark's own FPR95 rule, so numbers compare with its own.
    'streethazards': DatasetEntry(StreetHazardsDataset, 'test', per_image=True,
                                  description='StreetHazards'),
    'vistas_np': DatasetEntry(VistasNPDataset, 'test', description='Vistas-NP'),
    **runtime.DATASETS,
}


def lookup(name):
    """Return the DatasetEntry of ``name`` (or an alias); an unknown name lists the known."""
    return runtime.lookup(name, DATASETS)


def known_names():
    """Return every name python -m train.evaluate accepts: the registered ones, the aliases."""
    return runtime.known_names(DATASETS)


def build_dataset(name, root, split=None, **kwargs):
    """Return the dataset ``name`` of ``root`` at ``split`` (default: its evaluation split)."""
    return runtime.build_dataset(name, root, split, registry=DATASETS, **kwargs)
