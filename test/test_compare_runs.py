"""train.compare_runs: arms of finished runs paired by seed, and the method issue's target."""

import json
import shutil

import pytest

from dense_ood_ros.checkpoint import Checkpoint, save_checkpoint
from train.compare_runs import main

CONFIG = {'seed': 0, 'optim': {'iterations': 3000},
          'outliers': {'mode': 'rnvp', 'lambda': 0.3}}


def write_run(directory, *, seed, mode, ap, fpr95, miou, iterations=3000, settings=None):
    """Write a run directory: a checkpoint that records its config, and its evaluation."""
    directory.mkdir(parents=True)
    config = {**CONFIG, 'seed': seed, 'optim': {'iterations': iterations},
              'outliers': {**CONFIG['outliers'], 'mode': mode}}
    # Only the provenance is read, so the checkpoint carries no weights.
    save_checkpoint(directory / 'model.pt', Checkpoint(
        arch='ldn121', num_classes=2, state_dict={}, class_names=['road', 'car'],
        palette=[[0, 0, 0], [1, 1, 1]],
        train={'config': config, 'iteration': iterations, 'git_commit': f'commit-{mode}'}))
    settings = settings or [('msp', 1.0), ('msp', 2.0), ('msp', 10.0), ('entropy', 1.0),
                            ('entropy', 2.0), ('entropy', 10.0)]
    rows = [{'score': score, 'temperature': temperature, 'miou': miou, 'ap': ap,
             'fpr95': fpr95, 'auroc': 0.8} for score, temperature in settings]
    (directory / 'held.json').write_text(json.dumps({'images': 40, 'rows': rows}))
    return str(directory)


def arms(tmp_path, rnvp, noise=((0.20, 0.70), (0.21, 0.72), (0.19, 0.71)), miou_drop=0.0):
    """Return --arm arguments for none, noise and rnvp; rnvp's (AP, FPR95) per seed given.

    rnvp's directories are listed last seed first: runs pair by seed, not by position.
    """
    none = ((0.15, 0.80), (0.16, 0.82), (0.14, 0.81))
    args = []
    for name, values in (('none', none), ('noise', noise), ('rnvp', rnvp)):
        dirs = [write_run(tmp_path / f'{name}{seed}', seed=seed, mode=name, ap=ap, fpr95=fpr,
                          miou=0.54 - (miou_drop if name == 'rnvp' else 0.0))
                for seed, (ap, fpr) in enumerate(values)]
        args += ['--arm', f'{name}=' + ','.join(dirs[::-1] if name == 'rnvp' else dirs)]
    return args


def test_a_method_better_in_every_seed_meets_the_target_and_the_json_records_it(
        tmp_path, capsys):
    out = tmp_path / 'arms.json'
    rnvp = ((0.30, 0.60), (0.33, 0.61), (0.31, 0.62))
    assert main(arms(tmp_path, rnvp) + ['--json', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'target met' in printed and 'arms differ in: outliers.mode' in printed
    payload = json.loads(out.read_text())
    assert payload['seeds'] == [0, 1, 2] and payload['target']['met']
    # Paired by seed: improvements over noise are 0.10, 0.12, 0.12 in AP.
    vs_noise = [e for e in payload['comparisons']
                if e['rival'] == 'noise' and e['score'] == 'entropy' and e['temperature'] == 2]
    assert vs_noise[0]['ap']['improvement_per_seed'] == pytest.approx([0.10, 0.12, 0.12])
    assert vs_noise[0]['fpr95']['improvement_per_seed'] == pytest.approx([0.10, 0.11, 0.09])
    row = [r for r in payload['rows'] if r['variant'] == 'rnvp' and r['score'] == 'msp'
           and r['temperature'] == 10][0]
    assert row['ap'] == pytest.approx(0.31333333) and row['ap_per_seed'] == [0.30, 0.33, 0.31]
    assert payload['runs']['rnvp']['1']['commit'] == 'commit-rnvp'


def test_a_gain_smaller_than_its_spread_over_seeds_does_not_meet_the_target(tmp_path, capsys):
    # Mean AP gain over noise 0.027, but one seed loses: std of the differences 0.075.
    rnvp = ((0.30, 0.60), (0.16, 0.61), (0.22, 0.62))
    assert main(arms(tmp_path, rnvp)) == 0
    printed = capsys.readouterr().out
    assert 'fails: ap vs noise, msp T=10' in printed and 'target not met' in printed
    assert 'holds: fpr95 vs noise, entropy T=2' in printed


def test_an_miou_more_than_one_and_a_half_points_under_the_baseline_fails_the_target(
        tmp_path, capsys):
    rnvp = ((0.30, 0.60), (0.33, 0.61), (0.31, 0.62))
    assert main(arms(tmp_path, rnvp, miou_drop=0.02)) == 0
    printed = capsys.readouterr().out
    assert 'fails: mIoU within 1.5 points of none' in printed and 'target not met' in printed


def test_an_arm_whose_runs_differ_beyond_the_seed_is_refused_by_name(tmp_path, capsys):
    a = write_run(tmp_path / 'a', seed=0, mode='none', ap=0.1, fpr95=0.8, miou=0.5)
    b = write_run(tmp_path / 'b', seed=1, mode='none', ap=0.1, fpr95=0.8, miou=0.5,
                  iterations=500)
    assert main(['--arm', f'none={a},{b}', '--arm', f'rnvp={a},{b}']) == 2
    assert 'arm none: its runs differ in optim.iterations' in capsys.readouterr().err


def test_arms_with_other_seeds_are_refused(tmp_path, capsys):
    a = write_run(tmp_path / 'a', seed=0, mode='none', ap=0.1, fpr95=0.8, miou=0.5)
    b = write_run(tmp_path / 'b', seed=1, mode='rnvp', ap=0.1, fpr95=0.8, miou=0.5)
    assert main(['--arm', f'none={a}', '--arm', f'rnvp={b}']) == 2
    assert 'arm rnvp has seeds [1] but arm none has [0]' in capsys.readouterr().err


def test_an_evaluation_without_a_table_setting_is_refused_naming_file_and_setting(
        tmp_path, capsys):
    a = write_run(tmp_path / 'a', seed=0, mode='none', ap=0.1, fpr95=0.8, miou=0.5,
                  settings=[('msp', 1.0), ('entropy', 1.0), ('msp', 10.0)])
    assert main(['--arm', f'none={a}', '--arm', f'rnvp={a}']) == 2
    err = capsys.readouterr().err
    assert f'{a}/held.json has no entropy T=2 row' in err


@pytest.mark.parametrize('arguments, message', [
    (['--arm', 'none'], "--arm must be NAME=DIR[,DIR...], got 'none'"),
    (['--arm', 'none=,'], "--arm must be NAME=DIR[,DIR...], got 'none=,'"),
    (['--arm', 'none=/nowhere'], '/nowhere/model.pt'),
    (['--recorded', 'rnvp'], "--recorded must be NAME=FILE.json, got 'rnvp'"),
    (['--recorded', 'rnvp=/nowhere.json'], '/nowhere.json: no such file'),
    ([], 'give the arms with --arm'),
])
def test_bad_arms_and_missing_runs_are_named(arguments, message, capsys):
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_a_method_that_is_not_an_arm_is_named(tmp_path, capsys):
    a = write_run(tmp_path / 'a', seed=0, mode='none', ap=0.1, fpr95=0.8, miou=0.5)
    assert main(['--arm', f'none={a}', '--method', 'rnvp']) == 2
    assert "--method rnvp is not one of the arms ['none']" in capsys.readouterr().err


def test_arms_recorded_in_an_earlier_json_give_the_same_table_once_their_runs_are_gone(
        tmp_path, capsys):
    first = tmp_path / 'first.json'
    rnvp = ((0.30, 0.60), (0.33, 0.61), (0.31, 0.62))
    arguments = arms(tmp_path, rnvp)
    assert main(arguments + ['--json', str(first)]) == 0
    for name in ('none', 'rnvp'):
        for seed in range(3):
            shutil.rmtree(tmp_path / f'{name}{seed}')
    noise = arguments[arguments.index('--arm') + 3]
    second = tmp_path / 'second.json'
    assert main(['--recorded', f'none={first}', '--arm', noise, '--recorded', f'rnvp={first}',
                 '--json', str(second)]) == 0
    before, after = json.loads(first.read_text()), json.loads(second.read_text())
    for key in ('seeds', 'arms_differ_in', 'rows', 'comparisons', 'target'):
        assert after[key] == before[key], key
    assert after['runs']['rnvp']['2']['recorded_in'] == str(first)
    assert after['runs']['rnvp']['2']['directory'] == str(tmp_path / 'rnvp2')
    assert 'recorded_in' not in after['runs']['noise']['0']
    # A recorded run keeps what a run directory gives, nothing less (compare_runs.RUN_KEYS).
    assert set(after['runs']['rnvp']['2']) == set(after['runs']['noise']['0']) | {'recorded_in'}
    # Recorded again from the second file, a run still names the file that first kept it.
    third = tmp_path / 'third.json'
    assert main(['--recorded', f'none={second}', '--recorded', f'rnvp={second}',
                 '--json', str(third)]) == 0
    assert json.loads(third.read_text())['runs']['none']['0']['recorded_in'] == str(first)


@pytest.mark.parametrize('payload, message', [
    ({'evaluation': 'held.json', 'runs': {'none': {}}}, "records no arm rnvp (it has ['none'])"),
    ({'evaluation': 'val.json', 'runs': {}}, "records the evaluation 'val.json'"),
    ({'evaluation': 'held.json', 'runs': {'rnvp': {'0': {'seed': 0}}}},
     'arm rnvp seed 0 lacks'),
    ([1, 2], 'is not the JSON of train.compare_runs'),
])
def test_a_recorded_arm_that_is_absent_or_incomplete_is_refused_by_name(
        tmp_path, payload, message, capsys):
    recorded = tmp_path / 'recorded.json'
    recorded.write_text(json.dumps(payload))
    a = write_run(tmp_path / 'a', seed=0, mode='none', ap=0.1, fpr95=0.8, miou=0.5)
    assert main(['--arm', f'none={a}', '--recorded', f'rnvp={recorded}']) == 2
    assert message in capsys.readouterr().err
