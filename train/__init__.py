"""Offline training and evaluation, run from the repository root."""
