"""Which GPU each process trains on (train.distributed), and resuming with fewer GPUs."""

import os
import socket
import warnings

import pytest
import torch
import torch.multiprocessing as mp

from train import state
from train.distributed import choose_device, init_distributed, shutdown

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two GPUs')


def _choose(requested, *, local_rank=0, world_size=1, cuda_count=0):
    device, warned = choose_device(requested, local_rank=local_rank, world_size=world_size,
                                   cuda_count=cuda_count)
    return str(device), warned


def test_auto_without_cuda_trains_on_the_cpu_and_says_it_is_slow():
    device, warned = _choose('auto')
    assert device == 'cpu' and len(warned) == 1 and 'slow' in warned[0]


def test_cpu_is_the_cpu_even_under_torchrun_on_a_gpu_machine():
    assert _choose('cpu', local_rank=1, world_size=2, cuda_count=2) == ('cpu', [])


@pytest.mark.parametrize('requested', ['auto', 'cuda', 'cuda:0', 'cuda:1'])
def test_under_torchrun_every_rank_takes_its_local_ranks_gpu(requested):
    for local_rank in range(4):
        device, warned = _choose(requested, local_rank=local_rank, world_size=8,
                                 cuda_count=4)
        assert device == f'cuda:{local_rank}'
        named = requested.startswith('cuda:') and requested != f'cuda:{local_rank}'
        # Only an explicit index that torchrun overrides is worth a warning.
        assert len(warned) == int(named)
        if named:
            assert requested in warned[0] and f'cuda:{local_rank}' in warned[0]


def test_a_single_process_uses_the_gpu_it_names():
    assert _choose('cuda:1', cuda_count=2) == ('cuda:1', [])
    assert _choose('cuda', cuda_count=2) == ('cuda:0', [])
    assert _choose('auto', cuda_count=2) == ('cuda:0', [])


@pytest.mark.parametrize('requested, local_rank, world_size, match', [
    ('cuda', 0, 1, 'CUDA is not available'),
    ('cuda:2', 0, 1, 'needs GPU 2 but this process sees 2'),
    ('cuda', 2, 4, 'LOCAL_RANK 2 .* needs GPU 2 but this process sees 2'),
])
def test_a_gpu_this_process_does_not_have_is_a_clear_error(requested, local_rank,
                                                           world_size, match):
    cuda_count = 0 if 'not available' in match else 2
    with pytest.raises(ValueError, match=match):
        choose_device(requested, local_rank=local_rank, world_size=world_size,
                      cuda_count=cuda_count)


def test_resume_restores_the_cuda_rng_states_it_can_and_names_the_others():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    saved = torch.cuda.get_rng_state_all() if count else []
    # Two more GPUs than this machine has (all of them, on a machine without CUDA).
    extra = [torch.zeros(16, dtype=torch.uint8)] * 2
    with pytest.warns(UserWarning, match=f'GPU {count}, {count + 1} were not restored'):
        missing = state.restore_cuda_rng_states(saved + extra)
    assert missing == [count, count + 1]


def test_resume_with_as_many_gpus_restores_quietly():
    saved = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert state.restore_cuda_rng_states(saved) == []


@needs_cuda
def test_the_restored_cuda_state_replays_the_same_draws():
    saved = state.rng_states()
    first = torch.rand(4, device='cuda')
    torch.cuda.manual_seed_all(1234)
    state.restore_rng_states(saved)
    assert torch.equal(torch.rand(4, device='cuda'), first)


@needs_cuda
@pytest.mark.skipif('WORLD_SIZE' in os.environ, reason='runs as one process, not under torchrun')
def test_a_single_process_on_cuda_gets_gpu_zero_and_no_process_group():
    env = init_distributed('cuda')
    assert env.device == torch.device('cuda', 0) and not env.distributed


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _nccl_worker(rank, world_size, port, result_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    # One index for all ranks, as a shared config would give them: NCCL needs one GPU each.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        env = init_distributed('cuda:0')
    try:
        value = torch.full((1,), float(rank + 1), device=env.device)
        torch.distributed.all_reduce(value)
        torch.save({'device': str(env.device), 'sum': float(value),
                    'warned': [str(w.message) for w in caught]},
                   os.path.join(result_dir, f'rank{rank}.pt'))
    finally:
        shutdown(env)


@needs_two_gpus
def test_two_ranks_asking_for_one_gpu_each_get_their_own_and_nccl_works(tmp_path):
    mp.spawn(_nccl_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(2)]
    assert [r['device'] for r in results] == ['cuda:0', 'cuda:1']
    assert [r['sum'] for r in results] == [3.0, 3.0]
    assert not any('ignored' in m for m in results[0]['warned'])
    assert any("'cuda:0' ignored under torchrun" in m for m in results[1]['warned'])
