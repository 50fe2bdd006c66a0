"""Pasting outlier patches into training crops: positions, the outlier mask and x'."""

import dataclasses

import torch


@dataclasses.dataclass
class Pasted:
    """The result of pasting one patch into each image of a batch.

    `images` (N, 3, H, W) carries the gradient of the patches; `mask` (N, H, W) is True on
    pasted pixels (s_ij = 1); `replaced` (N, 3, s, s) holds the real pixels the patches
    covered (x', detached); `positions` lists each patch's (top, left).
    """

    images: torch.Tensor
    mask: torch.Tensor
    replaced: torch.Tensor
    positions: list


def fit_size(size, height, width, *, divisor=1):
    """Return the patch side to use in a `height` x `width` crop for a requested `size`.

    Rule for crops smaller than the patch: the side is clipped to the crop's shorter side,
    then rounded down to a multiple of `divisor` (the flow's 2 ** num_scales), so the patch
    always fits and the flow can still sample it. Raises ValueError when not even one
    multiple of `divisor` fits.
    """
    if size < 1 or divisor < 1:
        raise ValueError(f'size and divisor must be positive, got {size} and {divisor}')
    fitted = min(size, height, width) // divisor * divisor
    if fitted < 1:
        raise ValueError(f'a {height}x{width} crop cannot hold an outlier patch whose side is '
                         f'a multiple of {divisor}; use crops of at least {divisor}x{divisor}')
    return fitted


def random_positions(batch_size, size, height, width, *, generator):
    """Return `batch_size` (top, left) pairs drawn uniformly so an s x s patch fits.

    top is uniform in [0, height - size] and left in [0, width - size], both ends included.
    """
    if size > height or size > width:
        raise ValueError(f'a {size}x{size} patch does not fit a {height}x{width} crop')
    tops = torch.randint(0, height - size + 1, (batch_size,), generator=generator)
    lefts = torch.randint(0, width - size + 1, (batch_size,), generator=generator)
    return list(zip(tops.tolist(), lefts.tolist()))


def paste(images, patches, positions):
    """Paste patches[b] into images[b] at positions[b]; return a Pasted.

    `images` (N, 3, H, W) and `patches` (N, 3, s, s) are in [0, 1] image space: pasting
    happens before mean/std normalisation, so the segmenter sees the outliers exactly as it
    sees real pixels. The copy into a fresh tensor keeps autograd's path to the patches.
    """
    batch, _, height, width = images.shape
    size = patches.shape[-1]
    if patches.shape[0] != batch or patches.shape[-2] != size or len(positions) != batch:
        raise ValueError(f'need one square patch and one position per image; got images '
                         f'{tuple(images.shape)}, patches {tuple(patches.shape)}, '
                         f'{len(positions)} positions')
    replaced = covered_pixels(images, positions, size)
    mixed = images.clone()
    mask = torch.zeros((batch, height, width), dtype=torch.bool, device=images.device)
    for b, (top, left) in enumerate(positions):
        window = (slice(top, top + size), slice(left, left + size))
        mixed[b, :, window[0], window[1]] = patches[b].to(mixed.dtype)
        mask[b, window[0], window[1]] = True
    return Pasted(images=mixed, mask=mask, replaced=replaced, positions=list(positions))


def covered_pixels(images, positions, size):
    """Return (N, 3, s, s), detached: the pixels of images[b] under an s x s patch at positions[b].

    Raises ValueError naming the patch whose window leaves the image.
    """
    height, width = images.shape[-2:]
    windows = []
    for b, (top, left) in enumerate(positions):
        if not (0 <= top <= height - size and 0 <= left <= width - size):
            raise ValueError(f'patch {b} at (top={top}, left={left}) with side {size} leaves '
                             f'the {height}x{width} image')
        windows.append(images[b, :, top:top + size, left:left + size])
    return torch.stack(windows).detach()


def match_shade(patches, images, positions, *, probability, max_offset, generator):
    """Return the patches, some of them moved to the shade of the pixels they will cover.

    Each patch is chosen with `probability`; a chosen patch keeps its texture (its
    deviations from its own per-channel mean) but takes the per-channel mean of the pixels
    of `images` it will replace at `positions`, plus one offset for all three channels drawn
    uniformly from [-max_offset, max_offset], then is clipped to [0, 1]. Why: the outliers
    the segmenter misses are the ones close to the shade of the road under them (docs/
    method.md section 6), and flow samples pasted as made rarely are. The move is affine in
    the patch, so the gradient still reaches the flow (minus the mean, which it replaces).
    Draws two numbers per patch from `generator` (CPU), and none when `probability` is 0.
    """
    if probability <= 0.0:
        return patches
    batch, size = patches.shape[0], patches.shape[-1]
    chosen = torch.rand(batch, generator=generator) < probability
    offsets = (2.0 * torch.rand(batch, generator=generator) - 1.0) * max_offset
    covered = covered_pixels(images, positions, size)
    target = covered.mean(dim=(2, 3), keepdim=True) + offsets.to(covered).view(-1, 1, 1, 1)
    moved = (patches - patches.mean(dim=(2, 3), keepdim=True) + target.to(patches.dtype))
    keep = chosen.to(patches.device).view(-1, 1, 1, 1)
    return torch.where(keep, moved.clamp(0.0, 1.0), patches)
