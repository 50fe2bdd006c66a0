"""Outlier pasting: every size at every edge stays in bounds; small crops; the mask and x'."""

import pytest
import torch

from train.paste import fit_size, match_shade, paste, random_positions

SIZES = (8, 16, 24, 32)


def _images(batch, height, width):
    return torch.arange(batch * 3 * height * width, dtype=torch.float32).reshape(
        batch, 3, height, width) / (batch * 3 * height * width)


@pytest.mark.parametrize('size', SIZES)
def test_every_size_fits_at_every_edge_and_corner(size):
    height, width = 40, 56
    edges = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
             (0, (width - size) // 2), (height - size, 3), ((height - size) // 2, 0),
             (5, width - size)]
    images = _images(len(edges), height, width)
    patches = torch.full((len(edges), 3, size, size), -1.0)
    pasted = paste(images, patches, edges)
    for b, (top, left) in enumerate(edges):
        window = pasted.images[b, :, top:top + size, left:left + size]
        assert torch.equal(window, patches[b])
        assert torch.equal(pasted.replaced[b], images[b, :, top:top + size, left:left + size])
        expected_mask = torch.zeros(height, width, dtype=torch.bool)
        expected_mask[top:top + size, left:left + size] = True
        assert torch.equal(pasted.mask[b], expected_mask)
        # Outside the patch the image is untouched.
        assert torch.equal(pasted.images[b][:, ~expected_mask], images[b][:, ~expected_mask])
    assert int(pasted.mask.sum()) == len(edges) * size * size


@pytest.mark.parametrize('size', SIZES)
def test_positions_reach_both_edges_and_never_leave_the_crop(size):
    height, width = 36, 44
    positions = random_positions(4000, size, height, width,
                                 generator=torch.Generator().manual_seed(size))
    tops = {t for t, _ in positions}
    lefts = {x for _, x in positions}
    assert min(tops) == 0 and max(tops) == height - size
    assert min(lefts) == 0 and max(lefts) == width - size
    assert tops == set(range(height - size + 1))


def test_a_patch_exactly_as_large_as_the_crop_covers_it():
    images = _images(2, 16, 16)
    patches = torch.zeros(2, 3, 16, 16)
    pasted = paste(images, patches, random_positions(
        2, 16, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert pasted.positions == [(0, 0), (0, 0)]
    assert bool(pasted.mask.all())


def test_positions_outside_the_crop_are_refused():
    images = _images(1, 16, 16)
    with pytest.raises(ValueError, match='leaves the 16x16 image'):
        paste(images, torch.zeros(1, 3, 8, 8), [(9, 0)])
    with pytest.raises(ValueError, match='does not fit'):
        random_positions(1, 20, 16, 32, generator=torch.Generator())


@pytest.mark.parametrize('size, height, width, divisor, expected', [
    (48, 128, 128, 8, 48),    # fits: unchanged
    (48, 40, 128, 8, 40),     # clipped to the shorter side
    (48, 128, 37, 8, 32),     # clipped, then down to a multiple of the flow's divisor
    (48, 37, 37, 1, 37),      # noise patches need no divisor
    (16, 8, 8, 8, 8),
])
def test_fit_size_clips_to_the_crop_then_to_the_divisor(size, height, width, divisor,
                                                        expected):
    fitted = fit_size(size, height, width, divisor=divisor)
    assert fitted == expected
    assert fitted <= min(height, width) and fitted % divisor == 0


def test_fit_size_raises_clearly_when_nothing_fits():
    with pytest.raises(ValueError, match='at least 8x8'):
        fit_size(16, 7, 64, divisor=8)


def test_crops_smaller_than_the_patch_still_paste_in_bounds():
    height, width = 20, 28
    size = fit_size(48, height, width, divisor=4)
    images = _images(3, height, width)
    pasted = paste(images, torch.zeros(3, 3, size, size), random_positions(
        3, size, height, width, generator=torch.Generator().manual_seed(1)))
    assert size == 20
    assert int(pasted.mask.sum()) == 3 * size * size


def test_the_gradient_reaches_the_patches_and_x_prime_is_detached():
    images = _images(2, 12, 12).requires_grad_(False)
    patches = torch.rand(2, 3, 4, 4, requires_grad=True)
    pasted = paste(images, patches, [(0, 0), (8, 8)])
    assert not pasted.replaced.requires_grad
    pasted.images.sum().backward()
    assert torch.equal(patches.grad, torch.ones_like(patches))


def _textured(batch, size, *, seed):
    generator = torch.Generator().manual_seed(seed)
    return 0.5 + 0.05 * torch.randn((batch, 3, size, size), generator=generator)


def test_match_shade_with_probability_zero_returns_the_patches_and_draws_nothing():
    patches = _textured(2, 8, seed=0)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    out = match_shade(patches, _images(2, 16, 16), [(0, 0), (4, 4)], probability=0.0,
                      max_offset=0.2, generator=generator)
    assert out is patches
    assert torch.equal(generator.get_state(), state)


def test_a_matched_patch_keeps_its_texture_and_takes_the_covered_shade_plus_an_offset():
    images = torch.zeros((3, 3, 16, 16))
    images[:, 0], images[:, 1], images[:, 2] = 0.3, 0.4, 0.5
    images[1, :, 8:, 8:] = 0.6          # patch 1 covers a brighter corner
    patches = _textured(3, 8, seed=1)
    positions = [(0, 0), (8, 8), (4, 2)]
    out = match_shade(patches, images, positions, probability=1.0, max_offset=0.1,
                      generator=torch.Generator().manual_seed(2))
    texture = patches - patches.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out - out.mean(dim=(2, 3), keepdim=True), texture)
    for b, (top, left) in enumerate(positions):
        covered = images[b, :, top:top + 8, left:left + 8].mean(dim=(1, 2))
        offset = out[b].mean(dim=(1, 2)) - covered
        # One offset for all three channels, within the bound.
        torch.testing.assert_close(offset, offset[:1].expand(3))
        assert abs(float(offset[0])) <= 0.1 + 1e-6


def test_match_shade_chooses_about_the_requested_share_and_clips_to_the_image_range():
    patches = torch.rand((400, 3, 4, 4))
    images = torch.full((400, 3, 4, 4), 0.95)
    out = match_shade(patches, images, [(0, 0)] * 400, probability=0.3, max_offset=0.2,
                      generator=torch.Generator().manual_seed(0))
    changed = (out != patches).flatten(1).any(dim=1).float().mean()
    assert 0.22 < float(changed) < 0.38
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_the_gradient_reaches_the_patches_through_the_move_less_its_mean():
    patches = _textured(1, 4, seed=3).requires_grad_()
    weights = torch.randn((1, 3, 4, 4), generator=torch.Generator().manual_seed(4))
    out = match_shade(patches, torch.full((1, 3, 8, 8), 0.5), [(2, 2)], probability=1.0,
                      max_offset=0.05, generator=torch.Generator().manual_seed(0))
    (out * weights).sum().backward()
    torch.testing.assert_close(patches.grad, weights - weights.mean(dim=(2, 3), keepdim=True))
