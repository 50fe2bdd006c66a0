"""Process-group set-up from torchrun's environment, and the collectives a step needs."""

import dataclasses
import os
import warnings

import torch
import torch.distributed as dist

from dense_ood_ros.devices import check_gpu, cuda_device_count, resolve_device

GPU_HINT = 'check CUDA_VISIBLE_DEVICES and --nproc_per_node'


@dataclasses.dataclass
class DistEnv:
    """Where this process trains: its rank among `world_size` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def distributed(self):
        """Return whether a process group is in use."""
        return self.world_size > 1

    @property
    def is_main(self):
        """Return whether this process writes files (rank 0 only)."""
        return self.rank == 0


def choose_device(requested, *, local_rank=0, world_size=1, cuda_count=0):
    """Return (device, warnings) for the config's device on this process; pure.

    `requested` is 'auto', 'cpu', 'cuda' or 'cuda:N'; `cuda_count` is how many GPUs this
    process sees. 'auto' takes CUDA when there is one and otherwise warns that training on
    a CPU is slow. Under torchrun (world_size > 1) every process uses GPU LOCAL_RANK, also
    when 'cuda:N' is given: one GPU index in a shared config would put every rank on the
    same GPU, which NCCL refuses; a warning says so when N is not LOCAL_RANK. A single
    process uses GPU N as asked. Raises ValueError for a GPU this process does not have.
    """
    if requested == 'auto' and cuda_count == 0:
        return torch.device('cpu'), ['CUDA is not available: training on the CPU (slow; '
                                     'fine for the demo config and tests)']
    # Under torchrun the index is overridden below, so only the form and CUDA are checked.
    device = resolve_device('cuda' if requested == 'auto' else requested,
                            cuda_count=cuda_count, check_index=world_size == 1, hint=GPU_HINT)
    if device.type != 'cuda':
        return device, []
    if world_size == 1:
        return torch.device('cuda', device.index or 0), []
    check_gpu(local_rank, cuda_count,
              f'LOCAL_RANK {local_rank} (torchrun puts each process on GPU LOCAL_RANK)',
              hint=GPU_HINT)
    warned = []
    if device.index is not None and device.index != local_rank:
        warned.append(f'device {requested!r} ignored under torchrun: process {local_rank} '
                      f'of this machine trains on cuda:{local_rank}')
    return torch.device('cuda', local_rank), warned


def select_device(requested, *, local_rank=0, world_size=1):
    """Return this process's device for the config's device (choose_device), warning as it says."""
    device, warned = choose_device(requested, local_rank=local_rank, world_size=world_size,
                                   cuda_count=cuda_device_count())
    for message in warned:
        warnings.warn(message, stacklevel=2)
    return device


def init_distributed(requested_device):
    """Return the DistEnv of this process, joining torchrun's process group if there is one.

    RANK / WORLD_SIZE / LOCAL_RANK come from torchrun; without them this is one process.
    Each process trains on GPU LOCAL_RANK (choose_device). The backend is nccl on CUDA and
    gloo on the CPU.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    device = select_device(requested_device, local_rank=local_rank, world_size=world_size)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo',
                                rank=rank, world_size=world_size)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown(env):
    """Leave the process group, if this process joined one."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


class ProcessGroupSync:
    """Cross-process agreement for train.step: finite losses and averaged flow gradients."""

    def __init__(self, env):
        self.env = env

    def all_true(self, flag):
        """Return whether `flag` holds on every process (so all skip a step together)."""
        value = torch.tensor([1.0 if flag else 0.0], device=self.env.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0.5)

    def average_gradients(self, parameters):
        """Average gradients over processes in one flat all-reduce (the flow is not DDP).

        The flow runs twice per step (sample and NLL), which DDP's reducer does not allow;
        its few parameters are cheap to reduce by hand.
        """
        parameters = [p for p in parameters if p.requires_grad]
        for param in parameters:
            # Every process must contribute the same flat layout, unused parameters included.
            if param.grad is None:
                param.grad = torch.zeros_like(param)
        grads = [p.grad for p in parameters]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.env.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def broadcast_module(self, module):
        """Copy rank 0's parameters and buffers into `module` on every process."""
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)

    def barrier(self):
        """Wait for every process."""
        dist.barrier()
