"""python -m train.evaluate: the table, the JSON, calibration, and bad input named."""

import json

import numpy as np
import pytest
import torch

from dense_ood_ros.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from dense_ood_ros.metrics import PerImageOODAccumulator
from dense_ood_ros.models import ldn121
from dense_ood_ros.pipeline import DenseOODPipeline
from train.data.registry import build_dataset
from dense_ood_ros.datasets.sample import Sample
from train.data.synthetic import write_lf_layout
from train.evaluate import evaluate, format_table, main, settings_from_args


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_lf')
    write_lf_layout(root, num_images=3, height=64, width=128, seed=5)
    return root


@pytest.fixture(scope='module')
def cityscapes_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'ldn19.pt'
    save_checkpoint(path, Checkpoint(
        arch='ldn121', num_classes=19, state_dict=ldn121(19).state_dict(),
        class_names=list(CITYSCAPES_CLASSES), palette=[list(c) for c in CITYSCAPES_PALETTE],
        input_short_edge=64))
    return path


class OracleScorer:
    """Scores every pixel with its own ground truth: a perfect anomaly detector."""

    num_classes = 19

    def __init__(self, samples):
        self._truth = {s.image.tobytes(): s for s in samples}

    def infer_scores(self, rgb, settings):
        sample = self._truth[rgb.tobytes()]
        score = (sample.ood == 1).astype(np.float32)
        return sample.semantic.copy(), [score for _ in settings]


def test_default_rows_are_the_papers():
    assert settings_from_args(('msp', 'entropy'), None) == [
        ('msp', 1.0), ('msp', 10.0), ('entropy', 1.0), ('entropy', 2.0)]
    assert settings_from_args(('entropy',), [3.0]) == [('entropy', 3.0)]
    with pytest.raises(ValueError, match='temperature'):
        settings_from_args(('msp',), [0.0])


def test_ground_truth_scores_give_perfect_metrics(world):
    samples = list(build_dataset('fishyscapes_lf', world, 'test'))
    assert all(s.semantic is not None and (s.ood == 1).any() for s in samples)
    evaluation = evaluate(OracleScorer(samples), samples, [('msp', 1.0)], progress=False)
    (row,) = evaluation.rows
    assert row['ap'] == pytest.approx(1.0) and row['auroc'] == pytest.approx(1.0)
    assert row['fpr95'] == 0.0
    assert row['miou'] == pytest.approx(1.0)
    # And a scorer that inverts the truth is as wrong as it can be.
    inverted = OracleScorer(samples)
    inverted.infer_scores = lambda rgb, settings: (
        OracleScorer.infer_scores(inverted, rgb, settings)[0],
        [1.0 - m for m in OracleScorer.infer_scores(inverted, rgb, settings)[1]])
    (row,) = evaluate(inverted, samples, [('msp', 1.0)], progress=False).rows
    assert row['auroc'] == pytest.approx(0.0) and row['fpr95'] == 1.0


def test_a_set_without_outliers_gives_null_ood_metrics_and_keeps_segmentation(world):
    samples = list(build_dataset('fishyscapes_lf', world, 'test'))
    inliers_only = [Sample(name=s.name, image=s.image, semantic=s.semantic,
                           ood=np.where(s.ood == 1, 255, s.ood).astype(np.uint8))
                    for s in samples]
    evaluation = evaluate(OracleScorer(inliers_only), inliers_only, [('msp', 1.0)],
                          progress=False)
    (row,) = evaluation.rows
    assert row['ap'] is None and row['fpr95'] is None and row['auroc'] is None
    assert row['miou'] == pytest.approx(1.0) and evaluation.pixel_accuracy == pytest.approx(1.0)


def test_per_image_protocol_skips_images_without_outliers(world):
    samples = list(build_dataset('fishyscapes_lf', world, 'test'))
    clean = Sample(name='clean', image=samples[0].image[::-1].copy(),
                   semantic=samples[0].semantic[::-1].copy(),
                   ood=np.where(samples[0].ood == 1, 0, samples[0].ood).astype(np.uint8))
    scorer = OracleScorer(samples + [clean])
    evaluation = evaluate(scorer, samples + [clean], [('msp', 1.0)], per_image=True,
                          progress=False)
    (accumulator,) = evaluation.accumulators
    assert isinstance(accumulator, PerImageOODAccumulator)
    summary = accumulator.compute()
    assert summary['images_used'] == 3 and summary['images_skipped'] == 1
    assert evaluation.rows[0]['ap'] == pytest.approx(1.0)


def test_command_writes_the_table_and_json(world, cityscapes_checkpoint, tmp_path, capsys):
    out = tmp_path / 'result.json'
    assert main(['--checkpoint', str(cityscapes_checkpoint), '--dataset', 'synthetic',
                 '--root', str(world), '--device', 'cpu', '--json', str(out),
                 '--region-min-area', '5', '50', '--drivable-classes']) == 0
    table = capsys.readouterr().out
    assert 'mIoU' in table and 'AUROC' in table and '(msp, T=10)' in table
    assert 'sIoU' in table and 'PPV' in table
    result = json.loads(out.read_text())
    assert set(result) == {'dataset', 'checkpoint', 'images', 'pixels', 'rows', 'components',
                           'operating_point'}
    assert result['operating_point']['drivable_classes'] == []
    small, large = result['components']
    assert (small['min_area'], large['min_area']) == (5, 50)
    # The same obstacles; a larger minimum area can only drop regions.
    assert small['truth_components'] == large['truth_components'] > 0
    assert small['predicted_components'] >= large['predicted_components']
    assert result['dataset'] == 'synthetic' and result['images'] == 3
    assert result['pixels'] == 3 * 64 * 128
    assert [(r['score'], r['temperature']) for r in result['rows']] == [
        ('msp', 1.0), ('msp', 10.0), ('entropy', 1.0), ('entropy', 2.0)]
    for row in result['rows']:
        assert set(row) == {'score', 'temperature', 'miou', 'ap', 'fpr95', 'auroc'}
        for key in ('miou', 'ap', 'fpr95', 'auroc'):
            assert 0.0 <= row[key] <= 1.0, (key, row)
    # The rows are the node's pipeline, pooled: recompute one by hand.
    pipeline = DenseOODPipeline.from_checkpoint(cityscapes_checkpoint, device='cpu',
                                                score='entropy', temperature=2.0)
    from dense_ood_ros.metrics import ood_metrics
    samples = list(build_dataset('fishyscapes_lf', world, 'test'))
    scores = np.concatenate([pipeline.infer(s.image).score.ravel() for s in samples])
    labels = np.concatenate([s.ood.ravel() for s in samples])
    expected = ood_metrics(scores, labels)
    for key, value in expected.items():
        assert result['rows'][3][key] == pytest.approx(value, abs=1e-9)


def test_calibration_writes_a_threshold_that_reaches_the_tpr(world, cityscapes_checkpoint,
                                                             tmp_path, capsys):
    calibrated = tmp_path / 'calibrated.pt'
    assert main(['--checkpoint', str(cityscapes_checkpoint), '--dataset', 'synthetic',
                 '--root', str(world), '--device', 'cpu', '--score', 'msp',
                 '--temperature', '10', '--calibrate-tpr', '0.95',
                 '--write-checkpoint', str(calibrated)]) == 0
    assert 'reaches TPR' in capsys.readouterr().out
    ckpt = load_checkpoint(calibrated)
    assert ckpt.default_score == 'msp' and ckpt.temperatures['msp'] == 10.0
    pipeline = DenseOODPipeline.from_checkpoint(ckpt, device='cpu')
    hits = total = 0
    for sample in build_dataset('fishyscapes_lf', world, 'test'):
        mask = pipeline.infer(sample.image).mask
        hits += mask[sample.ood == 1].sum()
        total += (sample.ood == 1).sum()
    assert hits / total >= 0.95
    # Calibration needs one operating point.
    assert main(['--checkpoint', str(cityscapes_checkpoint), '--dataset', 'synthetic',
                 '--root', str(world), '--device', 'cpu', '--calibrate-tpr', '0.95',
                 '--write-checkpoint', str(tmp_path / 'x.pt')]) == 2
    assert 'exactly one score' in capsys.readouterr().err


def test_wrong_root_and_missing_checkpoint_are_named(tmp_path, cityscapes_checkpoint,
                                                     capsys):
    empty = tmp_path / 'not_a_dataset'
    empty.mkdir()
    assert main(['--checkpoint', str(cityscapes_checkpoint), '--dataset', 'fishyscapes_lf',
                 '--root', str(empty), '--device', 'cpu']) == 2
    err = capsys.readouterr().err
    assert 'not_a_dataset' in err and 'images' in err
    assert main(['--checkpoint', str(tmp_path / 'gone.pt'), '--dataset', 'synthetic',
                 '--root', str(empty)]) == 2
    assert 'gone.pt' in capsys.readouterr().err


def test_format_table_prints_percent_and_dashes():
    table = format_table([{'score': 'msp', 'temperature': 10.0, 'miou': None, 'ap': 0.5,
                           'fpr95': 0.25, 'auroc': 0.875}], 'model')
    assert 'model (msp, T=10)' in table and '50.00' in table and '87.50' in table
    assert table.splitlines()[-1].split()[3] == '-'
