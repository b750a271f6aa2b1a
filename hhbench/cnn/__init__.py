"""The CNN surrogate: architecture, Keras file formats, runner, training (TensorFlow inside)."""
