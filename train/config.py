"""Training configuration: YAML loading, ``--set key=value`` overrides and validation.

A config is a nested dict whose shape is fixed by ``DEFAULTS``; every key a file or an
override names must exist there, and every value is checked, so a typo or a bad value stops
the run before any data is read, with a message that names the key.
"""

import copy
import difflib
import os

import yaml

from dense_ood_ros.devices import device_form_problem
from train.data import registry

# Dataset names the training loop can read: the registered readers, and 'synthetic', the
# procedural street world rendered in memory (train.build, train.data.synthetic). 'cifar10' is the
# image-wide task's (task: classify) only dataset.
DATASETS = ('synthetic', *registry.DATASETS, 'cifar10')
# 'dense': LDN-121 with pasted outlier patches (Algorithm 2); 'classify': VGG-13 on whole
# 32x32 images with whole-image outliers (Algorithm 1, Table 1).
TASKS = ('dense', 'classify')
# The architecture each task trains.
TASK_ARCHS = {'dense': 'ldn121', 'classify': 'vgg13_bn'}
VGG_INPUT_SIDE = 32
OUTLIER_MODES = ('rnvp', 'noise', 'none')
FLOW_SIGNALS = ('pasted', 'full')
LABEL_RESOLUTIONS = ('original', 'input')
AMP_MODES = ('off', 'bf16', 'fp16')

# The paper's Cityscapes run (section 5.2); the files in config/ spell every key out anyway.
DEFAULTS = {
    'task': 'dense',
    'seed': 0,
    'device': 'auto',
    'amp': 'off',
    'deterministic': False,
    'data': {
        'dataset': 'cityscapes',
        'root': 'datasets/cityscapes',
        'split': 'train',
        'short_edge': 512,
        'crop_size': 512,
        # 'original' keeps the label resolution and upsamples the logits to it in the loss
        # (the paper); 'input' resizes labels with the image (the paper's Vistas-NP recipe).
        'label_resolution': 'original',
        'hflip': True,
        'num_workers': 4,
        'synthetic': {'num_images': 2000, 'height': 256, 'width': 512, 'seed': 0},
    },
    'validation': {
        'dataset': None,
        'root': None,
        'split': 'val',
        'max_images': 0,
        'interval': 5000,
        'synthetic': {'num_images': 50, 'height': 256, 'width': 512, 'seed': 0},
    },
    'model': {
        'arch': 'ldn121',
        'backbone_weights': None,
        # A checkpoint (model.pt) whose network, and flow if the run has one, start this run
        # instead of a random initialisation: fine-tuning. Optimizers and schedule start anew.
        'init_weights': None,
        'checkpointing': True,
    },
    'flow': {
        'num_scales': 3,
        'mid_channels': 32,
        'num_blocks': 3,
        'checkpointing': True,
    },
    'outliers': {
        'mode': 'rnvp',
        # What of Lseg reaches the flow (docs/method.md): 'full', the whole of Eq. 4
        # (Algorithm 2 read literally; the winner over three seeds), or 'pasted', the KL term
        # on the pasted pixels only (the paper's stated intent). Summed over an image's pixels.
        'flow_signal': 'full',
        'lambda': 1.0e-3,
        'size_min': 64,
        'size_max': 144,
        'size_step': 8,
        'noise_mean': 0.5,
        'noise_std': 0.25,
        # Dense task: the share of pasted patches whose mean colour is moved to that of the
        # pixels they cover plus a common offset in [-shade_offset, shade_offset], so that
        # some outliers differ from their surroundings by texture and a slight shade only
        # (docs/method.md section 7). 0 pastes every patch as made.
        'shade_match': 0.0,
        'shade_offset': 0.2,
    },
    'optim': {
        'batch_size': 6,
        'iterations': 54000,
        'lr_backbone': 1.0e-4,
        'lr_upsampling': 4.0e-4,
        'lr_min': 1.0e-7,
        'flow_lr': 1.0e-3,
        # task: classify only (one Adam group for the whole classifier).
        'lr_classifier': 2.0e-4,
    },
    'log': {
        'interval': 20,
        'sample_interval': 1000,
        'checkpoint_interval': 2000,
        'tensorboard': True,
    },
    'export': {
        'threshold': 0.5,
    },
}


class ConfigError(ValueError):
    """A config file, override or value is wrong; the message names the offending key."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_at_least(minimum):
    def check(value):
        if not _is_int(value) or value < minimum:
            return f'expected an integer >= {minimum}'
        return None
    return check


def _number_in(low, high):
    def check(value):
        if not _is_number(value) or not low <= value <= high:
            return f'expected a number in [{low}, {high}]'
        return None
    return check


def _non_negative_number(value):
    if not _is_number(value) or not 0 <= value < float('inf'):
        return 'expected a non-negative finite number'
    return None


def _finite_number(value):
    if not _is_number(value) or not abs(value) < float('inf'):
        return 'expected a finite number'
    return None


def _positive_number(value):
    if not _is_number(value) or not value > 0 or value == float('inf'):
        return 'expected a positive finite number'
    return None


def _choice(options, *, nullable=False):
    def check(value):
        if value is None and nullable:
            return None
        if value not in options:
            allowed = ', '.join(repr(o) for o in options) + (' or null' if nullable else '')
            return f'expected one of {allowed}'
        return None
    return check


def _boolean(value):
    return None if isinstance(value, bool) else 'expected true or false'


def _string(*, nullable=False):
    def check(value):
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            return 'expected a non-empty string' + (' or null' if nullable else '')
        return None
    return check


def _synthetic_checks(prefix):
    return {
        f'{prefix}.synthetic.num_images': _int_at_least(1),
        f'{prefix}.synthetic.height': _int_at_least(32),
        f'{prefix}.synthetic.width': _int_at_least(32),
        f'{prefix}.synthetic.seed': _int_at_least(0),
    }


# One checker per leaf of DEFAULTS; a test keeps the two in step.
CHECKS = {
    'task': _choice(TASKS),
    'seed': _int_at_least(0),
    'device': device_form_problem,
    'amp': _choice(AMP_MODES),
    'deterministic': _boolean,
    'data.dataset': _choice(DATASETS),
    'data.root': _string(nullable=True),
    'data.split': _string(),
    'data.short_edge': _int_at_least(32),
    'data.crop_size': _int_at_least(32),
    'data.label_resolution': _choice(LABEL_RESOLUTIONS),
    'data.hflip': _boolean,
    'data.num_workers': _int_at_least(0),
    **_synthetic_checks('data'),
    'validation.dataset': _choice(DATASETS, nullable=True),
    'validation.root': _string(nullable=True),
    'validation.split': _string(),
    'validation.max_images': _int_at_least(0),
    'validation.interval': _int_at_least(0),
    **_synthetic_checks('validation'),
    'model.arch': _choice(tuple(TASK_ARCHS.values())),
    'model.backbone_weights': _string(nullable=True),
    'model.init_weights': _string(nullable=True),
    'model.checkpointing': _boolean,
    'flow.num_scales': _int_at_least(1),
    'flow.mid_channels': _int_at_least(1),
    'flow.num_blocks': _int_at_least(1),
    'flow.checkpointing': _boolean,
    'outliers.mode': _choice(OUTLIER_MODES),
    'outliers.flow_signal': _choice(FLOW_SIGNALS),
    'outliers.lambda': _non_negative_number,
    'outliers.size_min': _int_at_least(1),
    'outliers.size_max': _int_at_least(1),
    'outliers.size_step': _int_at_least(1),
    'outliers.noise_mean': _number_in(0.0, 1.0),
    'outliers.noise_std': _positive_number,
    'outliers.shade_match': _number_in(0.0, 1.0),
    'outliers.shade_offset': _number_in(0.0, 1.0),
    # Batch norm in LDN's 1x1 pyramid level needs two images per batch (per process).
    'optim.batch_size': _int_at_least(2),
    'optim.iterations': _int_at_least(1),
    'optim.lr_backbone': _positive_number,
    'optim.lr_upsampling': _positive_number,
    'optim.lr_min': _non_negative_number,
    'optim.flow_lr': _positive_number,
    'optim.lr_classifier': _positive_number,
    'log.interval': _int_at_least(1),
    'log.sample_interval': _int_at_least(0),
    'log.checkpoint_interval': _int_at_least(0),
    'log.tensorboard': _boolean,
    'export.threshold': _finite_number,
}


def flatten(config, prefix=''):
    """Return {'a.b.c': value} for every leaf of a nested config dict."""
    flat = {}
    for key, value in config.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(flatten(value, name + '.'))
        else:
            flat[name] = value
    return flat


def _unknown_key(name, where):
    close = difflib.get_close_matches(name, list(flatten(DEFAULTS)) + _sections(), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    return ConfigError(f"{where}: unknown config key '{name}'{hint}")


def _sections():
    return [key for key, value in _walk_sections(DEFAULTS)]


def _walk_sections(tree, prefix=''):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield f'{prefix}{key}', value
            yield from _walk_sections(value, f'{prefix}{key}.')


def merge(base, update, *, where, prefix=''):
    """Return `base` with the values of the nested dict `update`, refusing unknown keys."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        name = f'{prefix}{key}'
        if not isinstance(key, str) or key not in base:
            raise _unknown_key(name, where)
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: config key '{name}' is a section; expected a "
                                  f'mapping of its keys, got {value!r}')
            merged[key] = merge(base[key], value, where=where, prefix=name + '.')
        else:
            merged[key] = value
    return merged


def parse_override(text):
    """Split one ``key=value`` override; the value is parsed as YAML (numbers, null, ...)."""
    if '=' not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. 'optim.iterations=100'")
    key, raw = text.split('=', 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ''
    except yaml.YAMLError as error:
        raise ConfigError(f'--set {text!r}: value is not valid YAML ({error})') from None
    return key, value


def apply_overrides(config, overrides):
    """Return `config` with each ``key=value`` string of `overrides` applied."""
    config = copy.deepcopy(config)
    leaves = flatten(DEFAULTS)
    for text in overrides:
        key, value = parse_override(text)
        if key not in leaves:
            raise _unknown_key(key, f'--set {text!r}')
        *parents, leaf = key.split('.')
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def _normalise(config):
    # YAML 1.1 reads a bare `off` as false; accept it for `amp: off`.
    if config['amp'] is False:
        config['amp'] = 'off'
    defaults = flatten(DEFAULTS)
    for key, default in defaults.items():
        if not isinstance(default, float):
            continue
        *parents, leaf = key.split('.')
        node = config
        for part in parents:
            node = node[part]
        value = node[leaf]
        if _is_int(value):
            node[leaf] = float(value)
        elif isinstance(value, str):
            # YAML 1.1 (PyYAML) reads 1e-3 without a dot as a string.
            try:
                node[leaf] = float(value)
            except ValueError:
                pass
    return config


def outlier_sizes(config):
    """Return the outlier side lengths, size_min..size_max in steps of size_step."""
    section = config['outliers']
    return list(range(section['size_min'], section['size_max'] + 1, section['size_step']))


def validate(config, *, where='config'):
    """Raise ConfigError naming the first key whose value is invalid; return `config`."""
    for key, value in flatten(config).items():
        problem = CHECKS[key](value)
        if problem:
            raise ConfigError(f"{where}: config key '{key}': {problem}, got {value!r}")
    outliers = config['outliers']
    if outliers['size_min'] > outliers['size_max']:
        raise ConfigError(f"{where}: config key 'outliers.size_min' ({outliers['size_min']}) "
                          f"must not exceed 'outliers.size_max' ({outliers['size_max']})")
    if outliers['mode'] == 'rnvp':
        divisor = 2 ** config['flow']['num_scales']
        bad = [s for s in outlier_sizes(config) if s % divisor]
        if bad:
            raise ConfigError(
                f"{where}: config keys 'outliers.size_min/size_max/size_step' give sizes "
                f'{bad} that are not multiples of 2 ** flow.num_scales = {divisor}')
    _validate_task(config, where)
    for section in ('data', 'validation'):
        name = config[section]['dataset']
        if name not in (None, 'synthetic') and not config[section]['root']:
            raise ConfigError(f"{where}: config key '{section}.root' must name the directory "
                              f'of the {name!r} dataset')
    return config


def _validate_task(config, where):
    task = config['task']
    arch = TASK_ARCHS[task]
    if config['model']['arch'] != arch:
        raise ConfigError(f"{where}: config key 'model.arch' must be {arch!r} for task "
                          f"{task!r}, got {config['model']['arch']!r}")
    for section in ('data', 'validation'):
        name = config[section]['dataset']
        if name is not None and (name == 'cifar10') != (task == 'classify'):
            wanted = "'cifar10'" if task == 'classify' else 'a segmentation dataset'
            raise ConfigError(f"{where}: config key '{section}.dataset' must be {wanted} for "
                              f'task {task!r}, got {name!r}')
    data = config['data']
    if task == 'classify' and not data['crop_size'] == data['short_edge'] == VGG_INPUT_SIDE:
        raise ConfigError(f"{where}: config keys 'data.crop_size' and 'data.short_edge' must be "
                          f"{VGG_INPUT_SIDE} for task 'classify' (VGG-13's input side), got "
                          f"{data['crop_size']} and {data['short_edge']}")
    if task == 'classify' and config['outliers']['shade_match'] > 0:
        raise ConfigError(f"{where}: config key 'outliers.shade_match' must be 0 for task "
                          "'classify': its outliers are whole images, with nothing to match")
    if task == 'classify' and config['outliers']['mode'] != 'none':
        # Algorithm 1 replaces whole images: the outlier side is the image side.
        crop = config['data']['crop_size']
        if outlier_sizes(config) != [crop]:
            raise ConfigError(
                f"{where}: config keys 'outliers.size_min/size_max' must both equal "
                f"'data.crop_size' ({crop}) for task 'classify': outliers are whole images")


def resolve(raw, *, overrides=(), where='config'):
    """Return DEFAULTS updated by the nested dict `raw` and `overrides`, validated."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f'{where}: expected a mapping of config keys at the top level, '
                          f'got {type(raw).__name__}')
    config = merge(DEFAULTS, raw, where=where)
    config = apply_overrides(config, overrides)
    return validate(_normalise(config), where=where)


def load_config(path, *, overrides=()):
    """Read a YAML config file, apply ``key=value`` overrides and validate the result."""
    path = os.fspath(path)
    try:
        with open(path, encoding='utf-8') as stream:
            raw = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(f'config file {path} does not exist') from None
    except yaml.YAMLError as error:
        raise ConfigError(f'config file {path} is not valid YAML: {error}') from None
    return resolve(raw, overrides=overrides, where=path)


def config_differences(saved, current):
    """Return the sorted leaf keys whose values differ between two resolved configs."""
    flat_saved, flat_current = flatten(saved), flatten(current)
    keys = set(flat_saved) | set(flat_current)
    return sorted(k for k in keys if flat_saved.get(k) != flat_current.get(k))
