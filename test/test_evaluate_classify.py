"""python -m train.evaluate --task classify: Table 1 metrics, outlier set readers, JSON, errors."""

import json

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from cifar_fakes import single_thread, write_cifar, write_image_folder, write_svhn
from dense_ood_ros.checkpoint import Checkpoint, save_checkpoint
from dense_ood_ros.metrics import ood_metrics, open_set_metrics
from train import evaluate
from train.data.cifar import CLASSES, MEAN, PALETTE, STD
from train.data.ood_images import read_image_folder, read_ood_set, read_svhn
from train.evaluate_classify import parse_ood
from train.vgg import vgg13_bn


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Small batches: one thread is as fast, and never waits on a busy machine."""
    with single_thread():
        yield


def _sklearn_table1(inliers, outliers):
    truth = np.r_[np.ones(inliers.size), np.zeros(outliers.size)]
    scores = np.r_[inliers, outliers]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return {'tnr_at_tpr95': 1 - fpr[np.argmax(tpr >= 0.95)],
            'auroc': roc_auc_score(truth, scores),
            'detection_accuracy': np.max(0.5 * (tpr + 1 - fpr))}


@pytest.mark.parametrize('seed', range(6))
def test_open_set_metrics_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    # Coarse values force ties within and across the two sets.
    inliers = rng.integers(3, 20, rng.integers(5, 300)).astype(np.float32) / 20
    outliers = rng.integers(0, 15, rng.integers(5, 300)).astype(np.float32) / 20
    ours = open_set_metrics(inliers, outliers)
    expected = _sklearn_table1(inliers, outliers)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_open_set_metrics_conventions():
    inliers = np.linspace(0.5, 1.0, 100)
    # Perfect separation: everything is 1; reversed scores: TNR 0, AUROC 0, accuracy 0.5.
    assert open_set_metrics(inliers, inliers - 0.6) == {
        'tnr_at_tpr95': 1.0, 'auroc': 1.0, 'detection_accuracy': 1.0}
    reversed_ = open_set_metrics(inliers - 0.6, inliers)
    assert reversed_['tnr_at_tpr95'] == 0.0 and reversed_['auroc'] == 0.0
    assert reversed_['detection_accuracy'] == 0.5
    # TNR at TPR 95 % is 1 - FPR95 of the anomaly convention with the roles swapped.
    rng = np.random.default_rng(0)
    inl, out = rng.normal(1, 1, 500), rng.normal(0, 1, 400)
    anomaly = ood_metrics(np.r_[-out, -inl], np.r_[np.ones(400), np.zeros(500)])
    table = open_set_metrics(inl, out)
    assert table['auroc'] == pytest.approx(anomaly['auroc'])
    # The input arrays are not sorted in place.
    assert not np.all(np.diff(inl) >= 0)
    with pytest.raises(ValueError, match='in-distribution and outlier scores'):
        open_set_metrics(inl, [])


def test_svhn_is_read_from_its_mat_file_in_nhwc_order(tmp_path):
    images = write_svhn(tmp_path / 'svhn')
    np.testing.assert_array_equal(read_svhn(tmp_path / 'svhn'), images)
    np.testing.assert_array_equal(read_svhn(tmp_path / 'svhn' / 'test_32x32.mat', limit=3),
                                  images[:3])
    assert read_ood_set('svhn', tmp_path / 'svhn').shape == (12, 32, 32, 3)


def test_a_missing_svhn_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='test_32x32.mat'):
        read_ood_set('svhn', tmp_path)


def test_any_folder_tree_of_images_is_an_outlier_set(tmp_path):
    paths = write_image_folder(tmp_path / 'LSUN_resize', count=6)
    images = read_image_folder(tmp_path / 'LSUN_resize')
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    # Sorted by path (class0/0000, class0/0002, ..., class1/0001, ...), decoded as RGB.
    second = cv2.cvtColor(cv2.imread(str(paths[2])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(images[1], second)
    large = tmp_path / 'large'
    large.mkdir()
    cv2.imwrite(str(large / 'a.png'), np.full((64, 48, 3), (255, 0, 0), np.uint8))
    image = read_ood_set('tinyimagenet_resize', large)
    assert image.shape == (1, 32, 32, 3) and tuple(image[0, 5, 5]) == (0, 0, 255)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no image files'):
        read_ood_set('lsun_resize', tmp_path / 'empty')


def test_ood_arguments_must_be_name_equals_path():
    assert parse_ood(['svhn=a', 'lsun=b']) == {'svhn': 'a', 'lsun': 'b'}
    with pytest.raises(ValueError, match='expected NAME=PATH'):
        parse_ood(['svhn'])
    with pytest.raises(ValueError, match="names 'svhn' twice"):
        parse_ood(['svhn=a', 'svhn=b'])


@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    """A random VGG-13 checkpoint, a fake CIFAR-10 and three outlier sets."""
    root = tmp_path_factory.mktemp('table1')
    torch.manual_seed(0)
    model = vgg13_bn(10)
    save_checkpoint(root / 'model.pt', Checkpoint(
        arch='vgg13_bn', num_classes=10, state_dict=model.state_dict(),
        class_names=list(CLASSES), palette=[list(c) for c in PALETTE], mean=list(MEAN),
        std=list(STD), input_short_edge=32))
    write_cifar(root / 'cifar', per_batch=1, test_images=20)
    write_svhn(root / 'svhn')
    write_image_folder(root / 'LSUN_resize')
    return root


def _args(root, *extra):
    return ['--task', 'classify', '--checkpoint', str(root / 'model.pt'), '--in-root',
            str(root / 'cifar'), '--ood', f'svhn={root / "svhn"}',
            f'lsun_resize={root / "LSUN_resize"}', '--device', 'cpu', *extra]


def test_the_table_and_its_json(sets, tmp_path, capsys):
    report = tmp_path / 'table.json'
    assert evaluate.main(_args(sets, '--json', str(report), '--limit', '10')) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'max-softmax score; cells: model'
    assert lines[1].split() == ['OOD', 'dataset', 'TNR', 'at', 'TPR', '95%', 'AUROC', 'OOD',
                                'det.', 'acc.']
    assert [line.split()[0] for line in lines[3:5]] == ['svhn', 'lsun_resize']
    payload = json.loads(report.read_text())
    assert set(payload) == {'task', 'score', 'conventions', 'in_distribution', 'outliers',
                            'models'}
    assert payload['in_distribution'] == {
        'dataset': 'cifar10', 'split': 'test', 'root': str(sets / 'cifar'), 'images': 10}
    assert payload['outliers']['svhn'] == {'path': str(sets / 'svhn'), 'images': 10}
    (model,) = payload['models']
    assert set(model) == {'name', 'checkpoint', 'outlier_mode', 'accuracy', 'ood'}
    assert model['outlier_mode'] is None and 0 <= model['accuracy'] <= 1
    for metrics in model['ood'].values():
        assert set(metrics) == {'tnr_at_tpr95', 'auroc', 'detection_accuracy'}
        assert 0 <= metrics['auroc'] <= 1 and 0.5 <= metrics['detection_accuracy'] <= 1


def test_missing_inputs_are_named(sets, tmp_path, capsys):
    assert evaluate.main(_args(sets)[:4] + ['--in-root', str(tmp_path), '--ood',
                                            f'svhn={sets / "svhn"}']) == 2
    assert 'test_batch' in capsys.readouterr().err
    assert evaluate.main(_args(sets) + ['--baseline', str(tmp_path / 'nope.pt')]) == 2
    assert 'nope.pt: no such file' in capsys.readouterr().err
    assert evaluate.main(_args(sets)[:-2] + [f'places={tmp_path}', '--device', 'cpu']) == 2
    assert 'no image files' in capsys.readouterr().err


def test_a_dense_checkpoint_is_refused_by_the_classify_task(sets, tiny_checkpoint_path, capsys):
    args = _args(sets)
    args[args.index('--checkpoint') + 1] = str(tiny_checkpoint_path)
    assert evaluate.main(args) == 2
    assert "architecture 'ldn121', expected 'vgg13_bn'" in capsys.readouterr().err
