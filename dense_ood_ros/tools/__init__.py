"""Command-line tools around the pipeline (image files, datasets, bags)."""
