"""The training loop end to end on a tiny synthetic world: resume, export, CLI, NaN guard, DDP."""

import csv
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from dense_ood_ros.checkpoint import build_flow_from_checkpoint, load_checkpoint
from dense_ood_ros.pipeline import DenseOODPipeline
from train import joint
from train.build import build_trainer
from train.config import ConfigError, resolve
from train.dense_task import PROBE_COLUMNS
from train.distributed import init_distributed, shutdown
from train.trainer import TrainingError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_raw(iterations=6, **changes):
    """Return a raw config for a run of a few seconds: 64x64 crops, a 4-channel flow."""
    raw = {
        'seed': 0, 'device': 'cpu', 'amp': 'off',
        'data': {'dataset': 'synthetic', 'root': None, 'split': 'train', 'short_edge': 64,
                 'crop_size': 64, 'hflip': True, 'num_workers': 0,
                 'synthetic': {'num_images': 4, 'height': 64, 'width': 96, 'seed': 0}},
        'validation': {'dataset': 'synthetic', 'root': None, 'split': 'test',
                       'max_images': 0, 'interval': 0,
                       'synthetic': {'num_images': 2, 'height': 64, 'width': 96, 'seed': 0}},
        'model': {'checkpointing': False},
        'flow': {'num_scales': 2, 'mid_channels': 4, 'num_blocks': 1, 'checkpointing': False},
        'outliers': {'mode': 'rnvp', 'lambda': 0.1, 'size_min': 8, 'size_max': 24,
                     'size_step': 8},
        'optim': {'batch_size': 2, 'iterations': iterations, 'lr_backbone': 1e-4,
                  'lr_upsampling': 4e-4, 'lr_min': 1e-7, 'flow_lr': 1e-3},
        'log': {'interval': 1, 'sample_interval': 3, 'checkpoint_interval': 0,
                'tensorboard': False},
    }
    for dotted, value in changes.items():
        *parents, leaf = dotted.split('__')
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def tiny_config(iterations=6, **changes):
    """Return the resolved tiny config."""
    return resolve(tiny_raw(iterations, **changes))


def _states(trainer):
    return {'segmenter': trainer.network.state_dict(), 'flow': trainer.flow.state_dict()}


def _assert_same_states(first, second):
    for model in first:
        assert first[model].keys() == second[model].keys()
        for key in first[model]:
            torch.testing.assert_close(first[model][key], second[model][key],
                                       msg=f'{model}.{key} differs')


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    # Checkpointing on: recomputation must not disturb BN statistics or the random draws.
    config = tiny_config(6, model__checkpointing=True, flow__checkpointing=True)
    straight = build_trainer(config, out_dir=tmp_path / 'straight').run()

    interrupted = build_trainer(config, out_dir=tmp_path / 'resumed').run(stop_after=3)
    assert interrupted.iteration == 3
    assert not (tmp_path / 'resumed' / 'model.pt').exists()
    payload = torch.load(tmp_path / 'resumed' / 'resume.pt', weights_only=True)
    assert payload['iteration'] == 3 and payload['config'] == config
    # The layout resume files have always had: older runs must keep resuming.
    assert set(payload) == {'format', 'format_version', 'iteration', 'config', 'segmenter',
                            'flow', 'optimizer', 'flow_optimizer', 'scheduler', 'scaler', 'rng',
                            'counters'}

    # A new process would start from scratch: scramble the global generators first.
    torch.manual_seed(1234)
    np.random.seed(99)
    resumed = build_trainer(config, out_dir=tmp_path / 'resumed')
    resumed.load_resume(tmp_path / 'resumed' / 'resume.pt')
    resumed.run()
    assert resumed.iteration == straight.iteration == 6
    _assert_same_states(_states(straight), _states(resumed))
    opt_a = straight.optimizers.flow.state_dict()['state']
    opt_b = resumed.optimizers.flow.state_dict()['state']
    for key in opt_a:
        torch.testing.assert_close(opt_a[key]['exp_avg'], opt_b[key]['exp_avg'])
    assert (straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr())


@pytest.mark.parametrize('signal', ['pasted', 'full'])
def test_probing_the_flow_every_step_leaves_the_trajectory_bit_identical(tmp_path, signal):
    # log.interval 1 probes every step; 1000 probes none of these 4.
    probed = build_trainer(tiny_config(4, log__interval=1, outliers__flow_signal=signal),
                           out_dir=tmp_path / 'probed').run()
    quiet = build_trainer(tiny_config(4, log__interval=1000, outliers__flow_signal=signal),
                          out_dir=tmp_path / 'quiet').run()
    for model in ('segmenter', 'flow'):
        first, second = _states(probed)[model], _states(quiet)[model]
        assert all(torch.equal(first[key], second[key]) for key in first), model
    with open(tmp_path / 'probed' / 'scalars.csv', encoding='utf-8') as stream:
        rows = [row for row in csv.DictReader(stream) if row['grad_flow_kl']]
    assert len(rows) == 4
    for row in rows:
        for column in PROBE_COLUMNS:
            assert math.isfinite(float(row[column])) and float(row[column]) > 0, column


def test_resume_refuses_a_changed_config(tmp_path):
    trainer = build_trainer(tiny_config(2), out_dir=tmp_path).run(stop_after=1)
    other = build_trainer(tiny_config(2, outliers__mode='noise'), out_dir=tmp_path)
    with pytest.raises(ConfigError, match='outliers.mode'):
        other.load_resume(tmp_path / 'resume.pt')
    assert trainer.iteration == 1


class _PoisonLogits:
    """Forward hook that turns the logits of chosen forward calls into NaN."""

    def __init__(self, calls):
        self.calls = calls
        self.count = 0

    def __call__(self, module, inputs, output):
        self.count += 1
        return output * math.nan if self.calls is None or self.count in self.calls else output


def test_nan_steps_are_skipped_counted_and_logged(tmp_path):
    config = tiny_config(5, validation__dataset=None)
    trainer = build_trainer(config, out_dir=tmp_path)
    trainer.network.logits.register_forward_hook(_PoisonLogits({2, 4}))
    trainer.run()
    assert trainer.iteration == 5
    assert trainer.skipped_steps == 2 and trainer.consecutive_skips == 0
    rows = list(csv.DictReader(open(tmp_path / 'scalars.csv')))
    assert [int(r['skipped_steps']) for r in rows] == [0, 1, 1, 2, 2]


def test_ten_nan_steps_in_a_row_stop_with_a_clear_message(tmp_path):
    config = tiny_config(30, validation__dataset=None)
    trainer = build_trainer(config, out_dir=tmp_path)
    trainer.network.logits.register_forward_hook(_PoisonLogits(None))
    with pytest.raises(TrainingError, match='10 consecutive steps had NaN or infinite losses'):
        trainer.run()
    assert trainer.iteration == 10 and trainer.skipped_steps == 10


@pytest.mark.parametrize('mode', ['noise', 'none'])
def test_baseline_modes_train_and_export_without_a_flow(tmp_path, mode):
    config = tiny_config(2, outliers__mode=mode, validation__dataset=None)
    trainer = build_trainer(config, out_dir=tmp_path).run()
    assert trainer.flow is None
    ckpt = load_checkpoint(tmp_path / 'model.pt')
    assert ckpt.flow_state_dict is None and ckpt.train['config']['outliers']['mode'] == mode
    assert not (tmp_path / 'samples').exists()


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
    """Run ``python -m train.joint`` for 2 iterations on the tiny config with --set."""
    root = tmp_path_factory.mktemp('cli')
    config_path = root / 'tiny.yaml'
    config_path.write_text(yaml.safe_dump(tiny_raw(50)))
    out = root / 'out'
    result = subprocess.run(
        [sys.executable, '-m', 'train.joint', '--config', str(config_path), '--out', str(out),
         '--set', 'optim.iterations=2', '--set', 'log.sample_interval=1', '--report-memory'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'PYTHONPATH': str(ROOT)})
    return result, out


@pytest.mark.slow
def test_cli_trains_end_to_end_with_overrides(cli_run):
    result, out = cli_run
    assert result.returncode == 0, result.stderr
    assert 'peak memory:' in result.stdout and 'iteration 2/2' in result.stdout
    assert {'model.pt', 'resume.pt', 'scalars.csv', 'config.yaml', 'samples'} <= set(
        os.listdir(out))
    assert sorted(os.listdir(out / 'samples')) == ['iter_0000001.png', 'iter_0000002.png']
    assert yaml.safe_load((out / 'config.yaml').read_text())['optim']['iterations'] == 2
    rows = list(csv.DictReader(open(out / 'scalars.csv')))
    assert [r['iteration'] for r in rows] == ['1', '2', '2']
    assert float(rows[0]['nll']) > 0 and float(rows[0]['kl']) >= 0
    assert 0 <= float(rows[-1]['val_miou']) <= 1 and 0 <= float(rows[-1]['val_ap']) <= 1


@pytest.mark.slow
def test_the_exported_checkpoint_runs_in_the_nodes_pipeline(cli_run):
    result, out = cli_run
    assert result.returncode == 0, result.stderr
    ckpt = load_checkpoint(out / 'model.pt', expected_arch='ldn121')
    assert ckpt.num_classes == 19 and ckpt.input_short_edge == 64
    assert ckpt.temperatures == {'msp': 10.0, 'entropy': 2.0}
    assert ckpt.train['iteration'] == 2 and ckpt.train['config']['optim']['iterations'] == 2
    assert set(ckpt.train) == {'config', 'iteration', 'git_commit', 'command'}
    # The exact command, so the checkpoint says how to make it again.
    assert ckpt.train['command'] == (
        f'python -m train.joint --config {out.parent / "tiny.yaml"} --out {out} '
        '--set optim.iterations=2 --set log.sample_interval=1 --report-memory')
    assert ckpt.flow_config == {'in_channels': 3, 'num_scales': 2, 'mid_channels': 4,
                                'num_blocks': 1}
    flow = build_flow_from_checkpoint(ckpt)
    assert flow.sample(1, 8, 8).shape == (1, 3, 8, 8)
    pipeline = DenseOODPipeline.from_checkpoint(out / 'model.pt', device='cpu')
    frame = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    result = pipeline.infer(frame)
    assert result.labels.shape == (48, 80) and result.score.shape == (48, 80)
    assert np.isfinite(result.score).all()
    resume = torch.load(out / 'resume.pt', weights_only=True)
    assert resume['iteration'] == 2


def test_cli_names_an_unknown_override(capsys):
    with pytest.raises(SystemExit) as exit_info:
        joint.main(['--config', str(ROOT / 'config' / 'train_demo.yaml'),
                    '--set', 'optim.batchsize=4'])
    assert exit_info.value.code == 2
    assert "unknown config key 'optim.batchsize'" in capsys.readouterr().err


def test_cli_reports_a_missing_dataset_root_with_the_readers_message(tmp_path, capsys):
    missing = tmp_path / 'no_cityscapes'
    status = joint.main(['--config', str(ROOT / 'config' / 'train_cityscapes.yaml'),
                         '--out', str(tmp_path / 'out'), '--set', f'data.root={missing}',
                         '--set', 'device=cpu'])
    assert status == 1
    err = capsys.readouterr().err
    assert 'train.joint: error' in err and str(missing) in err and 'Cityscapes' in err


def test_cli_resume_without_a_resume_file_is_a_clear_error(tmp_path, capsys):
    config_path = tmp_path / 'tiny.yaml'
    config_path.write_text(yaml.safe_dump(tiny_raw(2)))
    status = joint.main(['--config', str(config_path), '--out', str(tmp_path / 'out'),
                         '--resume'])
    assert status == 1
    assert 'resume.pt: no such file' in capsys.readouterr().err


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _ddp_worker(rank, world_size, port, config, out_root, result_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = init_distributed('cpu')
    try:
        trainer = build_trainer(config, out_dir=os.path.join(out_root, f'rank{rank}'), env=env)
        trainer.run()
        torch.save({'segmenter': trainer.network.state_dict(),
                    'flow': trainer.flow.state_dict(), 'iteration': trainer.iteration},
                   os.path.join(result_dir, f'rank{rank}.pt'))
    finally:
        shutdown(env)


@pytest.mark.slow
def test_two_process_ddp_on_gloo_keeps_ranks_identical_and_only_rank0_writes(tmp_path):
    config = tiny_config(2)
    out_root, result_dir = tmp_path / 'out', tmp_path / 'results'
    result_dir.mkdir()
    torch.manual_seed(0)
    initial = build_trainer(config, out_dir=tmp_path / 'unused').network.state_dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), config, str(out_root), str(result_dir)),
             nprocs=2, join=True)
    states = [torch.load(result_dir / f'rank{r}.pt', weights_only=True) for r in range(2)]
    assert states[0]['iteration'] == states[1]['iteration'] == 2
    for model in ('segmenter', 'flow'):
        for key, value in states[0][model].items():
            assert torch.equal(value, states[1][model][key]), f'{model}.{key} differs'
    assert any(not torch.equal(initial[k], states[0]['segmenter'][k]) for k in initial)
    assert (out_root / 'rank0' / 'model.pt').exists()
    assert (out_root / 'rank0' / 'resume.pt').exists()
    assert not (out_root / 'rank1').exists()


def test_fp16_overflow_steps_are_skipped_counted_and_logged(tmp_path, capsys):
    config = tiny_config(5, validation__dataset=None)
    trainer = build_trainer(config, out_dir=tmp_path)
    # build_optimizers makes a scaler only on CUDA; a CPU GradScaler drives the same path.
    trainer.optimizers.scaler = torch.amp.GradScaler('cpu', init_scale=1024.0,
                                                     growth_interval=1000)
    overflowing = {1, 3}  # 0-based iterations whose segmenter gradient turns infinite
    next(trainer.network.logits.parameters()).register_hook(
        lambda grad: grad + math.inf if trainer.iteration in overflowing else grad)
    trainer.run()
    assert trainer.iteration == 5
    assert trainer.skipped_steps == 2 and trainer.consecutive_skips == 0
    assert trainer.optimizers.scaler.get_scale() == 256.0
    rows = list(csv.DictReader(open(tmp_path / 'scalars.csv')))
    assert [int(r['skipped_steps']) for r in rows] == [0, 1, 1, 2, 2]
    err = capsys.readouterr().err
    assert err.count('fp16 gradient overflow') == 2 and 'neither model stepped' in err


def test_report_memory_on_the_cpu_says_what_the_peak_rss_includes(tmp_path, capsys):
    config_path = tmp_path / 'tiny.yaml'
    config_path.write_text(yaml.safe_dump(tiny_raw(2, validation__dataset=None)))
    status = joint.main(['--config', str(config_path), '--out', str(tmp_path / 'out'),
                         '--report-memory'])
    assert status == 0
    out = capsys.readouterr().out
    assert 'peak memory:' in out and 'peak RSS' in out and 'cannot be reset' in out
    assert 'warm-up' in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_report_memory_on_cuda_restarts_the_peak_after_the_warm_up_step(tmp_path):
    from train.logging_utils import peak_memory_report

    config = tiny_config(3, device='cuda', validation__dataset=None)
    trainer = build_trainer(config, out_dir=tmp_path)
    trainer.report_memory = True
    trainer.run()
    assert trainer.peak_memory_since == 1
    report = peak_memory_report(trainer.device, since_iteration=trainer.peak_memory_since)
    assert 'after the warm-up step, from iteration 1 on' in report


def _train_process(config_path, out, *extra):
    return subprocess.Popen(
        [sys.executable, '-m', 'train.joint', '--config', str(config_path), '--out', str(out),
         *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'})


@pytest.mark.slow
def test_sigkill_after_a_periodic_save_then_resume_gives_the_straight_runs_weights(tmp_path):
    # As a user meets it: the process dies without warning (OOM killer, power) right after
    # a periodic resume.pt, and the same command with --resume finishes the run.
    config_path = tmp_path / 'tiny.yaml'
    raw = tiny_raw(8, log__checkpoint_interval=2, log__sample_interval=0)
    config_path.write_text(yaml.safe_dump(raw))
    straight = _train_process(config_path, tmp_path / 'straight')
    output, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, output

    out = tmp_path / 'killed'
    victim = _train_process(config_path, out)
    deadline = time.monotonic() + 600
    while not (out / 'resume.pt').exists():
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline, 'no periodic resume.pt appeared'
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (out / 'model.pt').exists(), 'the run finished before it was killed'

    resumed = _train_process(config_path, out, '--resume')
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    first, second = (load_checkpoint(path / 'model.pt') for path in (tmp_path / 'straight', out))
    for name in ('state_dict', 'flow_state_dict'):
        a, b = getattr(first, name), getattr(second, name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[key], b[key]) for key in a), name
    # Atomic writes: nothing half-written is left behind.
    leftovers = [p.name for p in out.rglob('*') if p.is_file() and (
        p.suffix in ('.tmp', '.part') or p.name.startswith('.'))]
    assert not leftovers, leftovers
