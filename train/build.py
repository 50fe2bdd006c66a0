"""The one place that reads a resolved training config: it returns a run's parts as objects.

``build_run(config, env)`` gives the trainer everything it needs (task, data sets, class
names and palette, models, optimizers, schedule, AMP, normaliser, outlier settings,
transform, loop and export settings); the trainer never indexes the config. The pieces are
public so that benchmarks build models and optimizers exactly as training does.
"""

import dataclasses
import os
import warnings

import torch

from dense_ood_ros.models import RealNVP
from dense_ood_ros.normalization import Normalizer
from train.classify import ClassifyTask, PadCropFlip
from train.config import DEFAULTS, ConfigError, config_differences, merge, outlier_sizes
from train.data import cifar
from train.data.label_space import label_space
from train.data.registry import build_dataset
from train.data.synthetic import SyntheticStreetWorld
from train.dense_task import DenseTask
from train.distributed import DistEnv, init_distributed, select_device
from train.init_weights import load_initial_weights
from train.outliers import OutlierSettings
from train.step import Amp, Optimizers
from train.trainer import Trainer
from train.transforms import training_transform

_AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

# Config keys a resumed run may change: they affect what is logged, not what is learnt.
RESUMABLE_CHANGES = ('log.', 'validation.', 'data.num_workers', 'device', 'export.')


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """How long the loop runs, in what batches, and when it logs, validates and saves."""

    iterations: int
    batch_size: int
    seed: int
    num_workers: int
    log_interval: int
    sample_interval: int
    checkpoint_interval: int
    validation_interval: int
    tensorboard: bool
    crop_size: int  # the side of the sample grids' largest outlier is fitted to it


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What the node's checkpoint needs beyond the weights."""

    arch: str
    input_short_edge: int
    threshold: float
    flow_config: dict  # RealNVP's constructor arguments; None without a flow


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """The resolved config as provenance: written beside the run, never read by the loop."""

    config: dict

    def check_resumable(self, saved, where):
        """Raise ConfigError unless a resume file's config differs only in RESUMABLE_CHANGES."""
        # Keys added since the file was written take their defaults (e.g. task: dense).
        saved = merge(DEFAULTS, saved, where=os.fspath(where))
        changed = [key for key in config_differences(saved, self.config)
                   if not key.startswith(RESUMABLE_CHANGES)]
        if changed:
            allowed = ', '.join(key + '*' if key.endswith('.') else key
                                for key in RESUMABLE_CHANGES)
            raise ConfigError(f'{where}: the config differs from the one this run started with '
                              f'in {", ".join(changed)}; resume with the same config '
                              f'(only {allowed} may change)')


@dataclasses.dataclass
class RunParts:
    """Everything a training process holds, built from one config."""

    task: object            # DenseTask or ClassifyTask
    train_set: object
    val_set: object         # None: no validation (or not rank 0)
    class_names: list
    palette: list
    network: torch.nn.Module  # LDN-121 or VGG-13, on the device, in training mode
    flow: torch.nn.Module     # RealNVP, or None unless outliers come from it
    optimizers: Optimizers
    scheduler: object
    amp: Amp
    normalize: Normalizer
    outliers: OutlierSettings
    transform: object
    loop: LoopSettings
    export: ExportSpec
    record: RunRecord


def flow_config(config):
    """Return RealNVP's constructor arguments stored with the exported flow."""
    flow = config['flow']
    return {'in_channels': 3, 'num_scales': flow['num_scales'],
            'mid_channels': flow['mid_channels'], 'num_blocks': flow['num_blocks']}


def build_flow(config):
    """Return RealNVP built from the config's flow section, or None unless mode is 'rnvp'."""
    if config['outliers']['mode'] != 'rnvp':
        return None
    return RealNVP(**flow_config(config), checkpointing=config['flow']['checkpointing'])


def build_optimizers(config, network, flow, *, device, param_groups):
    """Return (Optimizers, cosine scheduler) as in the paper's section 5.2.

    Adam over the task's `param_groups` (LDN: lr_backbone for DenseNet-121, lr_upsampling
    for the rest), cosine-annealed to lr_min over the run; the flow gets Adam with its
    defaults (lr 1e-3) and no schedule.
    """
    optim = config['optim']
    network_opt = torch.optim.Adam(param_groups)
    flow_opt = (torch.optim.Adam(flow.parameters(), lr=optim['flow_lr'])
                if flow is not None else None)
    scaler = None
    if config['amp'] == 'fp16' and device.type == 'cuda':
        scaler = torch.amp.GradScaler('cuda')
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        network_opt, T_max=optim['iterations'], eta_min=optim['lr_min'])
    return Optimizers(network=network_opt, flow=flow_opt, scaler=scaler), scheduler


def build_amp(config, device):
    """Return the autocast settings; AMP without CUDA warns and trains in float32."""
    dtype = _AMP_DTYPES[config['amp']]
    if dtype is not None and device.type != 'cuda':
        warnings.warn(f"amp: {config['amp']} needs CUDA; training in float32 on {device}",
                      stacklevel=3)
        dtype = None
    return Amp(device_type=device.type, dtype=dtype)


def set_determinism(config, device):
    """Apply the config's `deterministic` flag (or cuDNN's benchmark mode on CUDA)."""
    if config['deterministic']:
        # cuBLAS needs this before its first call to be deterministic.
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        # warn_only: CUDA has no deterministic backward of bilinear upsampling (LDN's
        # ladder); erroring would make the flag unusable on GPUs.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == 'cuda':
        torch.backends.cudnn.benchmark = True


def outlier_settings(config):
    """Return how a training step makes and weighs outliers (train.outliers)."""
    section = config['outliers']
    return OutlierSettings(mode=section['mode'], sizes=tuple(outlier_sizes(config)),
                           lam=section['lambda'], noise_mean=section['noise_mean'],
                           noise_std=section['noise_std'], flow_signal=section['flow_signal'],
                           shade_match=section['shade_match'],
                           shade_offset=section['shade_offset'])


def build_task(config):
    """Return the task object of the config: DenseTask or ClassifyTask."""
    optim, model, data = config['optim'], config['model'], config['data']
    if config['task'] == 'classify':
        return ClassifyTask(lr=optim['lr_classifier'])
    return DenseTask(arch=model['arch'], backbone_weights=model['backbone_weights'],
                     checkpointing=model['checkpointing'], lr_backbone=optim['lr_backbone'],
                     lr_upsampling=optim['lr_upsampling'], input_short_edge=data['short_edge'])


def build_datasets(config, *, is_main=True):
    """Return (training set, validation set or None); validation on rank 0 only."""
    data, validation = config['data'], config['validation']
    if config['task'] == 'classify':
        train_set = cifar.Cifar10(data['root'], data['split'])
        val_set = None
        if is_main and validation['dataset'] is not None:
            val_set = cifar.Cifar10(validation['root'], validation['split'],
                                    limit=validation['max_images'] or None)
        return train_set, val_set
    return training_dataset(config), validation_dataset(config) if is_main else None


def _dataset(section, *, limit=None):
    """Return the dataset a config section ('data' or 'validation') names.

    The synthetic world has no root on disk: it is rendered, and its Samples are cached so
    that training and validation see the same small world every epoch.
    """
    name = section['dataset']
    if name == 'synthetic':
        return synthetic_world(section, limit=limit)
    kwargs = {'limit': limit} if limit else {}
    return build_dataset(name, section['root'], section['split'], **kwargs)


def synthetic_world(section, *, split=None, num_images=None, limit=None, cache=True):
    """Return the synthetic world of a config section ('data' or 'validation').

    `split` and `num_images` replace the section's; at most `limit` images; the Samples are
    cached unless `cache` is False (a set read once).
    """
    world = section['synthetic']
    num_images = num_images or world['num_images']
    num_images = min(num_images, limit or num_images)
    return SyntheticStreetWorld(split or section['split'], num_images=num_images,
                                height=world['height'], width=world['width'],
                                seed=world['seed'], cache=cache)


def training_dataset(config):
    """Return the training dataset of a resolved dense config."""
    return _dataset(config['data'])


def validation_dataset(config):
    """Return the validation dataset of a resolved dense config, or None when it names none."""
    section = config['validation']
    if section['dataset'] is None:
        return None
    return _dataset(section, limit=section['max_images'] or None)


def build_transform(config):
    """Return the random training transform of the config's task."""
    data = config['data']
    if config['task'] == 'classify':
        return PadCropFlip(data['crop_size'], hflip=data['hflip'])
    return training_transform(
        short_edge=data['short_edge'], crop_size=data['crop_size'], hflip=data['hflip'],
        keep_label_resolution=data['label_resolution'] == 'original')


def loop_settings(config):
    """Return the LoopSettings of a config."""
    optim, log = config['optim'], config['log']
    return LoopSettings(
        iterations=optim['iterations'], batch_size=optim['batch_size'], seed=config['seed'],
        num_workers=config['data']['num_workers'], log_interval=log['interval'],
        sample_interval=log['sample_interval'], checkpoint_interval=log['checkpoint_interval'],
        validation_interval=config['validation']['interval'], tensorboard=log['tensorboard'],
        crop_size=config['data']['crop_size'])


def export_spec(config):
    """Return the ExportSpec of a config."""
    has_flow = config['outliers']['mode'] == 'rnvp'
    return ExportSpec(arch=config['model']['arch'], input_short_edge=config['data']['short_edge'],
                      threshold=float(config['export']['threshold']),
                      flow_config=flow_config(config) if has_flow else None)


def build_run(config, env, *, resuming=False):
    """Return the RunParts of a resolved config on `env`'s device.

    The order is the one training has always used, because it fixes every random draw:
    seed, data sets, network initialisation, flow initialisation. `model.init_weights`
    then overwrites the initial weights, so the draws after it stay the same; not when
    `resuming`, since the resume file holds the weights (and the checkpoint may be gone).
    """
    device = env.device
    set_determinism(config, device)
    torch.manual_seed(config['seed'])
    task = build_task(config)
    train_set, val_set = build_datasets(config, is_main=env.is_main)
    class_names, palette = label_space(train_set)
    outliers = outlier_settings(config)
    network = task.make_model(len(class_names))
    network.to(device).train()
    flow = build_flow(config)
    if flow is not None:
        flow.to(device).train()
    spec = export_spec(config)
    if config['model']['init_weights'] is not None and not resuming:
        load_initial_weights(config['model']['init_weights'], network=network, flow=flow,
                             class_names=class_names, spec=spec)
    optimizers, scheduler = build_optimizers(config, network, flow, device=device,
                                             param_groups=task.param_groups(network))
    return RunParts(
        task=task, train_set=train_set, val_set=val_set, class_names=class_names,
        palette=palette, network=network, flow=flow, optimizers=optimizers,
        scheduler=scheduler, amp=build_amp(config, device),
        normalize=Normalizer(task.mean, task.std, device=device), outliers=outliers,
        transform=build_transform(config), loop=loop_settings(config),
        export=spec, record=RunRecord(config))


def build_trainer(config, *, out_dir, env=None, resuming=False):
    """Return a Trainer for a resolved config, on `env` (default: this process alone).

    `resuming`: the caller loads a resume file next, so `model.init_weights` is not read.
    """
    env = env or DistEnv(device=select_device(config['device']))
    return Trainer(build_run(config, env, resuming=resuming), out_dir=out_dir, env=env)


def init_process(config):
    """Return this process's DistEnv: torchrun's process group, or one process alone."""
    return init_distributed(config['device'])
