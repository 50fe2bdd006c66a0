"""task: dense (Algorithm 2): LDN-121 on segmentation data, RealNVP outliers pasted into crops."""

import math

from dense_ood_ros.evaluation import DenseEvaluator
from dense_ood_ros.evaluation_loop import run_evaluation
from dense_ood_ros.labels import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.models import build_segmenter
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.scores import DEFAULT_TEMPERATURES
from train.step import apply_losses, compute_losses, flow_gradient_norms, sample_nll

# What the flow hears, probed on the log row's step (train.step.flow_gradient_norms): the
# gradient norm from each source, the softmax entropy on pasted pixels and the flow's NLL of
# its own samples (nll_samples) next to that of the real patches they replaced (nll).
PROBE_COLUMNS = ('grad_flow_ce', 'grad_flow_kl', 'grad_flow_nll', 'pasted_entropy',
                 'nll_samples')
VALIDATION_KEYS = ('miou', 'pixel_accuracy', 'ap', 'fpr95', 'auroc')
SCALAR_COLUMNS = ('loss', 'ce', 'kl', 'nll', 'size', 'lr_backbone', 'lr_upsampling', 'lr_flow',
                  'it_per_s', 'memory_mb', 'skipped_steps', *PROBE_COLUMNS,
                  *(f'val_{key}' for key in VALIDATION_KEYS))


class DenseTask:
    """The dense task's model factory, step and validation.

    The step probes the flow's gradient sources when asked (read-only: the update that
    follows is the one that runs without probing); validation runs the node's own
    inference path, so its figures describe what the exported checkpoint will do.
    """

    mean, std = IMAGENET_MEAN, IMAGENET_STD
    scalar_columns = SCALAR_COLUMNS
    # The StepResult fields averaged over a log row.
    step_scalars = ('loss', 'ce', 'kl', 'nll', 'size', 'entropy')
    # Names of the model's optimizer groups in the log, and the one shown live.
    lr_names = ('lr_backbone', 'lr_upsampling')
    progress_lr = 'lr_upsampling'
    # Makes the loader's keyed dataset; None is train.loader's TransformedSamples.
    sample_wrapper = None

    def __init__(self, *, arch, backbone_weights, checkpointing, lr_backbone, lr_upsampling,
                 input_short_edge):
        self.arch, self.backbone_weights = arch, backbone_weights
        self.checkpointing = checkpointing
        self.lr_backbone, self.lr_upsampling = lr_backbone, lr_upsampling
        self.input_short_edge = input_short_edge

    def make_model(self, num_classes):
        """Return a fresh LDN-121 for `num_classes` classes."""
        return build_segmenter(self.arch, num_classes, backbone_weights=self.backbone_weights,
                               checkpointing=self.checkpointing)

    @staticmethod
    def param_groups_of(model, lr_backbone, lr_upsampling):
        """Return LDN's two Adam groups: DenseNet-121, and the upsampling path."""
        return [{'params': model.backbone_parameters(), 'lr': lr_backbone},
                {'params': model.upsampling_parameters(), 'lr': lr_upsampling}]

    def param_groups(self, model):
        """Return the optimizer groups of `model` at this task's learning rates."""
        return self.param_groups_of(model, self.lr_backbone, self.lr_upsampling)

    def step(self, parts, images, labels, randomness, *, probe):
        """Run one update of both models; return the StepResult (with probes if `probe`)."""
        parts.optimizers.zero_grad()
        losses = compute_losses(parts.model, parts.flow, images, labels,
                                outliers=parts.outliers, randomness=randomness,
                                normalize=parts.normalize, amp=parts.amp,
                                ignore_index=IGNORE_INDEX)
        probes = None
        if probe:
            norms = flow_gradient_norms(losses, parts.flow)
            probes = {f'grad_flow_{name}': value for name, value in norms.items()}
            probes['nll_samples'] = sample_nll(losses, parts.flow)
        result = apply_losses(losses, flow=parts.flow, optimizers=parts.optimizers,
                              sync=parts.sync)
        result.probes = probes
        return result

    def validate(self, model, val_set, *, class_names, device):
        """Return mIoU, pixel accuracy and MSP AP / FPR95 / AUROC; NaN where undefined."""
        pipeline = DenseOODPipeline(model, class_names=class_names, mean=self.mean,
                                    std=self.std, input_short_edge=self.input_short_edge,
                                    device=str(device), keep_mode=True)
        evaluator = DenseEvaluator(len(class_names),
                                   settings=[('msp', DEFAULT_TEMPERATURES['msp'])])
        # run_evaluation runs the model in eval mode and gives it back its training mode.
        result = run_evaluation(pipeline, val_set, evaluator)
        (row,) = result['rows']
        metrics = {**row, 'pixel_accuracy': result['pixel_accuracy'], 'images': result['images']}
        return {key: math.nan if value is None else value for key, value in metrics.items()}

    @staticmethod
    def log_row(means, probes):
        """Return this task's scalars.csv columns of a log row (step means and probes)."""
        row = {key: means.get(key, math.nan) for key in ('loss', 'ce', 'kl', 'nll', 'size')}
        row['pasted_entropy'] = means.get('entropy', math.nan)
        row.update({key: probes.get(key, math.nan) for key in PROBE_COLUMNS
                    if key != 'pasted_entropy'})
        return row

    @staticmethod
    def validation_row(metrics):
        """Return the scalars.csv columns of validation metrics."""
        return {f'val_{key}': metrics[key] for key in VALIDATION_KEYS}

    @staticmethod
    def validation_message(metrics):
        """Return the line printed after a validation."""
        return (f'validation mIoU {metrics["miou"]:.4f}, AP {metrics["ap"]:.4f}, '
                f'FPR95 {metrics["fpr95"]:.4f} ({metrics["images"]} images)')
