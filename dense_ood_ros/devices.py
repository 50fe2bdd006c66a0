"""Which torch device a 'device' setting names: the one resolution the node and training use."""

import torch

DEVICE_FORMS = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def cuda_device_count():
    """Return how many CUDA devices this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(requested, *, cuda_count=None):
    """Map 'auto', 'cpu', 'cuda' or 'cuda:N' to a torch.device this process has.

    'auto' is CUDA when there is a GPU, else the CPU. `cuda_count` (default: what this
    process sees) makes the function pure for tests. Raises ValueError naming the setting
    for a malformed name or a GPU that is not there.
    """
    if cuda_count is None:
        cuda_count = cuda_device_count()
    if requested == 'auto':
        return torch.device('cuda' if cuda_count else 'cpu')
    try:
        resolved = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ValueError(f'device {requested!r}: expected {DEVICE_FORMS}') from None
    if resolved.type not in ('cpu', 'cuda'):
        raise ValueError(f'device {requested!r}: expected {DEVICE_FORMS}')
    if resolved.type == 'cuda':
        if not cuda_count:
            raise ValueError(f'device {requested!r} requested but CUDA is not available')
        if resolved.index is not None:
            check_gpu(resolved.index, cuda_count, f'device {requested!r}')
    return resolved


def check_gpu(index, cuda_count, what):
    """Raise ValueError unless GPU `index` is among the `cuda_count` this process sees."""
    if index >= cuda_count:
        raise ValueError(f'{what} needs GPU {index} but this process sees {cuda_count} '
                         '(check CUDA_VISIBLE_DEVICES and --nproc_per_node)')
