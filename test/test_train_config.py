"""Training configs: every shipped file loads; overrides; errors name the key."""

import pathlib

import pytest
import yaml

from train.config import (
    CHECKS, DEFAULTS, ConfigError, apply_overrides, config_differences, flatten, load_config,
    outlier_sizes, resolve)

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / 'config').glob('train_*.yaml'))


def test_every_default_has_a_check_and_every_check_a_default():
    assert set(CHECKS) == set(flatten(DEFAULTS))


def test_the_four_shipped_configs_exist():
    names = {path.stem for path in CONFIGS}
    assert {'train_cityscapes', 'train_streethazards', 'train_vistas_np',
            'train_demo'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load_and_spell_out_every_key(path):
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    # Explicit files: nothing silently comes from DEFAULTS.
    assert set(flatten(raw)) == set(flatten(DEFAULTS))
    assert config['outliers']['lambda'] >= 0


@pytest.mark.parametrize('name, iterations', [('train_cityscapes', 54000),
                                              ('train_streethazards', 43000),
                                              ('train_vistas_np', 94000)])
def test_paper_configs_follow_section_5_2(name, iterations):
    config = load_config(ROOT / 'config' / f'{name}.yaml')
    assert config['optim']['iterations'] == iterations
    assert config['optim']['batch_size'] == 6
    assert config['data']['crop_size'] == 512 and config['data']['short_edge'] == 512
    assert config['outliers']['lambda'] == 1e-3 and config['outliers']['mode'] == 'rnvp'
    assert outlier_sizes(config) == list(range(64, 145, 8))
    assert (config['optim']['lr_backbone'], config['optim']['lr_upsampling'],
            config['optim']['lr_min'], config['optim']['flow_lr']) == (1e-4, 4e-4, 1e-7, 1e-3)
    assert config['model']['checkpointing'] and config['flow']['checkpointing']
    assert (config['flow']['num_scales'], config['flow']['mid_channels'],
            config['flow']['num_blocks']) == (3, 32, 3)


def test_overrides_parse_values_as_yaml():
    config = resolve({}, overrides=['optim.iterations=12', 'outliers.mode=noise',
                                    'validation.dataset=null', 'data.hflip=false',
                                    'outliers.lambda=1e-2'])
    assert config['optim']['iterations'] == 12
    assert config['outliers']['mode'] == 'noise'
    assert config['validation']['dataset'] is None
    assert config['data']['hflip'] is False
    assert config['outliers']['lambda'] == 0.01


def test_amp_off_survives_yaml_reading_it_as_false():
    assert resolve({'amp': False})['amp'] == 'off'
    assert resolve({}, overrides=['amp=off'])['amp'] == 'off'
    assert resolve({}, overrides=['amp=bf16'])['amp'] == 'bf16'


def test_an_unknown_key_in_a_file_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('optim:\n  batchsize: 4\n')
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.batchsize'.*"
                                          r"did you mean 'optim.batch_size'"):
        load_config(path)


def test_an_unknown_override_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'outliers.lamda'"):
        apply_overrides(DEFAULTS, ['outliers.lamda=1'])
    with pytest.raises(ConfigError, match='expected key=value'):
        apply_overrides(DEFAULTS, ['outliers.lambda'])


@pytest.mark.parametrize('override, key', [
    ('optim.batch_size=1', 'optim.batch_size'),
    ('outliers.mode=gan', 'outliers.mode'),
    ('amp=fp8', 'amp'),
    ('optim.lr_backbone=-1', 'optim.lr_backbone'),
    ('outliers.lambda=.nan', 'outliers.lambda'),
    ('data.crop_size=12', 'data.crop_size'),
    ('device=gpu', 'device'),
    ('data.hflip=maybe', 'data.hflip'),
    ('data.dataset=imagenet', 'data.dataset'),
])
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        resolve({}, overrides=[override])


def test_a_section_given_a_scalar_is_refused():
    with pytest.raises(ConfigError, match="'optim' is a section"):
        resolve({'optim': 3})


def test_rnvp_sizes_must_be_multiples_of_the_flow_divisor():
    with pytest.raises(ConfigError, match='not multiples of 2 \\*\\* flow.num_scales = 8'):
        resolve({}, overrides=['outliers.size_min=60'])
    # The noise baseline has no such constraint.
    resolve({}, overrides=['outliers.size_min=60', 'outliers.mode=noise'])


def test_size_range_must_not_be_empty():
    with pytest.raises(ConfigError, match='size_min'):
        resolve({}, overrides=['outliers.size_min=200'])


def test_a_real_dataset_needs_a_root():
    with pytest.raises(ConfigError, match="'data.root' must name the directory"):
        resolve({}, overrides=['data.root=null'])
    resolve({}, overrides=['data.root=null', 'data.dataset=synthetic'])


def test_a_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match='does not exist'):
        load_config(tmp_path / 'nope.yaml')


def test_config_differences_lists_changed_leaves():
    changed = resolve({}, overrides=['optim.iterations=5', 'log.interval=3'])
    assert config_differences(resolve({}), changed) == ['log.interval', 'optim.iterations']
