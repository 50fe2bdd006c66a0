"""Checkpoint format: round trip, atomic writes, and clear refusals naming the file."""

import os
import pickle

import pytest
import torch

from conftest import make_tiny_checkpoint
from dense_ood_ros.checkpoint import (
    CheckpointError, build_model_from_checkpoint, load_checkpoint, save_checkpoint)
from dense_ood_ros.models import RealNVP


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    ckpt = make_tiny_checkpoint()
    flow = RealNVP(num_scales=2, mid_channels=8, num_blocks=1)
    ckpt.flow_state_dict = flow.state_dict()
    ckpt.flow_config = {'in_channels': 3, 'num_scales': 2, 'mid_channels': 8, 'num_blocks': 1}
    ckpt.train = {'iteration': 7, 'git_commit': 'abc123', 'config': {'lr': 1e-4}}
    path = tmp_path / 'model.pt'
    save_checkpoint(path, ckpt)

    # The file itself is readable by a plain weights-only load: no custom classes inside.
    raw = torch.load(path, weights_only=True)
    assert raw['format'] == 'dense_ood_ros.checkpoint'

    loaded = load_checkpoint(path, expected_arch='ldn121', expected_num_classes=3)
    assert loaded.class_names == ckpt.class_names
    assert loaded.palette == ckpt.palette
    assert loaded.temperatures == {'msp': 10.0, 'entropy': 2.0}
    assert loaded.train['iteration'] == 7
    model = build_model_from_checkpoint(loaded, path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt.state_dict[name]), name
    for name, tensor in loaded.flow_state_dict.items():
        assert torch.equal(tensor, ckpt.flow_state_dict[name]), name


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / 'model.pt'
    save_checkpoint(path, make_tiny_checkpoint(seed=0))
    before = path.read_bytes()
    broken = make_tiny_checkpoint(seed=1)
    broken.train = {'callback': lambda: None}  # torch.save cannot pickle a lambda
    # pickle's own error for a lambda (AttributeError for one defined in a function).
    with pytest.raises((pickle.PicklingError, AttributeError), match="Can't pickle"):
        save_checkpoint(path, broken)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['model.pt']


def test_missing_file_is_named(tmp_path):
    path = tmp_path / 'nope.pt'
    with pytest.raises(CheckpointError, match='nope.pt.*no such file'):
        load_checkpoint(path)


def test_foreign_files_are_refused_by_name(tmp_path):
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'\x00not a torch file at all')
    with pytest.raises(CheckpointError, match='garbage.pt'):
        load_checkpoint(garbage)
    plain = tmp_path / 'plain.pt'
    torch.save({'state_dict': {}}, plain)
    with pytest.raises(CheckpointError, match='plain.pt.*not a dense_ood_ros.checkpoint'):
        load_checkpoint(plain)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_a_pickle_that_would_run_code_does_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pt'
    payload = make_tiny_checkpoint().to_dict()
    payload['train'] = {'hook': _RunsCode(str(marker))}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match='evil.pt.*refused'):
        load_checkpoint(path)
    assert not marker.exists()


def test_class_count_and_architecture_mismatches_are_named(tmp_path):
    path = tmp_path / 'model.pt'
    save_checkpoint(path, make_tiny_checkpoint())
    with pytest.raises(CheckpointError, match='model.pt.*3 classes, expected 19'):
        load_checkpoint(path, expected_num_classes=19)
    with pytest.raises(CheckpointError, match="model.pt.*architecture 'ldn121'"):
        load_checkpoint(path, expected_arch='swiftnet')

    # Metadata that claims more classes than the weights have.
    lying = make_tiny_checkpoint()
    lying.num_classes = 4
    lying.class_names = lying.class_names + ['bus']
    lying.palette = lying.palette + [[0, 60, 100]]
    save_checkpoint(path, lying)
    with pytest.raises(CheckpointError, match='model.pt.*do not fit ldn121 with 4 classes'):
        build_model_from_checkpoint(load_checkpoint(path), path)


def test_inconsistent_metadata_is_refused():
    ckpt = make_tiny_checkpoint()
    ckpt.palette = ckpt.palette[:2]
    with pytest.raises(CheckpointError, match='palette'):
        ckpt.validate()
    ckpt = make_tiny_checkpoint()
    ckpt.temperatures = {'msp': 10.0}
    with pytest.raises(CheckpointError, match='temperatures'):
        ckpt.validate()
