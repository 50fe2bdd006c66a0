"""python -m train.obstacle_misses: which road obstacles a checkpoint takes for road.

docs/method.md (sections 6 to 8) counts, on a held-out split of the synthetic world, the
obstacle instances whose mean anomaly score lies below the median score of their image's
road: obstacles the model finds no more unusual than the asphalt they stand on. Those set
FPR95, which is decided by the hardest 5 % of the obstacles' pixels. The counts are by how
the world paints an obstacle (vivid, grey, road-like) and by its kind, which only the
rendered scenes know (the split on disk has the masks, not the styles), so the world is
rendered anew here with the arguments that wrote the split.

    python -m train.obstacle_misses --checkpoint runs/demo/model.pt \
        --num-images 40 --height 256 --width 512 --seed 1
"""

import argparse
import collections
import sys

import numpy as np

from dense_ood_ros.atomic_file import write_json
from dense_ood_ros.checkpoint import CheckpointError, load_checkpoint
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.scores import SCORES
from train.data.synthetic import SyntheticStreetWorld


def instance_rows(score, scene):
    """Return one dict per obstacle instance of `scene`, scored by the HxW map `score`.

    Each row has the instance's kind, style, pixel count, mean score, the image's road median
    score and whether the mean lies below it (None when the image shows no road pixel).
    """
    if score.shape != scene.anomaly_ids.shape:
        raise ValueError(f'score map is {_size(score.shape)} but the scene is '
                         f'{_size(scene.anomaly_ids.shape)}')
    road = score[scene.ood == 0]
    median = float(np.median(road)) if road.size else None
    rows = []
    for k, (kind, style) in enumerate(zip(scene.anomalies, scene.anomaly_styles), 1):
        mask = scene.anomaly_ids == k
        mean = float(score[mask].mean())
        rows.append({'kind': kind, 'style': style, 'pixels': int(mask.sum()), 'mean_score': mean,
                     'road_median': median,
                     'below_road_median': None if median is None else mean < median})
    return rows


def _size(shape):
    return 'x'.join(str(side) for side in shape)


def summarize(rows):
    """Return {'style': {...}, 'kind': {...}}: instances and those below the road median."""
    summary = {'style': collections.defaultdict(lambda: {'instances': 0, 'below': 0}),
               'kind': collections.defaultdict(lambda: {'instances': 0, 'below': 0})}
    for row in rows:
        if row['below_road_median'] is None:
            continue
        for group in ('style', 'kind'):
            counts = summary[group][row[group]]
            counts['instances'] += 1
            counts['below'] += int(row['below_road_median'])
    return {group: dict(sorted(counts.items())) for group, counts in summary.items()}


def count_misses(pipeline, world, *, score='msp', temperature=10.0):
    """Return the instance rows of every scene of `world`, with the image index added."""
    rows = []
    for index in range(len(world)):
        scene = world.scene(index)
        _, (score_map,) = pipeline.infer_scores(scene.image, [(score, temperature)])
        rows.extend({'image': index, **row} for row in instance_rows(score_map, scene))
    return rows


def format_summary(summary):
    """Return the summary as a plain-text table, styles first, then kinds."""
    lines = [f'{"group":10s} {"instances":>9s} {"below road median":>18s}']
    for group in ('style', 'kind'):
        for name, counts in summary[group].items():
            lines.append(f'{name:10s} {counts["instances"]:9d} {counts["below"]:18d}')
    return '\n'.join(lines)


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='python -m train.obstacle_misses',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--num-images', type=int, default=40)
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=512)
    parser.add_argument('--seed', type=int, default=1,
                        help="the world's seed; 1 is the held-out split of docs/method.md")
    parser.add_argument('--score', choices=SCORES, default='msp')
    parser.add_argument('--temperature', type=float, default=10.0)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--json', help='write the summary and every instance here')
    return parser.parse_args(argv)


def main(argv=None):
    """Entry point: print the table, optionally write the JSON; 2 on bad input."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if not args.temperature > 0:
            raise ValueError(f'temperature must be positive, got {args.temperature}')
        if args.num_images < 1:
            raise ValueError(f'num-images must be at least 1, got {args.num_images}')
        world = SyntheticStreetWorld('test', num_images=args.num_images, height=args.height,
                                     width=args.width, seed=args.seed)
        pipeline = DenseOODPipeline.from_checkpoint(load_checkpoint(args.checkpoint),
                                                    device=args.device)
        # The world renders lazily, so a bad size is only found by the first scene.
        rows = count_misses(pipeline, world, score=args.score, temperature=args.temperature)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f'train.obstacle_misses: {error}', file=sys.stderr)
        return 2
    summary = summarize(rows)
    print(format_summary(summary))
    if args.json:
        write_json(args.json, {
            'checkpoint': args.checkpoint, 'score': args.score, 'temperature': args.temperature,
            'world': {'split': 'test', 'num_images': args.num_images, 'height': args.height,
                      'width': args.width, 'seed': args.seed},
            'summary': summary, 'instances': rows})
    return 0


if __name__ == '__main__':
    sys.exit(main())
