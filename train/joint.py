"""python -m train.joint: joint training of LDN-121 and RealNVP (Algorithm 2 of the paper).

With ``task: classify`` in the config the same loop trains VGG-13 and RealNVP on CIFAR-10
(Algorithm 1, train.classify). Usage, from the repository root::

    python -m train.joint --config config/train_cityscapes.yaml [--set key=value ...]
        [--out DIR] [--resume] [--report-memory] [--stop-after ITERATION]
    torchrun --nproc_per_node=N -m train.joint --config ...

A run writes into DIR (default ``runs/<config name>``): ``resume.pt`` every
``log.checkpoint_interval`` iterations and at the end (``--resume`` continues from it
exactly), ``model.pt`` at the end in the node's checkpoint format, ``scalars.csv``,
``config.yaml``, ``samples/*.png`` grids of RealNVP samples and TensorBoard events when
tensorboard is installed. Only rank 0 writes.
"""

import argparse
import math
import os
import shlex
import sys
import time
import warnings

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dense_ood_ros.atomic_file import atomic_open
from dense_ood_ros.checkpoint import CheckpointError
from dense_ood_ros.labels import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.models import RealNVP, build_segmenter
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.scores import DEFAULT_TEMPERATURES
from train import state
from train.config import DEFAULTS, ConfigError, config_differences, load_config, merge
from train.data.world import label_space, training_dataset, validation_dataset
from train.distributed import DistEnv, ProcessGroupSync, init_distributed, select_device
from train.distributed import shutdown
from train.loader import to_device, training_loader
from train.logging_utils import (
    ScalarLogger, current_memory_mb, peak_memory_mb, peak_memory_report, reset_peak_memory,
    save_flow_samples)
from train.outliers import OutlierSettings
from train.paste import fit_size
from train.step import (
    Amp, LocalSync, Normalizer, Optimizers, apply_losses, compute_losses, flow_gradient_norms,
    sample_nll, step_randomness)
from train.transforms import training_transform
from train.evaluate import evaluate

# A few NaN steps can be noise (an fp16 overflow, one odd batch); this many in a row is not.
MAX_CONSECUTIVE_SKIPS = 10

# Config keys a resumed run may change: they affect what is logged, not what is learnt.
RESUMABLE_CHANGES = ('log.', 'validation.', 'data.num_workers', 'device', 'export.')

# What the flow hears, probed on the log row's step (train.step.flow_gradient_norms): the
# gradient norm from each source, the softmax entropy on pasted pixels and the flow's NLL of
# its own samples (nll_samples) next to that of the real patches they replaced (nll).
PROBE_COLUMNS = ('grad_flow_ce', 'grad_flow_kl', 'grad_flow_nll', 'pasted_entropy',
                 'nll_samples')
SCALAR_COLUMNS = ('loss', 'ce', 'kl', 'nll', 'size', 'lr_backbone', 'lr_upsampling', 'lr_flow',
                  'it_per_s', 'memory_mb', 'skipped_steps', *PROBE_COLUMNS, 'val_miou',
                  'val_pixel_accuracy', 'val_ap', 'val_fpr95', 'val_auroc')

_AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. losses keep being NaN); the message says why."""


def build_segmenter_from_config(config, num_classes):
    """Return LDN-121 built from the config's model section."""
    model = config['model']
    return build_segmenter(model['arch'], num_classes,
                           backbone_weights=model['backbone_weights'],
                           checkpointing=model['checkpointing'])


def build_flow_from_config(config):
    """Return RealNVP built from the config's flow section, or None unless mode is 'rnvp'."""
    if config['outliers']['mode'] != 'rnvp':
        return None
    return RealNVP(**state.flow_config(config), checkpointing=config['flow']['checkpointing'])


def build_optimizers(config, segmenter, flow, *, device, param_groups=None):
    """Return (Optimizers, cosine scheduler) as in the paper's section 5.2.

    Adam at lr_backbone for DenseNet-121 and lr_upsampling for the rest (or the given
    `param_groups`), cosine-annealed to lr_min over the run; the flow gets Adam with its
    defaults (lr 1e-3) and no schedule.
    """
    optim = config['optim']
    if param_groups is None:
        param_groups = [
            {'params': segmenter.backbone_parameters(), 'lr': optim['lr_backbone']},
            {'params': segmenter.upsampling_parameters(), 'lr': optim['lr_upsampling']},
        ]
    segmenter_opt = torch.optim.Adam(param_groups)
    flow_opt = (torch.optim.Adam(flow.parameters(), lr=optim['flow_lr'])
                if flow is not None else None)
    scaler = None
    if config['amp'] == 'fp16' and device.type == 'cuda':
        scaler = torch.amp.GradScaler('cuda')
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        segmenter_opt, T_max=optim['iterations'], eta_min=optim['lr_min'])
    return Optimizers(segmenter=segmenter_opt, flow=flow_opt, scaler=scaler), scheduler


def _amp_for(config, device):
    dtype = _AMP_DTYPES[config['amp']]
    if dtype is not None and device.type != 'cuda':
        warnings.warn(f"amp: {config['amp']} needs CUDA; training in float32 on {device}",
                      stacklevel=3)
        dtype = None
    return Amp(device_type=device.type, dtype=dtype)


def _set_determinism(config, device):
    if config['deterministic']:
        # cuBLAS needs this before its first call to be deterministic.
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        # warn_only: CUDA has no deterministic backward of bilinear upsampling (LDN's
        # ladder); erroring would make the flag unusable on GPUs.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == 'cuda':
        torch.backends.cudnn.benchmark = True


class _Window:
    """Running means of step scalars between two log rows."""

    def __init__(self):
        self.sums, self.counts = {}, {}
        self.start = time.perf_counter()
        self.steps = 0
        self.probes = {}

    def add(self, result):
        self.steps += 1
        if result.probes:
            self.probes = dict(result.probes)
        for key in ('loss', 'ce', 'kl', 'nll', 'size', 'entropy'):
            value = getattr(result, key)
            if not result.skipped and not math.isnan(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def means(self):
        return {key: self.sums[key] / self.counts[key] for key in self.sums}

    def rate(self):
        return self.steps / max(time.perf_counter() - self.start, 1e-9)


class JointTrainer:
    """Everything one training process holds: data, both models, optimizers, counters.

    `run()` trains from `iteration` to the config's iteration count (or `stop_after`),
    writing files on rank 0 only; `load_resume()` restores a resume file completely.
    The task-specific parts are the methods and attributes train.classify overrides:
    datasets, model, optimizer groups, loader, step, validation and what they log.
    """

    mean, std = IMAGENET_MEAN, IMAGENET_STD
    scalar_columns = SCALAR_COLUMNS
    # Names of the discriminative model's optimizer groups in the log, and the one shown live.
    lr_names = ('lr_backbone', 'lr_upsampling')
    progress_lr = 'lr_upsampling'
    # Makes the loader's keyed dataset; None is train.loader's TransformedSamples.
    sample_wrapper = None

    def __init__(self, config, *, out_dir, env=None):
        self.config = config
        self.out_dir = os.fspath(out_dir)
        self.env = env or DistEnv(device=select_device(config['device']))
        self.device = self.env.device
        _set_determinism(config, self.device)
        torch.manual_seed(config['seed'])
        self.train_set, self.val_set = self._build_datasets()
        self.class_names, self.palette = label_space(self.train_set)
        self.outliers = OutlierSettings.from_config(config)
        self.segmenter = self._build_model(len(self.class_names))
        self.segmenter.to(self.device).train()
        self.flow = build_flow_from_config(config)
        if self.flow is not None:
            self.flow.to(self.device).train()
        self.optimizers, self.scheduler = build_optimizers(
            config, self.segmenter, self.flow, device=self.device,
            param_groups=self._param_groups())
        self.amp = _amp_for(config, self.device)
        self.normalize = Normalizer(self.mean, self.std, device=self.device)
        if self.env.distributed:
            self.sync = ProcessGroupSync(self.env)
            if self.flow is not None:
                self.sync.broadcast_module(self.flow)
            ids = [self.device.index] if self.device.type == 'cuda' else None
            self.model = DistributedDataParallel(self.segmenter, device_ids=ids)
        else:
            self.sync = LocalSync()
            self.model = self.segmenter
        # The command line that started the run (set by main), recorded in model.pt.
        self.command = None
        # --report-memory (set by main): restart the peak after this run's first step, and
        # the iteration at which it was restarted (None: the peak covers the whole process).
        self.report_memory = False
        self.peak_memory_since = None
        self.iteration = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0

    # -- task hooks -------------------------------------------------------------------------

    def _build_datasets(self):
        """Return (training set, validation set or None); validation on rank 0 only."""
        train_set = training_dataset(self.config)
        val_set = validation_dataset(self.config) if self.env.is_main else None
        return train_set, val_set

    def _build_model(self, num_classes):
        """Return the discriminative model (LDN-121 here)."""
        return build_segmenter_from_config(self.config, num_classes)

    def _param_groups(self):
        """Return its optimizer groups, or None for build_optimizers' LDN split."""
        return None

    def _training_transform(self):
        """Return the random training transform (resize short edge, crop, flip)."""
        data = self.config['data']
        return training_transform(
            short_edge=data['short_edge'], crop_size=data['crop_size'], hflip=data['hflip'],
            keep_label_resolution=data['label_resolution'] == 'original')

    def _training_loader(self, stop):
        """Return the loader of iterations [iteration, stop) of this rank."""
        config = self.config
        return training_loader(
            self.train_set, self._training_transform(),
            batch_size=config['optim']['batch_size'], seed=config['seed'],
            start=self.iteration, end=stop, rank=self.env.rank,
            world_size=self.env.world_size, num_workers=config['data']['num_workers'],
            pin_memory=self.device.type == 'cuda', wrapper=self.sample_wrapper)

    def _validation_metrics(self):
        """Return mIoU, pixel accuracy and MSP AP / FPR95 / AUROC on the validation set.

        Through train.evaluate, i.e. the node's own inference path, so the figures describe
        what the exported checkpoint will do; NaN where the set has no such labels.
        """
        pipeline = DenseOODPipeline(self.segmenter, class_names=self.class_names, mean=self.mean,
                                    std=self.std,
                                    input_short_edge=self.config['data']['short_edge'],
                                    device=str(self.device), keep_mode=True)
        # Its run_evaluation puts the segmenter in eval mode and back into training after.
        evaluation = evaluate(pipeline, self.val_set, [('msp', DEFAULT_TEMPERATURES['msp'])],
                              progress=False)
        (row,) = evaluation.rows
        metrics = {**row, 'pixel_accuracy': evaluation.pixel_accuracy,
                   'images': evaluation.images}
        return {key: math.nan if value is None else value for key, value in metrics.items()}

    def _step(self, images, labels, randomness):
        """Run one update of both models; return the StepResult.

        On the step whose scalars open a log row, the flow's gradient sources are probed
        first (read-only: the update that follows is the one that runs without probing).
        """
        self.optimizers.zero_grad()
        losses = compute_losses(self.model, self.flow, images, labels, outliers=self.outliers,
                                randomness=randomness, normalize=self.normalize, amp=self.amp,
                                ignore_index=IGNORE_INDEX)
        probes = None
        if self.env.is_main and self._probe_due():
            norms = flow_gradient_norms(losses, self.flow)
            probes = {f'grad_flow_{name}': value for name, value in norms.items()}
            probes['nll_samples'] = sample_nll(losses, self.flow)
        result = apply_losses(losses, flow=self.flow, optimizers=self.optimizers,
                              sync=self.sync)
        result.probes = probes
        return result

    def _probe_due(self):
        """Return whether the step about to run is the last one of a log row."""
        return (self.iteration + 1) % self.config['log']['interval'] == 0

    # -- resume -----------------------------------------------------------------------------

    def resume_payload(self):
        """Return the dict that --resume restores completely."""
        return {
            'iteration': self.iteration,
            'config': self.config,
            'segmenter': state.cpu_state_dict(self.segmenter),
            'flow': state.cpu_state_dict(self.flow) if self.flow is not None else None,
            'optimizer': self.optimizers.segmenter.state_dict(),
            'flow_optimizer': (self.optimizers.flow.state_dict()
                               if self.optimizers.flow is not None else None),
            'scheduler': self.scheduler.state_dict(),
            'scaler': (self.optimizers.scaler.state_dict()
                       if self.optimizers.scaler is not None else None),
            # The data order and every draw of a step are functions of (seed, iteration)
            # (train.loader, train.step): config['seed'] and 'iteration' are their state.
            'rng': state.rng_states(),
            'counters': {'skipped_steps': self.skipped_steps,
                         'consecutive_skips': self.consecutive_skips},
        }

    def load_resume(self, path):
        """Restore models, optimizers, scheduler, scaler, RNGs and counters from `path`."""
        payload = state.load_resume(path)
        # Keys added since the file was written take their defaults (e.g. task: dense).
        saved = merge(DEFAULTS, payload['config'], where=os.fspath(path))
        changed = [k for k in config_differences(saved, self.config)
                   if not k.startswith(RESUMABLE_CHANGES)]
        if changed:
            raise ConfigError(f'{path}: the config differs from the one this run started with '
                              f'in {", ".join(changed)}; resume with the same config '
                              '(only log.*, validation.*, data.num_workers, device and '
                              'export.* may change)')
        self.segmenter.load_state_dict(payload['segmenter'])
        if self.flow is not None:
            self.flow.load_state_dict(payload['flow'])
            self.optimizers.flow.load_state_dict(payload['flow_optimizer'])
        self.optimizers.segmenter.load_state_dict(payload['optimizer'])
        self.scheduler.load_state_dict(payload['scheduler'])
        if self.optimizers.scaler is not None and payload['scaler'] is not None:
            self.optimizers.scaler.load_state_dict(payload['scaler'])
        state.restore_rng_states(payload['rng'])
        self.iteration = int(payload['iteration'])
        self.skipped_steps = int(payload['counters']['skipped_steps'])
        self.consecutive_skips = int(payload['counters']['consecutive_skips'])

    # -- files (rank 0) ---------------------------------------------------------------------

    def _path(self, *parts):
        return os.path.join(self.out_dir, *parts)

    def save_resume(self):
        """Write resume.pt (rank 0)."""
        if self.env.is_main:
            state.save_resume(self._path(state.RESUME_FILE), self.resume_payload())

    def export(self):
        """Write model.pt in the node's checkpoint format (rank 0); return its path."""
        path = self._path(state.MODEL_FILE)
        if self.env.is_main:
            state.export_checkpoint(path, config=self.config, segmenter=self.segmenter,
                                    flow=self.flow, class_names=self.class_names,
                                    palette=self.palette, iteration=self.iteration,
                                    mean=self.mean, std=self.std, command=self.command)
        return path

    def _write_config(self):
        os.makedirs(self.out_dir, exist_ok=True)
        with atomic_open(self._path('config.yaml'), 'w', encoding='utf-8') as stream:
            yaml.safe_dump(self.config, stream, sort_keys=False)

    def save_samples(self):
        """Write a PNG grid of RealNVP samples at the largest outlier size (rank 0)."""
        if not self.env.is_main or self.flow is None:
            return
        crop = self.config['data']['crop_size']
        size = fit_size(max(self.outliers.sizes), crop, crop, divisor=self.flow.size_divisor)
        save_flow_samples(self.flow, self._path('samples', f'iter_{self.iteration:07d}.png'),
                          size=size, seed=self.config['seed'], device=self.device)

    def validate(self):
        """Return validation metrics (rank 0; other ranks wait) or None without a val set."""
        metrics = None
        if self.env.is_main and self.val_set is not None:
            metrics = self._validation_metrics()
        if self.env.distributed:
            self.sync.barrier()
        return metrics

    # -- training ---------------------------------------------------------------------------

    def _count(self, result):
        if result.overflow:
            self._count_overflow()
            return
        if not result.skipped:
            self.consecutive_skips = 0
            return
        self.skipped_steps += 1
        self.consecutive_skips += 1
        if self.env.is_main:
            tqdm.write(f'iteration {self.iteration}: non-finite loss (Lseg {result.loss:.4g}, '
                       f'CE {result.ce:.4g}, KL {result.kl:.4g}, NLL {result.nll:.4g}); step '
                       f'skipped ({self.skipped_steps} so far)', file=sys.stderr)
        if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise TrainingError(
                f'stopped at iteration {self.iteration}: {self.consecutive_skips} consecutive '
                'steps had NaN or infinite losses (every one skipped). Lower the learning '
                'rates or lambda, check the data for NaN, or train with amp: off.')

    def _count_overflow(self):
        """Count a step the fp16 GradScaler skipped (finite losses, inf/NaN gradients).

        It is a skipped step like a NaN loss, but it does not count towards
        MAX_CONSECUTIVE_SKIPS: GradScaler starts at a scale of 2**16 and finds its level by
        skipping steps, often several in a row at the start of an fp16 run, and it keeps
        halving the scale for as long as gradients overflow.
        """
        self.skipped_steps += 1
        self.consecutive_skips = 0
        if self.env.is_main:
            tqdm.write(f'iteration {self.iteration}: fp16 gradient overflow (inf/NaN after '
                       'unscaling); neither model stepped, loss scale lowered to '
                       f'{self.optimizers.scaler.get_scale():.4g} ({self.skipped_steps} '
                       'skipped so far)', file=sys.stderr)

    def _learning_rates(self):
        groups = self.optimizers.segmenter.param_groups
        rates = {name: group['lr'] for name, group in zip(self.lr_names, groups)}
        rates['lr_flow'] = math.nan
        if self.optimizers.flow is not None:
            rates['lr_flow'] = self.optimizers.flow.param_groups[0]['lr']
        return rates

    def _due(self, interval):
        return interval > 0 and self.iteration % interval == 0

    def _log_validation(self, logger, metrics):
        if logger is not None and metrics is not None:
            logger.log(self.iteration, {f'val_{key}': metrics[key] for key in
                                        ('miou', 'pixel_accuracy', 'ap', 'fpr95', 'auroc')})
            tqdm.write(f'iteration {self.iteration}: validation mIoU {metrics["miou"]:.4f}, '
                       f'AP {metrics["ap"]:.4f}, FPR95 {metrics["fpr95"]:.4f} '
                       f'({metrics["images"]} images)', file=sys.stderr)

    def run(self, *, stop_after=None):
        """Train up to the config's iteration count, or until `stop_after`; return self.

        Stopping early writes resume.pt; reaching the end writes resume.pt and model.pt.
        """
        config = self.config
        end = config['optim']['iterations']
        stop = min(end, stop_after) if stop_after else end
        main = self.env.is_main
        logger = None
        if main:
            self._write_config()
            logger = ScalarLogger(self.out_dir, self.scalar_columns,
                                  tensorboard=config['log']['tensorboard'])
        loader = self._training_loader(stop)
        bar = tqdm(total=end, initial=self.iteration, disable=not main, dynamic_ncols=True,
                   desc='train', unit='it')
        window = _Window()
        try:
            for index, batch in enumerate(loader):
                if index == 1:
                    self._restart_peak_memory()
                self._train_one(batch, window)
                bar.update(1)
                self._after_step(logger, window, bar)
                if self._due(config['log']['interval']):
                    window = _Window()
            if self.iteration >= end:
                self._finish(logger)
            elif self.iteration > 0:
                self.save_resume()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        return self

    def _restart_peak_memory(self):
        """For --report-memory, start the peak afresh once the first (warm-up) step is done.

        The first step is not the steady state: cuDNN's benchmark mode tries algorithms with
        workspaces of their own, and Adam allocates its state. Counting them would overstate
        the training footprint, e.g. what gradient checkpointing saves.
        """
        if self.report_memory and reset_peak_memory(self.device):
            self.peak_memory_since = self.iteration

    def _train_one(self, batch, window):
        images, labels = to_device(batch, self.device)
        randomness = step_randomness(self.config['seed'], self.iteration, rank=self.env.rank,
                                     device=self.device)
        result = self._step(images, labels, randomness)
        self.iteration += 1
        # The schedule follows iterations, skipped ones included (NaN loss or fp16 overflow
        # alike: their batch was consumed), so the learning rate at iteration i never
        # depends on how many steps were skipped before it.
        self.scheduler.step()
        window.add(result)
        self._count(result)

    def _after_step(self, logger, window, bar):
        log = self.config['log']
        means = window.means()
        if self.env.is_main:
            bar.set_postfix({
                'CE': f'{means.get("ce", math.nan):.3f}',
                'KL': f'{means.get("kl", math.nan):.3f}',
                'NLL': f'{means.get("nll", math.nan):.3f}',
                'lr': f'{self._learning_rates()[self.progress_lr]:.2e}',
                'mem': f'{current_memory_mb(self.device):.0f}MB'}, refresh=False)
        if logger is not None and self._due(log['interval']):
            logger.log(self.iteration, {
                **{key: means.get(key, math.nan) for key in ('loss', 'ce', 'kl', 'nll',
                                                             'size')},
                **self._learning_rates(), 'it_per_s': window.rate(),
                'memory_mb': peak_memory_mb(self.device), 'skipped_steps': self.skipped_steps,
                'pasted_entropy': means.get('entropy', math.nan),
                **{key: window.probes.get(key, math.nan) for key in PROBE_COLUMNS
                   if key != 'pasted_entropy'}})
        if self._due(log['sample_interval']):
            self.save_samples()
        if (self._due(self.config['validation']['interval'])
                and self.iteration < self.config['optim']['iterations']):
            self._log_validation(logger, self.validate())
        if self._due(log['checkpoint_interval']):
            self.save_resume()

    def _finish(self, logger):
        if self.env.distributed:
            # BN running statistics are per process; keep rank 0's, as DDP does at forward.
            self.sync.broadcast_module(self.segmenter)
        self._log_validation(logger, self.validate())
        self.save_resume()
        self.save_samples()
        self.export()


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog='python -m train.joint',
        description='Jointly train LDN-121 and RealNVP synthetic outliers (Algorithm 2), or '
                    'VGG-13 and RealNVP on CIFAR-10 with task: classify (Algorithm 1).')
    parser.add_argument('--config', required=True, help='YAML training config')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE',
                        help='override a config key, e.g. --set optim.iterations=100')
    parser.add_argument('--out', help='output directory (default: runs/<config name>)')
    parser.add_argument('--resume', action='store_true',
                        help='continue exactly from OUT/resume.pt')
    parser.add_argument('--report-memory', action='store_true',
                        help='print the peak memory when done (after a warm-up step on CUDA)')
    parser.add_argument('--stop-after', type=int, metavar='ITERATION',
                        help='stop (writing resume.pt) once this iteration is reached')
    return parser, parser.parse_args(argv)


def trainer_class(config):
    """Return the trainer of the config's task: JointTrainer or train.classify's."""
    if config['task'] == 'classify':
        # Imported here: train.classify builds on this module.
        from train.classify import ClassifyTrainer

        return ClassifyTrainer
    return JointTrainer


def default_out_dir(config_path):
    """Return runs/<config file name without extension>."""
    return os.path.join('runs', os.path.splitext(os.path.basename(config_path))[0])


def command_line(argv):
    """Return the command that was run, as a user would type it again."""
    return ' '.join(['python -m train.joint', *map(shlex.quote, argv)])


def main(argv=None):
    """Run training from the command line; return the exit status."""
    parser, args = parse_args(argv)
    try:
        config = load_config(args.config, overrides=args.overrides)
        out_dir = args.out or default_out_dir(args.config)
        env = init_distributed(config['device'])
    except (ConfigError, ValueError) as error:
        parser.error(str(error))
    try:
        try:
            # Dataset readers report a missing root or an empty split as OSError/ValueError.
            trainer = trainer_class(config)(config, out_dir=out_dir, env=env)
        except (OSError, ValueError) as error:
            raise TrainingError(f'cannot set up training: {error}') from error
        trainer.command = command_line(sys.argv[1:] if argv is None else argv)
        trainer.report_memory = args.report_memory
        if args.resume:
            trainer.load_resume(os.path.join(out_dir, state.RESUME_FILE))
        trainer.run(stop_after=args.stop_after)
    except (ConfigError, CheckpointError, TrainingError) as error:
        print(f'train.joint: error: {error}', file=sys.stderr)
        return 1
    finally:
        shutdown(env)
    if env.is_main:
        if args.report_memory:
            print(peak_memory_report(env.device, since_iteration=trainer.peak_memory_since))
        print(f'iteration {trainer.iteration}/{config["optim"]["iterations"]}; '
              f'skipped steps: {trainer.skipped_steps}; outputs in {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
