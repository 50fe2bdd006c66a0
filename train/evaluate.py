"""python -m train.evaluate: the paper's tables (mIoU, AP, FPR95, AUROC) for a checkpoint.

``--task classify`` evaluates a CIFAR-10 classifier instead (Table 1, train.evaluate_classify);
the default ``--task dense`` is what follows.

Below the table, the component-level metrics of the road-anomaly benchmarks (sIoU, PPV, mean
F1; dense_ood_ros.component_metrics) of the regions the node would publish on
``~/anomaly_detections`` at the checkpoint's operating point, for each ``--region-min-area``.

Inference is the node's: DenseOODPipeline resizes to the checkpoint's short edge, runs one
forward pass per image and maps every score back to the label resolution, so the figures
here are the figures of what the node publishes.
"""

import argparse
import dataclasses
import os
import sys

from dense_ood_ros.atomic_file import write_json
from dense_ood_ros.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dense_ood_ros.evaluation import ComponentSettings, DenseEvaluator
from dense_ood_ros.evaluation_loop import run_evaluation
from dense_ood_ros.metrics import PerImageOODAccumulator
from dense_ood_ros.node_params import REGION_DEFAULTS
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.regions import default_drivable_ids, drivable_ids
from dense_ood_ros.scores import DEFAULT_TEMPERATURES, SCORES
from train.data.registry import build_dataset, known_names, lookup

# The rows of the paper's tables: each score at T = 1 and at its recommended temperature.
TABLE_TEMPERATURES = {score: (1.0, t) for score, t in DEFAULT_TEMPERATURES.items()}
TASKS = ('dense', 'classify')


@dataclasses.dataclass
class Evaluation:
    """What one pass over a dataset measured."""

    images: int
    pixels: int
    rows: list
    accumulators: list
    pixel_accuracy: float = None
    # Component-level metrics of the node's regions, one dict per region minimum area.
    components: list = dataclasses.field(default_factory=list)


def settings_from_args(scores, temperatures):
    """Return the (score, temperature) rows: given temperatures for each score, or defaults."""
    rows = []
    for score in scores:
        for temperature in temperatures or TABLE_TEMPERATURES[score]:
            if not temperature > 0:
                raise ValueError(f'temperature must be positive, got {temperature}')
            rows.append((score, float(temperature)))
    return rows


def evaluate(pipeline, samples, settings, *, per_image=False, progress=True, components=None):
    """Score every sample with every setting; return an Evaluation with one row per setting.

    ``components`` (ComponentSettings) adds the component-level metrics of the regions the
    node would report at the pipeline's own operating point (none for a set without
    outlier ground truth).
    """
    evaluator = DenseEvaluator(pipeline.num_classes, settings=settings, per_image=per_image,
                               components=components)
    result = run_evaluation(pipeline, samples, evaluator, progress=progress)
    return Evaluation(images=result['images'], pixels=result['pixels'], rows=result['rows'],
                      accumulators=evaluator.accumulators,
                      pixel_accuracy=result['pixel_accuracy'],
                      components=result['components'] if result['ood_images'] else [])


def format_components(rows, pipeline):
    """Return the component-level metrics as a small table (percent), one row per min area."""
    lines = [f'regions at {pipeline.score}, T={pipeline.temperature:g}, threshold '
             f'{pipeline.threshold:.6g}:',
             f'{"min area":>8} {"road":>5} {"sIoU":>6} {"PPV":>6} {"F1":>6} {"obstacles":>9} '
             f'{"regions":>7}']
    for row in rows:
        cells = ['-' if row[key] is None else f'{100 * row[key]:.2f}'
                 for key in ('siou', 'ppv', 'f1_mean')]
        lines.append(f'{row["min_area"]:>8} {row["min_road_share"]:>5.2f} '
                     + ' '.join(f'{c:>6}' for c in cells)
                     + f' {row["truth_components"]:>9} {row["predicted_components"]:>7}')
    return '\n'.join(lines)


def format_table(rows, model, *, label=None):
    """Return the rows as the paper prints them: percent, one row per score and temperature.

    `label(row)` names a row (default: the model, score and temperature).
    """
    label = label or (lambda row: f'{model} ({row["score"]}, T={row["temperature"]:g})')
    header = f'{"Model":<40} {"mIoU":>6} {"AP":>6} {"FPR95":>6} {"AUROC":>6}'
    lines = [header, '-' * len(header)]
    for row in rows:
        name = label(row)
        cells = ['-' if row[key] is None else f'{100 * row[key]:.2f}'
                 for key in ('miou', 'ap', 'fpr95', 'auroc')]
        lines.append(f'{name:<40} ' + ' '.join(f'{c:>6}' for c in cells))
    return '\n'.join(lines)


def calibrate(checkpoint, evaluation, settings, *, tpr, out_path):
    """Write a copy of the checkpoint whose threshold reaches `tpr` on the evaluated set."""
    if len(settings) != 1:
        raise ValueError('calibration needs exactly one score and one temperature: pass '
                         '--score msp|entropy and a single --temperature')
    if isinstance(evaluation.accumulators[0], PerImageOODAccumulator):
        raise ValueError('calibration pools pixels; it is not defined for per-image datasets')
    point = evaluation.accumulators[0].operating_point(tpr)
    score, temperature = settings[0]
    calibrated = dataclasses.replace(
        checkpoint, default_score=score, threshold=point['threshold'],
        temperatures={**checkpoint.temperatures, score: temperature})
    save_checkpoint(out_path, calibrated)
    return point


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='python -m train.evaluate',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=TASKS, default='dense',
                        help='classify: Table 1 for a CIFAR-10 classifier (see --task '
                             'classify --help)')
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--dataset', required=True, choices=sorted(known_names()))
    parser.add_argument('--root', required=True, help='dataset root directory')
    parser.add_argument('--score', default='both', choices=SCORES + ('both',))
    parser.add_argument('--temperature', type=float, nargs='+',
                        help='temperatures for each score (default: msp 1 and 10, '
                             'entropy 1 and 2)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--limit', type=int, help='evaluate the first N images only')
    parser.add_argument('--calibrate-tpr', type=float,
                        help='write a checkpoint whose threshold reaches this TPR')
    parser.add_argument('--write-checkpoint', help='where --calibrate-tpr writes')
    parser.add_argument('--region-min-area', type=int, nargs='+',
                        default=[REGION_DEFAULTS['min_area']],
                        help="the node's region_min_area; several values compare them "
                             '(component metrics of ~/anomaly_detections)')
    parser.add_argument('--region-min-road-share', type=float, nargs='+',
                        default=[REGION_DEFAULTS['min_road_share']],
                        help="the node's region_min_road_share; several values compare them")
    parser.add_argument('--drivable-classes', nargs='*',
                        help="the node's drivable_classes (default: its default, road); none "
                             'given keeps every region')
    args = parser.parse_args(argv)
    if min(args.region_min_area) < 1:
        parser.error('--region-min-area must be >= 1')
    if not all(0.0 <= share <= 1.0 for share in args.region_min_road_share):
        parser.error('--region-min-road-share must lie in [0, 1]')
    if (args.calibrate_tpr is None) != (args.write_checkpoint is None):
        parser.error('--calibrate-tpr and --write-checkpoint go together')
    return args


def main(argv=None):
    """Entry point of `python -m train.evaluate`."""
    argv = sys.argv[1:] if argv is None else argv
    task_parser = argparse.ArgumentParser(add_help=False)
    task_parser.add_argument('--task', choices=TASKS, default='dense')
    task, rest = task_parser.parse_known_args(argv)
    if task.task == 'classify':
        from train.evaluate_classify import main as classify_main

        return classify_main(rest)
    args = parse_args(argv)
    scores = SCORES if args.score == 'both' else (args.score,)
    try:
        settings = settings_from_args(scores, args.temperature)
        checkpoint = load_checkpoint(args.checkpoint)
        pipeline = DenseOODPipeline.from_checkpoint(checkpoint, device=args.device)
        samples = build_dataset(args.dataset, args.root, limit=args.limit)
        drivable = (default_drivable_ids(pipeline.class_names) if args.drivable_classes is None
                    else drivable_ids(pipeline.class_names, args.drivable_classes))
        components = ComponentSettings(drivable=drivable,
                                       min_areas=tuple(args.region_min_area),
                                       min_road_shares=tuple(args.region_min_road_share))
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f'train.evaluate: {error}', file=sys.stderr)
        return 2
    try:
        evaluation = evaluate(pipeline, samples, settings,
                              per_image=lookup(args.dataset).per_image,
                              components=components)
    except (FileNotFoundError, ValueError) as error:
        print(f'train.evaluate: {error}', file=sys.stderr)
        return 2
    model = os.path.splitext(os.path.basename(args.checkpoint))[0]
    print(format_table(evaluation.rows, model))
    if evaluation.components:
        print(format_components(evaluation.components, pipeline))
    payload = {'dataset': args.dataset, 'checkpoint': os.path.abspath(args.checkpoint),
               'images': evaluation.images, 'pixels': evaluation.pixels,
               'rows': evaluation.rows, 'components': evaluation.components,
               'operating_point': {'score': pipeline.score,
                                   'temperature': pipeline.temperature,
                                   'threshold': pipeline.threshold,
                                   'drivable_classes': [pipeline.class_names[i]
                                                        for i in drivable]}}
    if args.calibrate_tpr is not None:
        try:
            point = calibrate(checkpoint, evaluation, settings, tpr=args.calibrate_tpr,
                              out_path=args.write_checkpoint)
        except ValueError as error:
            print(f'train.evaluate: {error}', file=sys.stderr)
            return 2
        payload['calibration'] = {**point, 'score': settings[0][0],
                                  'temperature': settings[0][1],
                                  'checkpoint': os.path.abspath(args.write_checkpoint)}
        print(f'threshold {point["threshold"]:.6g} reaches TPR {point["tpr"]:.4f} at FPR '
              f'{point["fpr"]:.4f}; wrote {args.write_checkpoint}')
    if args.json:
        write_json(args.json, payload)
    return 0


if __name__ == '__main__':
    sys.exit(main())
