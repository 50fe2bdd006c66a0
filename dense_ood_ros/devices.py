"""Which torch device a 'device' setting names: the one resolution the node and training use.

torch is imported where it is needed: the node checks the setting's form without it when
it runs an .onnx model.
"""

DEVICE_FORMS = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def cuda_device_count():
    """Return how many CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_form_problem(value):
    """Return why `value` is not one of DEVICE_FORMS, or None when it is one (a pure check)."""
    if not isinstance(value, str):
        return f'expected {DEVICE_FORMS}'
    if value in ('auto', 'cpu', 'cuda'):
        return None
    index = value[len('cuda:'):] if value.startswith('cuda:') else ''
    return None if index.isdigit() else f'expected {DEVICE_FORMS}'


def resolve_device(requested, *, cuda_count=None, check_index=True, hint=''):
    """Map 'auto', 'cpu', 'cuda' or 'cuda:N' to a torch.device this process has.

    'auto' is CUDA when there is a GPU, else the CPU. `cuda_count` (default: what this
    process sees) makes the function pure for tests; `check_index` False leaves the GPU
    index unchecked (torchrun replaces it). Raises ValueError naming the setting for a
    malformed name or a GPU that is not there, followed by `hint`.
    """
    problem = device_form_problem(requested)
    if problem:
        raise ValueError(f'device {requested!r}: {problem}')
    import torch

    if cuda_count is None:
        cuda_count = cuda_device_count()
    if requested == 'auto':
        return torch.device('cuda' if cuda_count else 'cpu')
    resolved = torch.device(requested)
    if resolved.type == 'cuda':
        if not cuda_count:
            raise ValueError(f'device {requested!r} requested but CUDA is not available')
        if check_index and resolved.index is not None:
            check_gpu(resolved.index, cuda_count, f'device {requested!r}', hint=hint)
    return resolved


def check_gpu(index, cuda_count, what, *, hint=''):
    """Raise ValueError unless GPU `index` is among the `cuda_count` this process sees."""
    if index >= cuda_count:
        raise ValueError(f'{what} needs GPU {index} but this process sees {cuda_count}'
                         + (f' ({hint})' if hint else ''))
