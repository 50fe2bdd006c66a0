"""Readers of the anomaly test sets the runtime tools replay (Fishyscapes L&F, Lost & Found).

They live in the installed package, not in ``train/``, because ``dataset_to_bag`` runs on
machines that have only the package; ``train.data`` imports them from here. ``registry``
names them, with the split and protocol each is evaluated with; ``train.data.registry``
extends it with the training readers.
"""
