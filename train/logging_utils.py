"""What a training run leaves to read: a CSV of scalars, TensorBoard events, sample grids."""

import csv
import importlib.util
import math
import os
import resource

import cv2
import numpy as np
import torch

from dense_ood_ros.evaluation_loop import evaluation_mode


def tensorboard_available():
    """Return whether the tensorboard package (needed by SummaryWriter) is installed."""
    return importlib.util.find_spec('tensorboard') is not None


class ScalarLogger:
    """Append rows of named scalars to ``scalars.csv`` and, if available, TensorBoard.

    The CSV header is fixed by `columns`; a resumed run appends to the existing file.
    """

    def __init__(self, out_dir, columns, *, tensorboard=True):
        self.path = os.path.join(out_dir, 'scalars.csv')
        self.columns = ['iteration', *columns]
        os.makedirs(out_dir, exist_ok=True)
        new_file = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        self._stream = open(self.path, 'a', newline='', encoding='utf-8')
        self._csv = csv.DictWriter(self._stream, fieldnames=self.columns, restval='',
                                   extrasaction='ignore')
        if new_file:
            self._csv.writeheader()
        self._writer = None
        if tensorboard and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=os.path.join(out_dir, 'tensorboard'))

    def log(self, iteration, scalars):
        """Write one row; NaN values (e.g. KL in the 'none' mode) are left empty in the CSV."""
        row = {'iteration': iteration}
        for key, value in scalars.items():
            value = float(value)
            row[key] = '' if math.isnan(value) else f'{value:.6g}'
            if self._writer is not None and not math.isnan(value):
                self._writer.add_scalar(key, value, iteration)
        self._csv.writerow(row)
        self._stream.flush()

    def close(self):
        """Flush and close the CSV and the TensorBoard writer."""
        self._stream.close()
        if self._writer is not None:
            self._writer.close()


def image_grid(images, *, columns=4, padding=2):
    """Return an (H, W, 3) uint8 grid of (N, 3, h, w) images in [0, 1], white padding."""
    images = images.detach().float().clamp(0, 1).cpu().numpy()
    count, _, height, width = images.shape
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding,
                    3), 255, np.uint8)
    for i, image in enumerate(images):
        top = padding + (i // columns) * (height + padding)
        left = padding + (i % columns) * (width + padding)
        grid[top:top + height, left:left + width] = np.round(
            image.transpose(1, 2, 0) * 255).astype(np.uint8)
    return grid


@torch.no_grad()
def save_flow_samples(flow, path, *, size, count=8, seed=0, device='cpu'):
    """Write a PNG grid of `count` RealNVP samples of side `size`.

    A fixed latent seed shows the same z at every iteration, so successive grids show how
    the flow changes rather than sampling noise.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    with evaluation_mode(flow):
        samples = flow.sample(count, size, size, generator=generator)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grid = cv2.cvtColor(image_grid(samples), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(os.fspath(path), grid):
        raise OSError(f'could not write {path}')


def peak_memory_mb(device):
    """Return the peak memory so far in MB: CUDA allocations, else the process's peak RSS."""
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    # Linux reports ru_maxrss in kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device):
    """Start the peak of peak_memory_mb afresh; return False where it cannot be (the CPU).

    CUDA's allocator keeps a resettable peak; the kernel's peak RSS (ru_maxrss) only grows.
    """
    device = torch.device(device)
    if device.type != 'cuda':
        return False
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return True


def peak_memory_report(device, *, since_iteration=None):
    """Return the line of ``--report-memory``: the peak and what it includes.

    `since_iteration` is the iteration after which reset_peak_memory ran, or None when the
    peak covers the whole process.
    """
    device = torch.device(device)
    figure = f'peak memory: {peak_memory_mb(device):.0f} MB'
    if device.type != 'cuda':
        return (f'{figure} (peak RSS of the process on {device}, which cannot be reset: it '
                'includes start-up, building the models, data loading, the first (warm-up) '
                'step and any validation, not the training steps alone)')
    if since_iteration is None:
        return (f'{figure} (torch.cuda.max_memory_allocated on {device} over the whole run, '
                'including the warm-up of its first step: cuDNN benchmark workspaces and the '
                'first allocation of the optimizer state; no step ran after it)')
    return (f'{figure} (torch.cuda.max_memory_allocated on {device} after the warm-up step, '
            f'from iteration {since_iteration} on: training steps, plus any validation or '
            'sample grids in that span)')


def current_memory_mb(device):
    """Return the memory in use now in MB: CUDA allocations, else the resident set size."""
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.memory_allocated(device) / 2 ** 20
    try:
        with open('/proc/self/statm', encoding='ascii') as stream:
            resident_pages = int(stream.read().split()[1])
        return resident_pages * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_memory_mb(device)
