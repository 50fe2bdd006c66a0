"""task: classify (Algorithm 1): CIFAR-10 reader, VGG-13, one joint step, resume, CLI + export."""

import math
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from cifar_fakes import single_thread, write_cifar, write_image_folder, write_svhn
from dense_ood_ros.checkpoint import build_flow_from_checkpoint, load_checkpoint
from dense_ood_ros.models import RealNVP
from dense_ood_ros.normalization import Normalizer
from train import evaluate as evaluate_cli
from train.build import build_task, build_trainer
from train.classify import ClassifyTask, epochs_to_iterations
from train.classify_step import classify_step, compute_classify_losses
from train.config import ConfigError, load_config, resolve
from train.data.cifar import MEAN, STD, Cifar10
from train.outliers import OutlierSettings
from train.step import Optimizers, step_randomness
from train.vgg import vgg13_bn

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Small batches: one thread is as fast, and never waits on a busy machine."""
    with single_thread():
        yield


@pytest.fixture(scope='module')
def cifar_root(tmp_path_factory):
    """A fake CIFAR-10 python release: 5 x 8 training images, 16 test images."""
    root = tmp_path_factory.mktemp('cifar')
    return root, write_cifar(root)


# -- data ---------------------------------------------------------------------------------

def test_the_reader_decodes_the_python_release_pixel_order(cifar_root):
    root, written = cifar_root
    train = Cifar10(root, 'train')
    assert len(train) == 40 and train.images.shape == (40, 32, 32, 3)
    images, labels = written['data_batch_2']
    np.testing.assert_array_equal(train.images[8:16], images)
    np.testing.assert_array_equal(train.labels[8:16], labels)
    image, label = train[9]
    assert image.dtype == np.uint8 and label == int(labels[1])
    # The folder itself may be given too.
    test = Cifar10(root / 'cifar-10-batches-py', 'test', limit=5)
    np.testing.assert_array_equal(test.images, written['test_batch'][0][:5])


def test_a_missing_batch_file_is_named_with_where_the_release_comes_from(tmp_path):
    write_cifar(tmp_path)
    os.remove(tmp_path / 'cifar-10-batches-py' / 'data_batch_3')
    with pytest.raises(FileNotFoundError, match='data_batch_3') as info:
        Cifar10(tmp_path, 'train')
    assert 'cifar-10-python.tar.gz' in str(info.value)
    Cifar10(tmp_path, 'test')  # the test split does not need it


def test_a_batch_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / 'cifar-10-batches-py'
    write_cifar(tmp_path)
    with open(folder / 'test_batch', 'wb') as stream:
        pickle.dump({b'data': os.getcwd, b'labels': []}, stream, protocol=2)
    with pytest.raises(ValueError, match='refusing to load'):
        Cifar10(tmp_path, 'test')


# -- model and step -----------------------------------------------------------------------

def _models(mode='rnvp'):
    torch.manual_seed(0)
    classifier = vgg13_bn(10).train()
    flow = (RealNVP(num_scales=2, mid_channels=4, num_blocks=1).train() if mode == 'rnvp'
            else None)
    return classifier, flow


def _batch():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), generator=gen).float() / 255
    return images, torch.tensor([0, 3, 5, 9])


def _losses(classifier, flow, *, lam=1.0, mode='rnvp'):
    images, labels = _batch()
    return compute_classify_losses(
        classifier, flow, images, labels,
        outliers=OutlierSettings(mode=mode, sizes=(32,), lam=lam),
        randomness=step_randomness(0, 0), normalize=Normalizer(MEAN, STD))


def test_vgg13_bn_is_the_cifar_variant():
    model = vgg13_bn(10)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.features) == 10
    assert model.classifier.in_features == 512
    assert 9.3e6 < sum(p.numel() for p in model.parameters()) < 9.5e6
    with pytest.raises(ValueError, match='32, 32'):
        model(torch.zeros(1, 3, 64, 64))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_one_step_changes_every_parameter_of_both_models():
    classifier, flow = _models()
    before_c, before_f = _snapshot(classifier), _snapshot(flow)
    images, labels = _batch()
    result = classify_step(
        classifier, flow, images, labels,
        outliers=OutlierSettings(mode='rnvp', sizes=(32,), lam=1.0),
        randomness=step_randomness(0, 0), normalize=Normalizer(MEAN, STD),
        optimizers=Optimizers(network=torch.optim.Adam(classifier.parameters(), lr=1e-3),
                              flow=torch.optim.Adam(flow.parameters(), lr=1e-3)))
    assert not result.skipped and result.size == 32
    assert result.ce > 0 and result.kl >= 0 and result.nll > 0
    assert math.isclose(result.loss, result.ce + result.kl, rel_tol=1e-5)
    for before, module in ((before_c, classifier), (before_f, flow)):
        after = dict(module.named_parameters())
        assert [k for k in before if torch.equal(before[k], after[k])] == []


def test_the_kl_term_reaches_the_flow_and_the_cross_entropy_does_not():
    classifier, flow = _models()
    losses = _losses(classifier, flow)
    assert losses.seg.num_outliers == 4 and losses.size == 32
    losses.seg.loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in flow.parameters()) > 0

    # lambda = 0 keeps the graph but leaves only the CE: real images are a separate forward
    # pass, so not even batch-norm statistics carry it to the flow.
    classifier, flow = _models()
    _losses(classifier, flow, lam=0.0).seg.loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in flow.parameters())


def test_the_flow_nll_never_reaches_the_classifier():
    classifier, flow = _models()
    losses = _losses(classifier, flow)
    losses.nll.backward()
    assert all(p.grad is None for p in classifier.parameters())


@pytest.mark.parametrize('mode', ['noise', 'none'])
def test_baseline_modes_have_no_flow_loss(mode):
    classifier, _ = _models(mode)
    losses = _losses(classifier, None, mode=mode)
    assert losses.nll is None
    assert losses.size == (32 if mode == 'noise' else 0)
    assert (float(losses.seg.kl) > 0) == (mode == 'noise')


# -- config -------------------------------------------------------------------------------

def test_the_shipped_config_follows_section_5_1():
    config = load_config(ROOT / 'config' / 'train_cifar10.yaml')
    assert config['task'] == 'classify' and config['model']['arch'] == 'vgg13_bn'
    assert config['optim']['batch_size'] == 64 and config['outliers']['lambda'] == 1.0
    assert config['optim']['iterations'] == epochs_to_iterations(100) == 78100
    assert (config['flow']['num_scales'], config['flow']['mid_channels'],
            config['flow']['num_blocks']) == (2, 32, 3)
    assert isinstance(build_task(config), ClassifyTask)


@pytest.mark.parametrize('override, key', [
    ('model.arch=ldn121', 'model.arch'),
    ('data.dataset=synthetic', 'data.dataset'),
    ('outliers.size_max=48', 'outliers.size_min/size_max'),
    ('data.crop_size=64', 'data.crop_size'),
])
def test_classify_configs_name_what_does_not_fit_the_task(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(ROOT / 'config' / 'train_cifar10.yaml', overrides=[override])


def test_a_dense_config_refuses_cifar10():
    with pytest.raises(ConfigError, match="'data.dataset' must be a segmentation dataset"):
        resolve({}, overrides=['data.dataset=cifar10'])


# -- training loop ------------------------------------------------------------------------

def tiny_raw(root, iterations=4, **changes):
    """Return a classify config of a few seconds: real VGG-13, a 4-channel flow, batch 4."""
    raw = yaml.safe_load((ROOT / 'config' / 'train_cifar10.yaml').read_text())
    raw.update({'device': 'cpu'})
    raw['data'].update({'root': str(root), 'num_workers': 0})
    raw['validation'].update({'root': str(root), 'interval': 0, 'max_images': 8})
    raw['flow'].update({'mid_channels': 4, 'num_blocks': 1})
    raw['optim'].update({'batch_size': 4, 'iterations': iterations})
    raw['log'].update({'interval': 1, 'sample_interval': 0, 'checkpoint_interval': 0,
                       'tensorboard': False})
    for dotted, value in changes.items():
        section, key = dotted.split('__')
        raw[section][key] = value
    return raw


def _states(trainer):
    return {'classifier': trainer.network.state_dict(), 'flow': trainer.flow.state_dict()}


@pytest.mark.slow
def test_resume_continues_exactly(cifar_root, tmp_path):
    config = resolve(tiny_raw(cifar_root[0], 4, validation__dataset=None))
    straight = build_trainer(config, out_dir=tmp_path / 'straight').run()
    build_trainer(config, out_dir=tmp_path / 'resumed').run(stop_after=2)
    torch.manual_seed(1234)
    np.random.seed(99)
    resumed = build_trainer(config, out_dir=tmp_path / 'resumed')
    resumed.load_resume(tmp_path / 'resumed' / 'resume.pt')
    assert resumed.iteration == 2
    resumed.run()
    first, second = _states(straight), _states(resumed)
    for model in first:
        for key in first[model]:
            torch.testing.assert_close(first[model][key], second[model][key],
                                       msg=f'{model}.{key} differs')
    assert straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()


@pytest.fixture(scope='module')
def cli_run(cifar_root, tmp_path_factory):
    """Train 2 iterations with python -m train.joint, then evaluate with train.evaluate."""
    root = tmp_path_factory.mktemp('classify_cli')
    config_path = root / 'tiny.yaml'
    config_path.write_text(yaml.safe_dump(tiny_raw(cifar_root[0], 50)))
    out = root / 'out'
    train = subprocess.run(
        [sys.executable, '-m', 'train.joint', '--config', str(config_path), '--out', str(out),
         '--set', 'optim.iterations=2', '--set', 'log.sample_interval=2'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'})
    write_svhn(root / 'svhn')
    write_image_folder(root / 'LSUN_resize')
    write_image_folder(root / 'Imagenet_resize', nested=False)
    return train, out, root


@pytest.mark.slow
def test_cli_trains_and_exports_a_checkpoint_the_evaluator_reads(cli_run, cifar_root, capsys):
    train, out, root = cli_run
    assert train.returncode == 0, train.stderr
    assert 'iteration 2/2' in train.stdout
    assert {'model.pt', 'resume.pt', 'scalars.csv', 'samples'} <= set(os.listdir(out))
    header, *rows = (out / 'scalars.csv').read_text().splitlines()
    assert header.split(',')[:5] == ['iteration', 'loss', 'ce', 'kl', 'nll']
    assert 'val_accuracy' in header and len(rows) == 3

    raw = torch.load(out / 'model.pt', weights_only=True)
    assert raw['arch'] == 'vgg13_bn' and raw['class_names'][0] == 'airplane'
    ckpt = load_checkpoint(out / 'model.pt', expected_arch='vgg13_bn')
    assert ckpt.num_classes == 10 and ckpt.mean == list(MEAN) and ckpt.std == list(STD)
    assert ckpt.train['config']['task'] == 'classify' and ckpt.train['iteration'] == 2
    assert build_flow_from_checkpoint(ckpt).sample(2, 32, 32).shape == (2, 3, 32, 32)

    report = root / 'table.json'
    status = evaluate_cli.main([
        '--task', 'classify', '--checkpoint', str(out / 'model.pt'),
        '--baseline', str(out / 'model.pt'), '--in-root', str(cifar_root[0]),
        '--ood', f'svhn={root / "svhn"}', f'lsun_resize={root / "LSUN_resize"}',
        f'tinyimagenet_resize={root / "Imagenet_resize"}', '--device', 'cpu',
        '--json', str(report)])
    printed = capsys.readouterr().out
    assert status == 0
    assert 'TNR at TPR 95%' in printed and 'lsun_resize' in printed
    assert 'CIFAR-10 test accuracy (%)' in printed
    payload = yaml.safe_load(report.read_text())
    assert [m['name'] for m in payload['models']] == ['baseline', 'model']
    assert payload['models'][1]['outlier_mode'] == 'rnvp'
    assert payload['in_distribution']['images'] == 16
    assert {k: v['images'] for k, v in payload['outliers'].items()} == {
        'svhn': 12, 'lsun_resize': 10, 'tinyimagenet_resize': 10}
    # The same weights twice give the same numbers.
    assert payload['models'][0]['ood'] == payload['models'][1]['ood']


def test_validation_on_an_empty_set_logs_nan_and_gives_the_model_back_in_training():
    class Empty:
        images = np.zeros((0, 32, 32, 3), np.uint8)
        labels = np.zeros(0, np.int64)

        def __len__(self):
            return 0

    task = ClassifyTask(lr=1e-3)
    model = task.make_model(10).train()
    metrics = task.validate(model, Empty(), class_names=None, device='cpu')
    assert math.isnan(metrics['accuracy']) and math.isnan(metrics['msp'])
    assert metrics['images'] == 0 and model.training
    assert 'accuracy nan' in task.validation_message(metrics)
    assert set(task.validation_row(metrics)) == {'val_accuracy', 'val_msp'}
