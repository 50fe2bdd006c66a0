"""Mean / std normalisation of images, in the two forms the package feeds its networks.

Training and the classifier's evaluation see float images in [0, 1] (Normalizer); the node's
pipeline and the exported ONNX graph see 0..255 pixels and fold the scale into the constants
(pixel_normalization). Each form keeps its own arithmetic, so outputs stay bit-identical.
"""

import torch


def channel_tensor(values, *, dtype=torch.float32, device='cpu'):
    """Return three per-channel values as a (1, 3, 1, 1) tensor for NCHW batches."""
    return torch.tensor(values, dtype=dtype, device=device).view(1, 3, 1, 1)


class Normalizer:
    """ImageNet-style ``(x - mean) / std`` for (N, 3, H, W) images in [0, 1]."""

    def __init__(self, mean, std, *, device='cpu'):
        self.mean = channel_tensor(mean, device=device)
        self.std = channel_tensor(std, device=device)

    def __call__(self, images):
        """Return the normalised images."""
        return (images - self.mean) / self.std


def pixel_normalization(mean, std, *, dtype=torch.float32, device='cpu'):
    """Return (offset, scale) with ``(pixels - offset) * scale`` normalising 0..255 pixels."""
    offset = channel_tensor(mean, dtype=dtype, device=device) * 255
    scale = 1.0 / (channel_tensor(std, dtype=dtype, device=device) * 255)
    return offset, scale
