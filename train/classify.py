"""task: classify (Algorithm 1): VGG-13 + RealNVP on CIFAR-10, in train.trainer's loop.

Checkpointing, resume, logging, the NaN guard, DDP and the outlier modes (rnvp / noise /
none) are the dense task's; what differs is here: the model, its optimizer group, the
pad-and-crop augmentation, the step (train.classify_step) and the validation.
"""

import math

import numpy as np
import torch

from dense_ood_ros.evaluation import ClassifyEvaluator
from train.classify_step import classify_step
from train.data import cifar
from train.evaluate_classify import predict
from train.loader import TransformedSamples
from train.vgg import vgg13_bn

# Zero padding before the random crop: the usual CIFAR augmentation (the paper names none).
PAD = 4

SCALAR_COLUMNS = ('loss', 'ce', 'kl', 'nll', 'lr_classifier', 'lr_flow', 'it_per_s',
                  'memory_mb', 'skipped_steps', 'val_accuracy', 'val_msp')


class PadCropFlip:
    """Zero-pad by `pad`, take a random `size` x `size` crop, mirror with probability 1/2."""

    def __init__(self, size, *, pad=PAD, hflip=True):
        self.size, self.pad, self.hflip = int(size), int(pad), bool(hflip)

    def __call__(self, image, rng):
        """Return the augmented (H, W, 3) image; draws come from `rng` only."""
        pad = self.pad
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        top = int(rng.integers(0, padded.shape[0] - self.size + 1))
        left = int(rng.integers(0, padded.shape[1] - self.size + 1))
        crop = padded[top:top + self.size, left:left + self.size]
        if self.hflip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return crop


class TransformedImages(TransformedSamples):
    """Keyed (index, seed) -> (image uint8 CHW, class id) for train.loader's batch sampler.

    As train.loader.TransformedSamples: the augmentation is seeded from the key alone, so a
    resumed run sees the same crops and flips.
    """

    def __getitem__(self, key):
        index, seed = key
        image, label = self.dataset[index]
        image = self.transform(image, np.random.default_rng(list(seed)))
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return image, torch.tensor(label, dtype=torch.int64)


class ClassifyTask:
    """Algorithm 1's model factory, step and validation for train.trainer's loop.

    VGG-13 instead of LDN-121, one Adam group at `lr`, whole-image outliers
    (train.classify_step) and test-split accuracy as validation. The trainer's resume
    files and checkpoints keep one layout for both tasks (the classifier's weights under
    'segmenter' / 'state_dict', arch 'vgg13_bn').
    """

    mean, std = cifar.MEAN, cifar.STD
    scalar_columns = SCALAR_COLUMNS
    # The StepResult fields averaged over a log row.
    step_scalars = ('loss', 'ce', 'kl', 'nll')
    lr_names = ('lr_classifier',)
    progress_lr = 'lr_classifier'
    sample_wrapper = TransformedImages

    def __init__(self, *, lr):
        self.lr = lr

    @staticmethod
    def make_model(num_classes):
        """Return a fresh CIFAR VGG-13 with batch norm."""
        return vgg13_bn(num_classes)

    def param_groups(self, model):
        """Return one Adam group with every parameter at the task's learning rate."""
        return [{'params': model.parameters(), 'lr': self.lr}]

    @staticmethod
    def step(parts, images, labels, randomness, *, probe):
        """Run one joint update of Algorithm 1 (no flow probes); return the StepResult."""
        del probe  # the dense task's gradient probes have no counterpart here
        return classify_step(parts.model, parts.flow, images, labels, outliers=parts.outliers,
                             randomness=randomness, optimizers=parts.optimizers,
                             normalize=parts.normalize, amp=parts.amp, sync=parts.sync)

    def validate(self, model, val_set, *, class_names, device):
        """Return accuracy and mean max-softmax on the validation images."""
        del class_names  # the labels are the class ids
        evaluator = ClassifyEvaluator()
        # predict() runs the classifier in eval mode and gives it back its training mode.
        evaluator.process(*predict(model, val_set.images, mean=self.mean, std=self.std,
                                   device=device), val_set.labels)
        result = evaluator.evaluate()
        # An empty set has no accuracy: NaN in the log, like the dense task's undefined metrics.
        return {key: math.nan if result[key] is None else result[key]
                for key in ('accuracy', 'msp', 'images')}

    @staticmethod
    def log_row(means, probes):
        """Return this task's scalars.csv columns of a log row (the dense task's probes aside)."""
        del probes
        return {key: means.get(key, math.nan) for key in ('loss', 'ce', 'kl', 'nll')}

    @staticmethod
    def validation_row(metrics):
        """Return the scalars.csv columns of validation metrics."""
        return {'val_accuracy': metrics['accuracy'], 'val_msp': metrics['msp']}

    @staticmethod
    def validation_message(metrics):
        """Return the line printed after a validation."""
        return (f'validation accuracy {metrics["accuracy"]:.4f}, mean max-softmax '
                f'{metrics["msp"]:.4f} ({metrics["images"]} images)')


def epochs_to_iterations(epochs, *, num_images=50000, batch_size=64):
    """Return the iterations of `epochs` passes (train.loader drops each epoch's last batch).

    The paper's 100 epochs of batch 64 on CIFAR-10's 50000 images: 781 * 100 = 78100.
    """
    return math.floor(num_images / batch_size) * epochs
