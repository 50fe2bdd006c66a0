"""Shared fixtures: small real checkpoints built with the code the node runs."""

import os

import pytest
import torch

from dense_ood_ros.checkpoint import Checkpoint, save_checkpoint
from dense_ood_ros.models import ldn121

# Isolate this run's DDS traffic: its own domain, discovery on this machine only.
os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'

TINY_CLASSES = ['road', 'car', 'sky']
TINY_PALETTE = [[128, 64, 128], [0, 0, 142], [70, 130, 180]]


def make_tiny_checkpoint(*, seed=0, input_short_edge=64, threshold=0.5):
    """Return a Checkpoint of a randomly initialised 3-class LDN-121."""
    torch.manual_seed(seed)
    model = ldn121(len(TINY_CLASSES))
    return Checkpoint(arch='ldn121', num_classes=len(TINY_CLASSES),
                      state_dict=model.state_dict(), class_names=list(TINY_CLASSES),
                      palette=[list(c) for c in TINY_PALETTE],
                      input_short_edge=input_short_edge, threshold=threshold)


@pytest.fixture(scope='session')
def tiny_checkpoint_path(tmp_path_factory):
    """Path of a tiny LDN-121 checkpoint file, written once per test session."""
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pt'
    save_checkpoint(path, make_tiny_checkpoint())
    return path
