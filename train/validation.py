"""Periodic validation through the node's own inference path: mIoU and pooled AP / FPR95."""

import math

from dense_ood_ros.metrics import ConfusionMatrix, OODAccumulator
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.scores import DEFAULT_TEMPERATURES


def evaluate(model, dataset, *, class_names, mean, std, input_short_edge, device, score='msp',
             temperature=None):
    """Return {'miou', 'pixel_accuracy', 'ap', 'fpr95', 'auroc', 'images'} of `model`.

    Every image goes through DenseOODPipeline exactly as on the vehicle (resize to
    `input_short_edge`, pad, one forward pass, back to label resolution), so the numbers
    describe what the exported checkpoint will do. mIoU needs ``semantic`` labels and the
    OOD metrics ``ood`` labels with both outlier and inlier pixels (pooled over
    images); otherwise the value is NaN. The
    model is left in training mode.
    """
    temperature = temperature or DEFAULT_TEMPERATURES[score]
    pipeline = DenseOODPipeline(model, class_names=class_names, mean=mean, std=std,
                                input_short_edge=input_short_edge, score=score,
                                temperature=temperature, device=str(device))
    confusion = ConfusionMatrix(len(class_names))
    ood = OODAccumulator()
    seen_semantic = False
    outliers = inliers = 0
    try:
        for index in range(len(dataset)):
            sample = dataset[index]
            result = pipeline.infer(sample.image)
            if sample.semantic is not None:
                confusion.add(result.labels, sample.semantic)
                seen_semantic = True
            if sample.ood is not None:
                ood.add(result.score, sample.ood)
                outliers += int((sample.ood == 1).sum())
                inliers += int((sample.ood == 0).sum())
    finally:
        model.train()
    metrics = {'miou': math.nan, 'pixel_accuracy': math.nan, 'ap': math.nan,
               'fpr95': math.nan, 'auroc': math.nan, 'images': len(dataset)}
    if seen_semantic:
        segmentation = confusion.compute()
        metrics['miou'] = segmentation['miou']
        metrics['pixel_accuracy'] = segmentation['pixel_accuracy']
    if outliers and inliers:
        metrics.update(ood.compute())
    return metrics
