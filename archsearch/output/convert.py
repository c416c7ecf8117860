"""ONNX and LiteRT (TFLite) files from an exported SavedModel's `serve` signature, and their runtimes.

The files are converted from the SavedModel as a user would convert it:
`tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serve"])`
with its default (builtin) ops, and tf2onnx's SavedModel loader, which
`python -m tf2onnx.convert --saved-model path --signature_def serve` runs.
Keras 3.15's own `model.export(format="onnx")` traces the model without
`training=False` (after Keras's preprocessing layers, batch normalization
then runs in training mode: probabilities 0.15 off `predict`), and its
`format="litert"` asks for TensorFlow's select ops, which a plain LiteRT
runtime lacks; so neither is used. Each file is then run with its own
runtime, not TensorFlow: onnxruntime and the LiteRT interpreter
(`ai_edge_litert`, a dependency: TensorFlow's `tf.lite.Interpreter` is deprecated).
"""

import numpy as np

SIGNATURE = "serve"  # the SavedModel signature every file is converted from
REPRESENTATIVE_IMAGES = 256  # training images that calibrate int8 quantization


def write_onnx(saved_model, path):
    """Writes the `serve` signature of a SavedModel as an ONNX file.

    Args:
        saved_model: the SavedModel's folder.
        path: the `.onnx` file to write.

    Example:

    >>> write_onnx("best/saved_model", "best/model.onnx")  # doctest: +SKIP
    """
    from tf2onnx import convert, tf_loader

    graph_def, inputs, outputs, renamed = tf_loader.from_saved_model(
        str(saved_model), None, None, tag="serve", signatures=[SIGNATURE], return_tensors_to_rename=True
    )
    # The signature's own names (`image`, `probabilities`, ...) for the graph's, as the command line does.
    convert.from_graph_def(
        graph_def, input_names=inputs, output_names=outputs, tensors_to_rename=renamed, output_path=str(path)
    )


def write_tflite(saved_model, path, representative=None):
    """Writes the `serve` signature of a SavedModel as a LiteRT (TFLite) file, builtin ops only.

    Args:
        saved_model: the SavedModel's folder.
        path: the `.tflite` file to write.
        representative: `None` for a float32 model; or uint8 images as
            `serve` takes them, for full-integer post-training quantization
            (int8 weights and activations, uint8 images in) calibrated on them.

    Example:

    >>> write_tflite("best/saved_model", "best/model_int8.tflite", stored.x_train)  # doctest: +SKIP
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    if representative is not None:
        images = representative[:REPRESENTATIVE_IMAGES]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({"image": image[None]} for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    path.write_bytes(converter.convert())


def onnx_predictor(path):
    """Returns `predict(images) -> probabilities` of an ONNX file, run by onnxruntime.

    Args:
        path: a file `write_onnx()` wrote.

    Returns:
        A function of a uint8 image batch, as `serve` takes it.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run(["probabilities"], {"image": np.asarray(images)})[0]


def tflite_predictor(path):
    """Returns `predict(images) -> probabilities` of a LiteRT file, run by the LiteRT interpreter.

    Args:
        path: a file `write_tflite()` wrote.

    Returns:
        A function of a uint8 image batch, as `serve` takes it.
    """
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(SIGNATURE)
    return lambda images: runner(image=np.asarray(images))["probabilities"]
