"""Dataset readers by name, with what the tools need to know of each (split, protocol).

The one table of dataset names: ``dataset_to_bag`` reads it as it is, and
``train.data.registry`` extends it with the training readers, from which ``train.config``
and ``python -m train.evaluate`` take their names.
"""

import dataclasses
import typing

from dense_ood_ros.datasets.lost_and_found import FishyscapesLF, LostAndFound


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset.

    ``reader(root, split, *, limit=None)`` returns a map-style dataset of
    dense_ood_ros.datasets.sample.Sample; ``split`` is the one evaluation and replay read;
    ``per_image`` scores anomalies per image instead of pooling pixels (StreetHazards).
    """

    reader: typing.Callable
    split: str
    per_image: bool = False
    description: str = ''


# Readers the installed package carries: the anomaly test sets the runtime tools replay.
DATASETS = {
    'fishyscapes_lf': DatasetEntry(FishyscapesLF, 'test', description='Fishyscapes L&F'),
    'lostandfound': DatasetEntry(LostAndFound, 'test', description='original Lost & Found'),
    'synthetic_lf': DatasetEntry(
        FishyscapesLF, 'test',
        description='the street world `python -m train.data.synthetic` writes in the '
                    'Fishyscapes L&F layout'),
}
# Names the tools that read data from disk have always taken. A training config's
# 'synthetic' is another thing: the world rendered in memory (train.build, train.data.synthetic).
ALIASES = {'synthetic': 'synthetic_lf'}


def known_names(registry=DATASETS):
    """Return every name a tool reading from disk accepts: the registered ones, the aliases."""
    return tuple(registry) + tuple(alias for alias, name in ALIASES.items() if name in registry)


def lookup(name, registry=DATASETS):
    """Return the DatasetEntry of ``name`` (or an alias); an unknown name lists the known."""
    entry = registry.get(ALIASES.get(name, name))
    if entry is None:
        raise ValueError(f'unknown dataset {name!r}; known datasets: '
                         f'{", ".join(sorted(known_names(registry)))}')
    return entry


def build_dataset(name, root, split=None, *, registry=DATASETS, **kwargs):
    """Return the dataset ``name`` of ``root`` at ``split`` (default: the entry's own)."""
    entry = lookup(name, registry)
    return entry.reader(root, entry.split if split is None else split, **kwargs)
