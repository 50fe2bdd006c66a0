"""The training loop both tasks share: steps, NaN guard, logging, resume, export, DDP.

A Trainer takes the parts train.build made from a config (it never reads the config
itself) and runs them: `run()` trains from `iteration` to the run's iteration count (or
`stop_after`), writing files on rank 0 only; `load_resume()` restores a resume file
completely.
"""

import dataclasses
import math
import os
import sys
import time

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dense_ood_ros.atomic_file import atomic_open
from train import state
from train.distributed import ProcessGroupSync
from train.loader import to_device, training_loader
from train.logging_utils import (
    ScalarLogger, current_memory_mb, peak_memory_mb, reset_peak_memory, save_flow_samples)
from train.paste import fit_size
from train.step import LocalSync, step_randomness

# A few NaN steps can be noise (an fp16 overflow, one odd batch); this many in a row is not.
MAX_CONSECUTIVE_SKIPS = 10


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. losses keep being NaN); the message says why."""


@dataclasses.dataclass
class StepParts:
    """What a task's step works with: the (possibly DDP-wrapped) model and its company."""

    model: torch.nn.Module
    flow: torch.nn.Module
    outliers: object
    normalize: object
    amp: object
    optimizers: object
    sync: object


class _Window:
    """Running means of step scalars between two log rows."""

    def __init__(self, keys):
        self.keys = keys  # the StepResult fields the task logs
        self.sums, self.counts = {}, {}
        self.start = time.perf_counter()
        self.steps = 0
        self.probes = {}

    def add(self, result):
        self.steps += 1
        if result.probes:
            self.probes = dict(result.probes)
        for key in self.keys:
            value = getattr(result, key)
            if not result.skipped and not math.isnan(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def means(self):
        return {key: self.sums[key] / self.counts[key] for key in self.sums}

    def rate(self):
        return self.steps / max(time.perf_counter() - self.start, 1e-9)


class Trainer:
    """Everything one training process holds: the run's parts, the process, the counters."""

    def __init__(self, parts, *, out_dir, env):
        self.task = parts.task
        self.train_set, self.val_set = parts.train_set, parts.val_set
        self.class_names, self.palette = parts.class_names, parts.palette
        self.network, self.flow = parts.network, parts.flow
        self.optimizers, self.scheduler = parts.optimizers, parts.scheduler
        self.outliers, self.transform = parts.outliers, parts.transform
        self.loop, self.export_spec, self.record = parts.loop, parts.export, parts.record
        self.out_dir = os.fspath(out_dir)
        self.env = env
        self.device = env.device
        if env.distributed:
            self.sync = ProcessGroupSync(env)
            if self.flow is not None:
                self.sync.broadcast_module(self.flow)
            ids = [self.device.index] if self.device.type == 'cuda' else None
            model = DistributedDataParallel(self.network, device_ids=ids)
        else:
            self.sync = LocalSync()
            model = self.network
        self.step_parts = StepParts(model=model, flow=self.flow, outliers=self.outliers,
                                    normalize=parts.normalize, amp=parts.amp,
                                    optimizers=self.optimizers, sync=self.sync)
        # The command line that started the run (set by train.joint), recorded in model.pt.
        self.command = None
        # --report-memory (set by main): restart the peak after this run's first step, and
        # the iteration at which it was restarted (None: the peak covers the whole process).
        self.report_memory = False
        self.peak_memory_since = None
        self.iteration = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0

    def _training_loader(self, stop):
        """Return the loader of iterations [iteration, stop) of this rank."""
        loop = self.loop
        return training_loader(
            self.train_set, self.transform, batch_size=loop.batch_size, seed=loop.seed,
            start=self.iteration, end=stop, rank=self.env.rank,
            world_size=self.env.world_size, num_workers=loop.num_workers,
            pin_memory=self.device.type == 'cuda', wrapper=self.task.sample_wrapper)

    def _step(self, images, labels, randomness):
        """Run the task's update; the step that opens a log row probes the flow (rank 0)."""
        probe = self.env.is_main and self._probe_due()
        return self.task.step(self.step_parts, images, labels, randomness, probe=probe)

    def _probe_due(self):
        """Return whether the step about to run is the last one of a log row."""
        return (self.iteration + 1) % self.loop.log_interval == 0

    # -- resume -----------------------------------------------------------------------------

    def resume_payload(self):
        """Return the dict that --resume restores completely."""
        return {
            'iteration': self.iteration,
            'config': self.record.config,
            # 'segmenter' (also for VGG-13): the key resume files have always had, so that
            # runs started before the task objects existed still resume.
            'segmenter': state.cpu_state_dict(self.network),
            'flow': state.cpu_state_dict(self.flow) if self.flow is not None else None,
            'optimizer': self.optimizers.network.state_dict(),
            'flow_optimizer': (self.optimizers.flow.state_dict()
                               if self.optimizers.flow is not None else None),
            'scheduler': self.scheduler.state_dict(),
            'scaler': (self.optimizers.scaler.state_dict()
                       if self.optimizers.scaler is not None else None),
            # The data order and every draw of a step are functions of (seed, iteration)
            # (train.loader, train.step): the config's seed and 'iteration' are their state.
            'rng': state.rng_states(),
            'counters': {'skipped_steps': self.skipped_steps,
                         'consecutive_skips': self.consecutive_skips},
        }

    def load_resume(self, path):
        """Restore models, optimizers, scheduler, scaler, RNGs and counters from `path`."""
        payload = state.load_resume(path)
        self.record.check_resumable(payload['config'], path)
        self.network.load_state_dict(payload['segmenter'])
        if self.flow is not None:
            self.flow.load_state_dict(payload['flow'])
            self.optimizers.flow.load_state_dict(payload['flow_optimizer'])
        self.optimizers.network.load_state_dict(payload['optimizer'])
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
            state.export_checkpoint(path, self.export_spec, network=self.network,
                                    flow=self.flow, class_names=self.class_names,
                                    palette=self.palette, mean=self.task.mean,
                                    std=self.task.std,
                                    train={'config': self.record.config,
                                           'iteration': self.iteration,
                                           'git_commit': state.git_commit(),
                                           'command': self.command})
        return path

    def _write_config(self):
        os.makedirs(self.out_dir, exist_ok=True)
        with atomic_open(self._path('config.yaml'), 'w', encoding='utf-8') as stream:
            yaml.safe_dump(self.record.config, stream, sort_keys=False)

    def save_samples(self):
        """Write a PNG grid of RealNVP samples at the largest outlier size (rank 0)."""
        if not self.env.is_main or self.flow is None:
            return
        crop = self.loop.crop_size
        size = fit_size(max(self.outliers.sizes), crop, crop, divisor=self.flow.size_divisor)
        save_flow_samples(self.flow, self._path('samples', f'iter_{self.iteration:07d}.png'),
                          size=size, seed=self.loop.seed, device=self.device)

    def validate(self):
        """Return validation metrics (rank 0; other ranks wait) or None without a val set."""
        metrics = None
        if self.env.is_main and self.val_set is not None:
            metrics = self.task.validate(self.network, self.val_set,
                                         class_names=self.class_names, device=self.device)
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
        groups = self.optimizers.network.param_groups
        rates = {name: group['lr'] for name, group in zip(self.task.lr_names, groups)}
        rates['lr_flow'] = math.nan
        if self.optimizers.flow is not None:
            rates['lr_flow'] = self.optimizers.flow.param_groups[0]['lr']
        return rates

    def _due(self, interval):
        return interval > 0 and self.iteration % interval == 0

    def _log_validation(self, logger, metrics):
        if logger is not None and metrics is not None:
            logger.log(self.iteration, self.task.validation_row(metrics))
            tqdm.write(f'iteration {self.iteration}: {self.task.validation_message(metrics)}',
                       file=sys.stderr)

    def run(self, *, stop_after=None):
        """Train up to the config's iteration count, or until `stop_after`; return self.

        Stopping early writes resume.pt; reaching the end writes resume.pt and model.pt.
        """
        end = self.loop.iterations
        stop = min(end, stop_after) if stop_after else end
        main = self.env.is_main
        logger = None
        if main:
            self._write_config()
            logger = ScalarLogger(self.out_dir, self.task.scalar_columns,
                                  tensorboard=self.loop.tensorboard)
        loader = self._training_loader(stop)
        bar = tqdm(total=end, initial=self.iteration, disable=not main, dynamic_ncols=True,
                   desc='train', unit='it')
        window = _Window(self.task.step_scalars)
        try:
            for index, batch in enumerate(loader):
                if index == 1:
                    self._restart_peak_memory()
                self._train_one(batch, window)
                bar.update(1)
                self._after_step(logger, window, bar)
                if self._due(self.loop.log_interval):
                    window = _Window(self.task.step_scalars)
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
        randomness = step_randomness(self.loop.seed, self.iteration, rank=self.env.rank,
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
        loop = self.loop
        means = window.means()
        if self.env.is_main:
            bar.set_postfix({
                'CE': f'{means.get("ce", math.nan):.3f}',
                'KL': f'{means.get("kl", math.nan):.3f}',
                'NLL': f'{means.get("nll", math.nan):.3f}',
                'lr': f'{self._learning_rates()[self.task.progress_lr]:.2e}',
                'mem': f'{current_memory_mb(self.device):.0f}MB'}, refresh=False)
        if logger is not None and self._due(loop.log_interval):
            logger.log(self.iteration, {
                **self.task.log_row(means, window.probes), **self._learning_rates(),
                'it_per_s': window.rate(), 'memory_mb': peak_memory_mb(self.device),
                'skipped_steps': self.skipped_steps})
        if self._due(loop.sample_interval):
            self.save_samples()
        if self._due(loop.validation_interval) and self.iteration < loop.iterations:
            self._log_validation(logger, self.validate())
        if self._due(loop.checkpoint_interval):
            self.save_resume()

    def _finish(self, logger):
        if self.env.distributed:
            # BN running statistics are per process; keep rank 0's, as DDP does at forward.
            self.sync.broadcast_module(self.network)
        self._log_validation(logger, self.validate())
        self.save_resume()
        self.save_samples()
        self.export()
