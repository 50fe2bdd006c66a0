"""Fine-tuning from a checkpoint (model.init_weights) and shade-matched outliers in a run."""

import pytest
import torch
import yaml

from dense_ood_ros.checkpoint import CheckpointError, load_checkpoint
from test_train_loop import tiny_config, tiny_raw
from train.build import build_run, build_trainer
from train.config import ConfigError, resolve
from train.distributed import DistEnv
from train.joint import main
from train.outliers import OutlierSettings
from train.step import compute_losses, step_randomness


def _run_parts(**changes):
    return build_run(tiny_config(2, validation__dataset=None, **changes),
                     DistEnv(device=torch.device('cpu')))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Return the model.pt of a two-step tiny run."""
    out = tmp_path_factory.mktemp('base')
    build_trainer(tiny_config(2, validation__dataset=None), out_dir=out).run()
    return out / 'model.pt'


def test_init_weights_starts_network_and_flow_from_the_checkpoint(trained):
    ckpt = load_checkpoint(trained)
    # Another seed: without init_weights the initial weights would differ.
    parts = _run_parts(seed=3, model__init_weights=str(trained))
    for key, value in parts.network.state_dict().items():
        assert torch.equal(value, ckpt.state_dict[key]), key
    for key, value in parts.flow.state_dict().items():
        assert torch.equal(value, ckpt.flow_state_dict[key]), key
    fresh = _run_parts(seed=3)
    assert not torch.equal(fresh.network.state_dict()['logits.conv.weight'],
                           ckpt.state_dict['logits.conv.weight'])


def test_init_weights_leaves_optimizers_and_schedule_fresh(trained):
    parts = _run_parts(model__init_weights=str(trained))
    assert parts.optimizers.network.state_dict()['state'] == {}
    assert parts.scheduler.last_epoch == 0


@pytest.mark.parametrize('changes, message', [
    ({'flow__mid_channels': 8}, "its flow is .*'mid_channels': 4.*this run's flow section"),
    ({'flow__num_blocks': 2}, "its flow is .*'num_blocks': 1"),
])
def test_init_weights_names_a_flow_that_does_not_fit(trained, changes, message):
    with pytest.raises(CheckpointError, match=message) as error:
        _run_parts(model__init_weights=str(trained), **changes)
    assert str(trained) in str(error.value)


def test_init_weights_needs_a_flow_for_a_realnvp_run(tmp_path):
    build_trainer(tiny_config(1, outliers__mode='noise', validation__dataset=None),
                  out_dir=tmp_path).run()
    with pytest.raises(CheckpointError, match='has no flow, and this run trains one'):
        _run_parts(model__init_weights=str(tmp_path / 'model.pt'))
    # A run without a flow takes the network alone.
    parts = _run_parts(outliers__mode='none', model__init_weights=str(tmp_path / 'model.pt'))
    assert parts.flow is None


def test_init_weights_refuses_another_label_space(trained, tmp_path):
    ckpt = torch.load(trained, weights_only=True)
    ckpt['class_names'] = list(reversed(ckpt['class_names']))
    torch.save(ckpt, tmp_path / 'other.pt')
    with pytest.raises(CheckpointError, match="its classes .* are not the training set's"):
        _run_parts(model__init_weights=str(tmp_path / 'other.pt'))


def test_the_cli_reports_a_missing_init_checkpoint_by_name(tmp_path, capsys):
    missing = tmp_path / 'nowhere.pt'
    code = main(['--config', 'config/train_demo.yaml', '--out', str(tmp_path / 'run'),
                 '--set', 'data.synthetic.num_images=2',
                 '--set', f'model.init_weights={missing}'])
    assert code != 0
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize('shade_match', [0.0, 1.0])
def test_a_run_with_shade_matched_outliers_trains_and_moves_the_flow(tmp_path, shade_match):
    trainer = build_trainer(tiny_config(2, validation__dataset=None,
                                        outliers__shade_match=shade_match),
                            out_dir=tmp_path)
    before = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    trainer.run()
    assert trainer.skipped_steps == 0
    moved = [k for k, v in trainer.flow.state_dict().items() if not torch.equal(v, before[k])]
    assert moved


@pytest.mark.parametrize('shade_match', [0.0, 1.0])
def test_the_step_pastes_flow_samples_in_the_shade_they_cover(shade_match):
    parts = _run_parts()
    images = torch.full((2, 3, 64, 64), 0.3)
    labels = torch.zeros((2, 64, 64), dtype=torch.long)
    outliers = OutlierSettings(mode='rnvp', sizes=(24,), lam=0.1, shade_match=shade_match,
                               shade_offset=0.0)
    losses = compute_losses(parts.network, parts.flow, images, labels, outliers=outliers,
                            randomness=step_randomness(0, 1), normalize=parts.normalize)
    means = losses.link.leaf.mean(dim=(2, 3))
    # Eq. 4's gradient still reaches the flow through the samples as pasted (a weighted sum:
    # a plain sum is blind to what the move keeps, the deviations from the mean).
    weights = torch.randn(losses.link.samples.shape, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad((losses.link.samples * weights).sum(),
                                list(parts.flow.parameters()), allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    if shade_match:
        # The grey they cover, up to what clipping at 0 adds back.
        assert float((means - 0.3).abs().max()) < 0.02
    else:
        # An untrained flow's samples are centred on mid-grey.
        assert float((means - 0.3).abs().min()) > 0.15


def test_a_fine_tune_resumes_after_its_init_checkpoint_is_gone(trained, tmp_path):
    # The resume file holds the weights; the checkpoint the run started from may be deleted.
    start = tmp_path / 'start.pt'
    start.write_bytes(trained.read_bytes())
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(tiny_raw(2, validation__dataset=None,
                                              model__init_weights=str(start))))
    out = tmp_path / 'run'
    assert main(['--config', str(config), '--out', str(out), '--stop-after', '1']) == 0
    start.unlink()
    assert main(['--config', str(config), '--out', str(out), '--resume']) == 0
    assert torch.load(out / 'resume.pt', weights_only=True)['iteration'] == 2


def test_shade_matching_is_refused_for_the_image_wide_task():
    raw = yaml.safe_load(open('config/train_cifar10.yaml'))
    raw['outliers']['shade_match'] = 0.5
    with pytest.raises(ConfigError, match="'outliers.shade_match' must be 0 for task "
                                          "'classify'"):
        resolve(raw)
