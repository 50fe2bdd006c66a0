"""What obstacle hypotheses (~/anomaly_detections) add to the pipeline's CPU time per frame.

One 1024x2048 frame through DenseOODPipeline (LDN-121, 19 classes, network at short edge 512,
CPU), then ``find_regions`` on its outputs, timed in one run, interleaved; the figure is the
ratio of medians. The weights are random, so the threshold is set at the score's 95th
percentile (5 % of the frame anomalous, in many blobs: more than a trained model marks) and
the drivable area is the most frequent label, so that the road test has work to do.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from dense_ood_ros.labels import CITYSCAPES_CLASSES, IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.models import ldn121
from dense_ood_ros.node_params import REGION_DEFAULTS
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.regions import find_regions, RegionPersistence

# Goal (issue 14): regions add at most 5 % to the pipeline's time on a 2048x1024 frame.
GOAL = 0.05
ANOMALOUS_SHARE = 0.05


def measure(*, height, width, short_edge, repeats):
    """Return (median pipeline s, median regions s, regions found) on one random frame."""
    torch.manual_seed(0)
    pipeline = DenseOODPipeline(ldn121(len(CITYSCAPES_CLASSES)), class_names=CITYSCAPES_CLASSES,
                                mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                input_short_edge=short_edge, device='cpu')
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    result = pipeline.infer(rgb)  # warm-up, and the outputs the regions are cut from
    threshold = float(np.quantile(result.score, 1.0 - ANOMALOUS_SHARE))
    drivable = (int(np.bincount(result.labels.ravel()).argmax()),)
    persistence = RegionPersistence(2, 3)

    def regions():
        found = find_regions(result.score, result.labels, threshold=threshold,
                             drivable=drivable, min_area=REGION_DEFAULTS['min_area'],
                             min_road_share=REGION_DEFAULTS['min_road_share'])
        persistence.update(found)
        return found

    found = regions()
    pipeline_s, regions_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.infer(rgb)
        pipeline_s.append(time.perf_counter() - start)
        for _ in range(5):  # short: several samples per pipeline sample
            start = time.perf_counter()
            regions()
            regions_s.append(time.perf_counter() - start)
    return statistics.median(pipeline_s), statistics.median(regions_s), len(found)


def main():
    """Run the measurement and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--short-edge', type=int, default=512)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    pipeline_s, regions_s, count = measure(height=args.height, width=args.width,
                                           short_edge=args.short_edge, repeats=args.repeats)
    ratio = regions_s / pipeline_s
    verdict = 'meets' if ratio <= GOAL else 'MISSES'
    print(f'region_cost: regions/pipeline = {ratio:.4f} (regions {regions_s * 1e3:.1f} ms for '
          f'{count} regions at {ANOMALOUS_SHARE:.0%} anomalous pixels, pipeline '
          f'{pipeline_s * 1e3:.0f} ms per {args.height}x{args.width} frame, cpu); '
          f'goal <= {GOAL}: {verdict}')


if __name__ == '__main__':
    main()
