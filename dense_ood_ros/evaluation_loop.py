"""run_evaluation: a pipeline over a dataset into an evaluator, the model in eval mode meanwhile.

Inference is the node's: the pipeline resizes to its short edge, runs one forward pass per
image and maps every score back to the label resolution, so the figures are the figures of
what the node publishes.
"""

import contextlib
import sys

from tqdm import tqdm

from dense_ood_ros.evaluation import Prediction
from dense_ood_ros.regions import find_regions


@contextlib.contextmanager
def evaluation_mode(module):
    """Run the block with ``module`` (a torch module, or None) in eval mode.

    Afterwards, error or not, every submodule gets back the train/eval mode it had: a
    trainer validating mid-run goes on training, a model that was in eval mode stays so.
    """
    if module is None:
        yield
        return
    modes = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for sub, training in modes:
            sub.training = training


def predict(pipeline, image, *, settings, components=None):
    """Return the Prediction of one RGB frame: one map per setting, one mask per region row.

    Regions are those the node would report at the pipeline's own score, temperature and
    threshold, found with each of ``components.combinations()``.
    """
    map_settings = list(settings)
    own = (pipeline.score, pipeline.temperature) if components else None
    # The node's operating point needs its own map when the score rows do not include it.
    if components and own not in map_settings:
        map_settings.append(own)
    labels, maps = pipeline.infer_scores(image, map_settings)
    regions = []
    if components:
        own_map = maps[map_settings.index(own)]
        for min_area, share in components.combinations():
            _, mask = find_regions(own_map, labels, threshold=pipeline.threshold,
                                   drivable=components.drivable, min_area=min_area,
                                   min_road_share=share, with_mask=True)
            regions.append(mask)
    return Prediction(labels=labels, scores=tuple(maps[:len(settings)]),
                      regions=tuple(regions))


def run_evaluation(pipeline, dataset, evaluator, *, progress=False):
    """Reset ``evaluator``, feed it every sample of ``dataset``; return its evaluate().

    The pipeline computes the evaluator's score rows and, for samples with outlier ground
    truth, its region rows. Its model (an ONNX pipeline has none) runs in eval mode and gets
    its own mode back afterwards, also when a sample raises.
    """
    with evaluation_mode(getattr(pipeline, 'model', None)):
        evaluator.reset()
        for sample in tqdm(dataset, desc='evaluate', unit='image', disable=not progress,
                           file=sys.stderr):
            target = sample.ood if sample.ood is not None else sample.semantic
            if target is not None and target.shape != sample.image.shape[:2]:
                raise ValueError(f'{sample.name}: labels {target.shape} do not match the '
                                 f'image {sample.image.shape[:2]}')
            components = evaluator.components if sample.ood is not None else None
            evaluator.process(predict(pipeline, sample.image, settings=evaluator.settings,
                                      components=components), sample)
        return evaluator.evaluate()
