"""The lab's CoNNear-style encoder/decoder (SPEC.md, "The CNN surrogate"), built with tf_keras.

Input (batch, window, 1) → Reshape (window, 1, 1) → `n_layers` × [Conv2D(filters, (kernel, 1),
strides (stride, 1), "same") → tanh] → `n_layers` × [Conv2DTranspose(...) → sigmoid,
concatenated with the pre-activation output of the mirrored encoder layer]; the last
transpose convolution has one filter and no activation → Reshape (window, 1) →
Cropping1D((context, context)). The defaults give the lab's model: 1,511,489 parameters,
a functional `model_3` whose single layer `model_2` is the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hhbench.errors import HHBenchError


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """Sizes of the encoder/decoder. `window` samples in, `window - 2*context` out."""

    n_layers: int = 9
    filters: int = 64
    kernel: int = 16
    stride: int = 2
    context: int = 256
    window: int = 2560

    def __post_init__(self):
        for name in ("n_layers", "filters", "kernel", "stride", "window"):
            if int(getattr(self, name)) < 1:
                raise HHBenchError(f"architecture: {name} must be >= 1")
        if self.context < 0 or 2 * self.context >= self.window:
            raise HHBenchError("architecture: context must be >= 0 and leave an output window")
        if self.window % (self.stride ** self.n_layers):
            raise HHBenchError(f"architecture: window {self.window} must be divisible by "
                               f"stride**n_layers = {self.stride ** self.n_layers}")

    @property
    def output_samples(self) -> int:
        return self.window - 2 * self.context

    def as_dict(self) -> dict:
        return asdict(self)


def receptive_field_samples(n_layers: int, kernel: int, stride: int) -> int:
    """Receptive field of a stack of strided convolutions (Drakopoulos et al. 2021, eq. 4):
    r = (k − 1)·(sᴺ − 1)/(s − 1) + 1 samples (r = N·(k − 1) + 1 when s = 1)."""
    if stride == 1:
        return n_layers * (kernel - 1) + 1
    return (kernel - 1) * (stride ** n_layers - 1) // (stride - 1) + 1


def build_model(arch: Architecture = Architecture(), *, keras=None):
    """Build the (untrained) model for `arch` with tf_keras (the Keras 2 API).

    `keras` may name another module with the same API, such as Keras 3 (whose JAX or
    PyTorch backend trains the network on machines without TensorFlow); the layers, their
    names and the order of the weights are the same.
    """
    if keras is None:
        from hhbench.cnn import import_tensorflow
        import_tensorflow()
        import tf_keras as keras
    layers = keras.layers

    inp = keras.Input(shape=(arch.window, 1), name="input_2")
    x = layers.Reshape((arch.window, 1, 1), name="reshape_in")(inp)
    conv = dict(kernel_size=(arch.kernel, 1), strides=(arch.stride, 1), padding="same")
    skips = []
    for k in range(arch.n_layers):
        x = layers.Conv2D(arch.filters, **conv, name=f"enc_conv{k + 1}")(x)
        skips.append(x)  # pre-activation output, mirrored into the decoder
        x = layers.Activation("tanh", name=f"enc_tanh{k + 1}")(x)
    for k in range(arch.n_layers - 1):
        x = layers.Conv2DTranspose(arch.filters, **conv, name=f"dec_conv{k + 1}")(x)
        x = layers.Activation("sigmoid", name=f"dec_sigm{k + 1}")(x)
        x = layers.Concatenate(axis=-1, name=f"dec_cat{k + 1}")([x, skips[-2 - k]])
    x = layers.Conv2DTranspose(1, **conv, name=f"dec_conv{arch.n_layers}")(x)
    x = layers.Reshape((arch.window, 1), name="reshape_out")(x)
    out = layers.Cropping1D((arch.context, arch.context), name="crop_context")(x)
    inner = keras.Model(inp, out, name="model_2")
    outer_in = keras.Input(shape=(arch.window, 1), name="input_3")
    return keras.Model(outer_in, inner(outer_in), name="model_3")
