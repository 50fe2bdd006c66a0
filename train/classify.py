"""task: classify: train.joint's loop for Algorithm 1 (VGG-13 + RealNVP on CIFAR-10).

ClassifyTrainer is JointTrainer with the task hooks swapped: CIFAR-10 instead of
segmentation datasets, VGG-13 instead of LDN-121, one Adam group at optim.lr_classifier,
pad-and-crop augmentation, train.classify_step instead of train.step and test-split
accuracy as validation. Checkpointing, resume, logging, the NaN guard, DDP and the outlier
modes (rnvp / noise / none) are the dense task's.
"""

import math
import sys

import numpy as np
import torch
from tqdm import tqdm

from train.classify_step import classify_step
from train.data import cifar
from train.evaluate_classify import predict
from train.joint import JointTrainer
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


class ClassifyTrainer(JointTrainer):
    """Algorithm 1 in train.joint's loop; ``segmenter`` holds the classifier.

    The attribute keeps the dense name so that resume files and checkpoints have one layout
    (the classifier's weights under 'segmenter' / 'state_dict', arch 'vgg13_bn').
    """

    mean, std = cifar.MEAN, cifar.STD
    scalar_columns = SCALAR_COLUMNS
    lr_names = ('lr_classifier',)
    progress_lr = 'lr_classifier'
    sample_wrapper = TransformedImages

    @property
    def classifier(self):
        """Return VGG-13, the same module as ``segmenter``."""
        return self.segmenter

    def _build_datasets(self):
        data, validation = self.config['data'], self.config['validation']
        train_set = cifar.Cifar10(data['root'], data['split'])
        val_set = None
        if self.env.is_main and validation['dataset'] is not None:
            val_set = cifar.Cifar10(validation['root'], validation['split'],
                                    limit=validation['max_images'] or None)
        return train_set, val_set

    def _build_model(self, num_classes):
        return vgg13_bn(num_classes)

    def _param_groups(self):
        return [{'params': self.segmenter.parameters(),
                 'lr': self.config['optim']['lr_classifier']}]

    def _training_transform(self):
        data = self.config['data']
        return PadCropFlip(data['crop_size'], hflip=data['hflip'])

    def _step(self, images, labels, randomness):
        return classify_step(self.model, self.flow, images, labels, outliers=self.outliers,
                             randomness=randomness, optimizers=self.optimizers,
                             normalize=self.normalize, amp=self.amp, sync=self.sync)

    def _validation_metrics(self):
        from dense_ood_ros.evaluation import ClassifyEvaluator

        evaluator = ClassifyEvaluator()
        # predict() runs the classifier in eval mode and gives it back its training mode.
        evaluator.process(*predict(self.segmenter, self.val_set.images, mean=self.mean,
                                   std=self.std, device=self.device), self.val_set.labels)
        return evaluator.evaluate()

    def _log_validation(self, logger, metrics):
        if logger is None or metrics is None:
            return
        logger.log(self.iteration, {'val_accuracy': metrics['accuracy'],
                                    'val_msp': metrics['msp']})
        tqdm.write(f'iteration {self.iteration}: validation accuracy '
                   f'{metrics["accuracy"]:.4f}, mean max-softmax {metrics["msp"]:.4f} '
                   f'({metrics["images"]} images)', file=sys.stderr)


def epochs_to_iterations(epochs, *, num_images=50000, batch_size=64):
    """Return the iterations of `epochs` passes (train.loader drops each epoch's last batch).

    The paper's 100 epochs of batch 64 on CIFAR-10's 50000 images: 781 * 100 = 78100.
    """
    return math.floor(num_images / batch_size) * epochs
