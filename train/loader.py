"""Resumable, shardable batches: the data order and each sample's random seed per iteration.

Iteration ``it`` of rank ``r`` always gets the same images with the same crops and flips,
whether the run started at 0 or resumed at ``it``: the order comes from
DistributedSampler (a permutation seeded with seed + epoch, sharded over ranks) and each
sample's transform seed is ``[seed, stream, it, r, slot]``.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

# Keeps transform seeds apart from the training step's streams (train.step).
_TRANSFORM_STREAM = 4


class ResumableBatchSampler:
    """Yield, for iterations [start, end), lists of (index, seed) for one rank.

    Epoch e is DistributedSampler's permutation for set_epoch(e) (drop_last, so every rank
    gets the same number of batches); the last incomplete batch of an epoch is dropped.
    """

    def __init__(self, num_samples, *, batch_size, seed, start, end, rank=0, world_size=1):
        self.sampler = DistributedSampler(range(num_samples), num_replicas=world_size,
                                          rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.seed, self.rank = seed, rank
        self.start, self.end = start, end
        self.batches_per_epoch = len(self.sampler) // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f'{num_samples} training images cannot fill one batch of '
                             f'{batch_size} per process on {world_size} process(es)')

    def position(self, iteration):
        """Return (epoch, batch index within the epoch) of an iteration."""
        return divmod(iteration, self.batches_per_epoch)

    def __len__(self):
        return max(self.end - self.start, 0)

    def __iter__(self):
        epoch_cached, indices = None, None
        for iteration in range(self.start, self.end):
            epoch, k = self.position(iteration)
            if epoch != epoch_cached:
                self.sampler.set_epoch(epoch)
                indices, epoch_cached = list(self.sampler), epoch
            chunk = indices[k * self.batch_size:(k + 1) * self.batch_size]
            yield [(index, (self.seed, _TRANSFORM_STREAM, iteration, self.rank, slot))
                   for slot, index in enumerate(chunk)]


class TransformedSamples(Dataset):
    """Wrap a dataset of Samples: ``dataset[(index, seed)]`` -> (image uint8 CHW, label HW).

    The transform's generator is seeded from the key, never from worker state, so the
    result does not depend on which worker loads it.
    """

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        sample = self.dataset[index]
        if sample.semantic is None:
            raise ValueError(f'training sample {sample.name} has no semantic labels')
        rng = np.random.default_rng(list(seed))
        image, label = self.transform(sample.image, sample.semantic, rng)
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return image, torch.from_numpy(np.ascontiguousarray(label))


def training_loader(dataset, transform, *, batch_size, seed, start, end, rank=0, world_size=1,
                    num_workers=0, pin_memory=False, wrapper=None):
    """Return a DataLoader over iterations [start, end) of a rank's batches.

    `wrapper(dataset, transform)` makes the keyed dataset (default TransformedSamples, the
    dense task's; train.classify passes its own for (image, class id) pairs).
    """
    wrapper = wrapper or TransformedSamples
    batch_sampler = ResumableBatchSampler(len(dataset), batch_size=batch_size, seed=seed,
                                          start=start, end=end, rank=rank,
                                          world_size=world_size)
    return DataLoader(wrapper(dataset, transform), batch_sampler=batch_sampler,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=False)


def to_device(batch, device):
    """Return (images float in [0, 1], labels int64) on `device` from a loader batch."""
    images, labels = batch
    images = images.to(device, non_blocking=True).float().div_(255.0)
    return images, labels.to(device, non_blocking=True).long()
