"""Open a model file for the node and the tools: PyTorch for .pt, ONNX Runtime for .onnx.

Nothing here imports torch at module level: with an ``.onnx`` model the node runs on numpy,
OpenCV and ONNX Runtime alone (Jetson-style deployments have no usable PyTorch).
"""

from dense_ood_ros.onnx_pipeline import DEFAULT_PROVIDERS, is_onnx
from dense_ood_ros.pipeline_common import pipeline_values

CPU_PROVIDERS = ('CPUExecutionProvider',)


def onnx_providers(device, providers):
    """Return the ONNX Runtime providers for the node's `device` and `providers` settings."""
    if device == 'cpu':
        return CPU_PROVIDERS
    return tuple(providers) or DEFAULT_PROVIDERS


def load_pipeline(path, params, *, providers=DEFAULT_PROVIDERS):
    """Return (the model's metadata, a pipeline on it) from ROS-style parameters.

    The metadata has what a checkpoint tells the node: class_names, palette, default_score,
    temperatures, threshold. Unset parameters (0, '' or a negative threshold) take the
    model's values. Raises CheckpointError (a ValueError) naming the file when it is wrong.
    """
    values = pipeline_values(params)
    if is_onnx(path):
        from dense_ood_ros.onnx_pipeline import OnnxPipeline

        if values['half']:
            raise ValueError('half applies to .pt checkpoints; an ONNX model runs in the '
                             'precision it was exported in')
        pipeline = OnnxPipeline(
            path, providers=onnx_providers(values['device'], providers),
            input_short_edge=values['input_short_edge'], score=values['score'],
            temperature=values['temperature'], threshold=values['threshold'],
            upsample=values['upsample'])
        return pipeline.info, pipeline
    from dense_ood_ros.checkpoint import load_checkpoint
    from dense_ood_ros.pipeline import pipeline_from_params

    checkpoint = load_checkpoint(path)
    return checkpoint, pipeline_from_params(checkpoint, params, path=path)
