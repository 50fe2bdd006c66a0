"""Joint (image, label) transforms on numpy arrays, random draws from a passed generator.

Every random transform takes a ``numpy.random.Generator`` per call instead of owning one,
so that a sample's crop and flip are a pure function of the seed the sampler hands out
with its index (see train.loader); that is what makes resumed runs repeat them exactly.
"""

import cv2

from dense_ood_ros.labels import IGNORE_INDEX


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, label, rng):
        """Return the transformed (image, label)."""
        for transform in self.transforms:
            image, label = transform(image, label, rng)
        return image, label


class ResizeShortEdge:
    """Resize so the shorter side is `size`: image bilinear, label nearest.

    With `keep_label` the label stays at its original resolution, as the paper trains
    ("we preserve the original label resolution"); the loss then upsamples the logits to it.
    """

    def __init__(self, size, *, keep_label=False):
        self.size = int(size)
        self.keep_label = bool(keep_label)

    def __call__(self, image, label, rng=None):
        """Return the resized (image, label); the label keeps its ids (no interpolation)."""
        height, width = image.shape[:2]
        scale = self.size / min(height, width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        if (new_h, new_w) == (height, width):
            return image, label
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if not self.keep_label:
            label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        return image, label


def _label_scale(image, label):
    """Return the label's size over the image's, per axis (1 when they match)."""
    return label.shape[0] / image.shape[0], label.shape[1] / image.shape[1]


class RandomCrop:
    """Take a random `size` x `size` window; pad first (label with ignore) when too small.

    A label larger than the image (original resolution kept) is cropped over the same region
    of the scene, its window scaled by the label-to-image ratio.
    """

    def __init__(self, size, *, image_fill=0, label_fill=IGNORE_INDEX):
        self.size = int(size)
        self.image_fill = image_fill
        self.label_fill = label_fill

    def __call__(self, image, label, rng):
        """Return the cropped (image, label)."""
        height, width = image.shape[:2]
        fy, fx = _label_scale(image, label)
        pad_h, pad_w = max(self.size - height, 0), max(self.size - width, 0)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                       value=(self.image_fill,) * 3)
            label = cv2.copyMakeBorder(label, 0, round((height + pad_h) * fy) - label.shape[0],
                                       0, round((width + pad_w) * fx) - label.shape[1],
                                       cv2.BORDER_CONSTANT, value=self.label_fill)
            height, width = image.shape[:2]
        top = int(rng.integers(0, height - self.size + 1))
        left = int(rng.integers(0, width - self.size + 1))
        window = (slice(top, top + self.size), slice(left, left + self.size))
        if (fy, fx) == (1.0, 1.0):
            return image[window], label[window]
        # round() of both ends keeps every crop of one image size the same label size.
        label_top, label_left = round(top * fy), round(left * fx)
        label_window = (slice(label_top, label_top + round(self.size * fy)),
                        slice(label_left, label_left + round(self.size * fx)))
        return image[window], label[label_window]


class RandomHorizontalFlip:
    """Mirror image and label left-right with probability `p`."""

    def __init__(self, p=0.5):
        self.p = float(p)

    def __call__(self, image, label, rng):
        """Return the (possibly) flipped (image, label)."""
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label


def training_transform(*, short_edge, crop_size, hflip, keep_label_resolution=False):
    """Return the paper's training transform: resize short edge, random crop, flip.

    `keep_label_resolution` crops the label at its original resolution (the paper, except
    on Vistas-NP) instead of resizing it with the image.
    """
    transforms = [ResizeShortEdge(short_edge, keep_label=keep_label_resolution),
                  RandomCrop(crop_size)]
    if hflip:
        transforms.append(RandomHorizontalFlip())
    return Compose(transforms)
