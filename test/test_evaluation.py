"""The evaluators' protocol (reset / process / evaluate) and run_evaluation's model mode."""

import csv

import numpy as np
import pytest
import torch

from cifar_fakes import single_thread
from dense_ood_ros.datasets.sample import Sample
from dense_ood_ros.evaluation import (ClassifyEvaluator, ComponentSettings, DenseEvaluator,
                                      GroundTruth, Prediction)
from dense_ood_ros.evaluation_loop import evaluation_mode, run_evaluation
from dense_ood_ros.labels import IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.metrics import ConfusionMatrix, ood_metrics
from dense_ood_ros.models import ldn121
from dense_ood_ros.pipeline import DenseOODPipeline
from test_train_loop import tiny_config
from train.evaluate_classify import predict
from train.build import build_trainer
from train.vgg import vgg13_bn

CLASSES = ['road', 'car', 'sky']
SETTINGS = [('msp', 1.0), ('entropy', 2.0)]


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    with single_thread():
        yield


def _frame(seed, shape=(6, 8)):
    """Return (Prediction with two score maps, GroundTruth) of random values."""
    rng = np.random.default_rng(seed)
    truth = GroundTruth(ood=rng.choice(np.array([0, 1, 255], np.uint8), size=shape),
                        semantic=rng.integers(0, 3, size=shape, dtype=np.uint8))
    prediction = Prediction(labels=rng.integers(0, 3, size=shape, dtype=np.uint8),
                            scores=tuple(rng.random(shape, dtype=np.float32) for _ in SETTINGS))
    return prediction, truth


def _evaluated(frames, **kwargs):
    evaluator = DenseEvaluator(len(CLASSES), settings=SETTINGS, **kwargs)
    for prediction, truth in frames:
        evaluator.process(prediction, truth)
    return evaluator.evaluate()


def test_two_frames_pool_like_one_frame_of_both():
    frames = [_frame(0), _frame(1)]
    joined = (Prediction(labels=np.concatenate([p.labels for p, _ in frames]),
                         scores=tuple(np.concatenate([p.scores[i] for p, _ in frames])
                                      for i in range(len(SETTINGS)))),
              GroundTruth(ood=np.concatenate([t.ood for _, t in frames]),
                          semantic=np.concatenate([t.semantic for _, t in frames])))
    apart, together = _evaluated(frames), _evaluated([joined])
    for key in ('rows', 'miou', 'pixel_accuracy', 'pixels', 'anomaly_pixel_share'):
        assert apart[key] == together[key], key
    assert (apart['images'], together['images']) == (2, 1)
    # And the pooled figures are the metrics of all pixels at once.
    for i, row in enumerate(apart['rows']):
        expected = ood_metrics(joined[0].scores[i], joined[1].ood)
        assert {key: row[key] for key in expected} == expected
    confusion = ConfusionMatrix(len(CLASSES))
    confusion.add(joined[0].labels, joined[1].semantic)
    assert apart['miou'] == confusion.compute()['miou'] == apart['rows'][0]['miou']


def test_reset_forgets_every_frame():
    evaluator = DenseEvaluator(len(CLASSES), settings=SETTINGS, per_image=True,
                               components=ComponentSettings(drivable=(), min_areas=(1, 4)))
    fresh = evaluator.evaluate()
    for seed in range(3):
        prediction, truth = _frame(seed)
        regions = tuple(score > 0.5 for score in prediction.scores)
        evaluator.process(Prediction(labels=prediction.labels, scores=prediction.scores,
                                     regions=regions), truth)
    assert evaluator.evaluate()['rows'][0]['ap'] is not None
    evaluator.reset()
    assert evaluator.evaluate() == fresh
    assert fresh['images'] == 0 and fresh['rows'][0]['ap'] is None and fresh['miou'] is None
    assert [row['truth_components'] for row in fresh['components']] == [0, 0]


def test_undefined_metrics_are_none_with_the_reason_and_faults_raise():
    prediction, truth = _frame(3)
    inliers = GroundTruth(ood=np.where(truth.ood == 1, 0, truth.ood).astype(np.uint8))
    result = _evaluated([(prediction, inliers)])
    assert result['rows'][0]['ap'] is None and 'no outlier' in result['ood_undefined']
    # Labels without semantic truth give no mIoU; a frame without ood truth no OOD row.
    assert result['miou'] is None
    assert _evaluated([(prediction, GroundTruth(semantic=truth.semantic))])['ood_images'] == 0
    broken = Prediction(labels=prediction.labels,
                        scores=(np.full_like(prediction.scores[0], np.nan),) * 2)
    with pytest.raises(ValueError, match='finite'):
        _evaluated([(broken, truth)])
    with pytest.raises(ValueError, match='1 score maps for 2 score rows'):
        _evaluated([(Prediction(scores=prediction.scores[:1]), truth)])


def test_per_image_averages_frames_where_pooling_does_not():
    frames = [_frame(4), _frame(5)]
    pooled, per_image = _evaluated(frames), _evaluated(frames, per_image=True)
    each = [ood_metrics(p.scores[0], t.ood) for p, t in frames]
    assert per_image['rows'][0]['ap'] == pytest.approx(np.mean([m['ap'] for m in each]))
    assert pooled['rows'][0]['ap'] != per_image['rows'][0]['ap']


class _Frames:
    """Samples for a pipeline; records the model's mode at each read, can break at one."""

    def __init__(self, model, count=2, *, broken=None):
        self.model, self.count, self.broken = model, count, broken
        self.modes = []

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if index >= self.count:
            raise IndexError(index)
        self.modes.append(self.model.training)
        image = np.random.default_rng(index).integers(0, 256, (32, 48, 3), dtype=np.uint8)
        ood = np.zeros((32, 48), np.uint8)
        ood[8:16, 8:24] = 1
        if index == self.broken:
            ood = ood[:-1]
        return Sample(name=f'f{index}', image=image, ood=ood,
                      semantic=np.zeros((32, 48), np.uint8))


@pytest.fixture(scope='module')
def tiny_model():
    torch.manual_seed(0)
    return ldn121(len(CLASSES))


def _pipeline(model):
    return DenseOODPipeline(model, class_names=CLASSES, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            input_short_edge=32, keep_mode=True)


@pytest.mark.parametrize('training', [True, False])
def test_run_evaluation_runs_the_model_in_eval_mode_and_gives_its_mode_back(tiny_model,
                                                                            training):
    tiny_model.train(training)
    tiny_model.spp.train(not training)  # a submodule in the other mode is restored as well
    frames = _Frames(tiny_model)
    evaluator = DenseEvaluator(len(CLASSES), settings=SETTINGS,
                               components=ComponentSettings(drivable=()))
    result = run_evaluation(_pipeline(tiny_model), frames, evaluator)
    assert frames.modes == [False, False]
    assert result['images'] == 2 and len(result['components']) == 1
    assert tiny_model.training == training and tiny_model.spp.training != training
    assert all(m.training == training for m in tiny_model.backbone.modules())


def test_the_mode_comes_back_when_a_sample_raises(tiny_model):
    tiny_model.train()
    frames = _Frames(tiny_model, count=3, broken=1)
    with pytest.raises(ValueError, match='f1: labels'):
        run_evaluation(_pipeline(tiny_model), frames, DenseEvaluator(len(CLASSES)))
    assert frames.modes == [False, False]
    assert all(m.training for m in tiny_model.modules())


def test_a_pipeline_puts_its_model_in_eval_mode_unless_told_to_keep_it(tiny_model):
    tiny_model.train()
    assert _pipeline(tiny_model).model.training
    DenseOODPipeline(tiny_model, class_names=CLASSES, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     input_short_edge=32)
    assert not tiny_model.training


@pytest.mark.slow
def test_validating_mid_run_leaves_the_training_bit_identical(tmp_path):
    # Validation at iteration 2 runs in eval mode; training must go on in train mode (BN
    # batch statistics and running-average updates), as if it had not happened.
    runs = [build_trainer(tiny_config(4, validation__interval=interval),
                          out_dir=tmp_path / str(interval)).run() for interval in (2, 0)]
    assert all(m.training for run in runs for m in run.network.modules())
    first, second = (run.network.state_dict() for run in runs)
    assert all(torch.equal(first[key], second[key]) for key in first)
    with open(tmp_path / '2' / 'scalars.csv', encoding='utf-8') as stream:
        assert sum(bool(row['val_miou']) for row in csv.DictReader(stream)) == 2


def test_evaluation_mode_without_a_model_does_nothing():
    with evaluation_mode(None):
        pass


def test_classify_evaluator_pools_batches_and_resets():
    rng = np.random.default_rng(0)
    msp, predicted = rng.random(20, dtype=np.float32), rng.integers(0, 3, 20)
    labels, outliers = rng.integers(0, 3, 20), rng.random(9, dtype=np.float32) * 0.7
    evaluator = ClassifyEvaluator()
    fresh = evaluator.evaluate()
    for part in (slice(0, 7), slice(7, 20)):
        evaluator.process(msp[part], predicted[part], labels[part])
    evaluator.process(outliers[:4], None, outlier_set='svhn')
    evaluator.process(outliers[4:], None, outlier_set='svhn')
    once = ClassifyEvaluator()
    once.process(msp, predicted, labels)
    once.process(outliers, None, outlier_set='svhn')
    result = evaluator.evaluate()
    assert result == once.evaluate()
    assert result['images'] == 20 and result['accuracy'] == np.mean(predicted == labels)
    assert result['msp'] == float(np.mean(msp)) and set(result['ood']) == {'svhn'}
    evaluator.reset()
    assert evaluator.evaluate() == fresh == {'images': 0, 'accuracy': None, 'msp': None,
                                             'ood': {}}
    with pytest.raises(ValueError, match='not both'):
        evaluator.process(msp, predicted, labels, outlier_set='svhn')


@pytest.mark.parametrize('training', [True, False])
def test_classify_predict_gives_the_model_its_mode_back(training):
    torch.manual_seed(0)
    model = vgg13_bn(10).train(training)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    scores, classes = predict(model, images, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert scores.shape == classes.shape == (3,)
    assert all(m.training == training for m in model.modules())
    # In eval mode, whatever the mode it came in: the same images give the same scores.
    again, _ = predict(model.train(not training), images, mean=(0.5,) * 3, std=(0.25,) * 3)
    np.testing.assert_array_equal(scores, again)
