"""Starting a run from a checkpoint's weights instead of a random initialisation.

Fine-tuning: `model.init_weights` names a checkpoint in the node's format (a run's
model.pt); its network, and its flow when the run trains one, are loaded strictly before the
optimizers are built. Optimizer state, schedule and iteration count start anew, unlike
`--resume`, which continues one run exactly.
"""

from dense_ood_ros.checkpoint import CheckpointError, load_checkpoint, load_weights_strictly


def load_initial_weights(path, *, network, flow, class_names, spec):
    """Load the network (and flow) weights of the checkpoint at `path`; return the Checkpoint.

    `spec` is the run's train.build.ExportSpec. Raises CheckpointError naming `path` and what
    differs when the checkpoint was made for another architecture, label space or flow.
    """
    ckpt = load_checkpoint(path, expected_arch=spec.arch)
    if list(ckpt.class_names) != list(class_names):
        raise CheckpointError(path, f'model.init_weights: its classes {ckpt.class_names} are '
                              f"not the training set's {list(class_names)}")
    load_weights_strictly(network, ckpt.state_dict, path,
                          f'model.init_weights: the network does not fit {spec.arch}')
    if flow is None:
        return ckpt
    if ckpt.flow_state_dict is None:
        raise CheckpointError(path, 'model.init_weights: the checkpoint has no flow, and this '
                              'run trains one (outliers.mode rnvp)')
    if dict(ckpt.flow_config) != dict(spec.flow_config):
        raise CheckpointError(path, f'model.init_weights: its flow is {ckpt.flow_config}, '
                              f"this run's flow section asks for {spec.flow_config}")
    load_weights_strictly(flow, ckpt.flow_state_dict, path,
                          'model.init_weights: the flow does not fit')
    return ckpt
