"""Convolutions on small images as matrix products: exact re-expressions that run faster on CPU.

With oneDNN in float32, a transposed convolution whose input has a handful of pixels (the
generator's 1x1 -> 4x4 and 4x4 -> 8x8 layers, 1024 channels wide) runs several times slower as
TensorFlow's ``Conv2DBackpropInput`` / ``Conv2DBackpropFilter`` kernels than as one matrix product
(docs/performance.md). The discriminator's
widest layer (8x8 pixels, 512 -> 1024 channels, stride 1) holds about 40% of the GAN iteration's
arithmetic; Winograd's F(2x2, 3x3) algorithm computes it with 2.25x fewer multiplications as 16
batched matrix products.

Everything here equals the TensorFlow op it replaces up to float32 summation order (tests compare
values and gradients), takes the same variables, and so leaves checkpoints and numbers unchanged.

- :func:`conv_transpose_as_matmul`: a ``'same'``-padded transposed convolution as
  ``inputs @ W`` followed by a phase-wise overlap-add; no gradient of its own (inference).
- :func:`matmul_conv_transpose`: the same forward pass with a hand-written gradient: the output
  gradient's patches (``tf.image.extract_patches``) times ``W^T`` for the input, ``inputs^T`` times
  the patches for the kernel, i.e. two matrix products instead of TensorFlow's convolution kernels.
- :func:`winograd_conv3x3`: a stride-1 3x3 convolution by Winograd's F(2x2, 3x3) algorithm, 2.25x
  fewer multiplications, forward and backward (the discriminator's 8x8, 512 -> 1024 layer holds
  about 40% of the GAN iteration's arithmetic).
- :func:`narrow_conv3x3`: a 3x3 convolution with few output channels (the generator's RGB layer)
  as a 1x3 convolution into ``3 * C_out`` row sums and a fixed 3x1 one that adds them (oneDNN
  pads output channels to 16; this wastes less of that).
- :class:`MatmulConv2DTranspose` and :class:`MatmulConv2D`: ``keras.layers.Conv2DTranspose`` and
  ``keras.layers.Conv2D`` that use them for inputs up to a size, and fall back to their parent
  otherwise (or for any configuration the re-expressions do not cover).

They are a choice for CPUs: :func:`use_matmul_convs` turns them on where TensorFlow sees no GPU
and off where it sees one, unless the caller chooses.
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from .precision import gpu_present

# Largest input (pixels) that a MatmulConv2DTranspose computes as a matrix product. In the GAN
# iteration the 1x1 and 4x4 inputs gain most and 8x8 a little; from 16x16 on TensorFlow's own
# kernels are faster.
MATMUL_CONV_TRANSPOSE_MAX_PIXELS = 64
# Largest input (pixels) that a MatmulConv2D convolves by Winograd F(2x2, 3x3) (stride 1 only; in
# the GAN that is the discriminator's 8x8 layer).
WINOGRAD_MAX_PIXELS = 32 * 32


def use_matmul_convs(choice: Optional[bool] = None) -> bool:
    """Whether the GAN's small convolutions run as the re-expressions of this module.

    ``choice`` when given (``--matmul-convs`` / ``--no-matmul-convs``); else True where TensorFlow
    sees no GPU. They were written for and measured against oneDNN's CPU kernels; on a GPU,
    cuDNN's own convolutions are the better guess until measured otherwise.
    """
    if choice is not None:
        return bool(choice)
    return not gpu_present()


def _leading_padding(kernel_size: int, stride: int) -> int:
    """TensorFlow's leading ('same') padding of a transposed convolution: ``max(k - s, 0) // 2``."""
    return max(kernel_size - stride, 0) // 2


def live_after_conv_transpose(live: int, stride: int, kernel_size: int, output_size: int) -> int:
    """Rows of a 'same' transposed convolution's output (``output_size`` rows) that can be non-zero
    when only the first ``live`` input rows can be (no bias): the last live row's last tap lands on
    ``(live - 1) * stride + k - 1 - lead``. With stride > k (the generator's block 0: 1x1 -> 4x4
    with 3 taps) the output's last rows stay exactly zero."""
    last_tap = (live - 1) * stride + kernel_size - _leading_padding(kernel_size, stride)
    return min(output_size, last_tap)


def _shift_rows_cols(tensor, rows: int, cols: int):
    """``out[:, m, n] = tensor[:, m - rows, n - cols]`` with zeros where that falls outside."""
    height, width = tensor.shape[1], tensor.shape[2]
    if rows == 0 and cols == 0:
        return tensor
    padded = tf.pad(tensor, [[0, 0], [max(rows, 0), max(-rows, 0)],
                             [max(cols, 0), max(-cols, 0)], [0, 0]])
    top, left = max(-rows, 0), max(-cols, 0)
    return padded[:, top:top + height, left:left + width, :]


def kernel_rows(kernel):
    """``(k, k, C_out, C_in)`` -> ``(k * k * C_out, C_in)``, row ``(a * k + b) * C_out + c``.

    A reshape of the kernel as it is stored, so no transposed copy: the products multiply by it
    with ``transpose_b=True`` and read its gradient as ``patches^T @ inputs`` in the same layout.
    """
    size, out_channels, in_channels = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    return tf.reshape(kernel, (size * size * out_channels, in_channels))


def _live_extent(inputs, live: Optional[int]) -> tuple[int, int]:
    height, width = inputs.shape[1], inputs.shape[2]
    if live is None:
        return height, width
    return min(int(live), height), min(int(live), width)


def conv_transpose_as_matmul(inputs, kernel, stride: int, live: Optional[int] = None):
    """Transposed convolution with ``'same'`` padding as a matrix product plus an overlap-add.

    ``inputs`` ``(B, H, W, C_in)`` with static ``H, W, C_in``; ``kernel`` in TensorFlow's transposed
    layout ``(k, k, C_out, C_in)``; returns ``(B, stride * H, stride * W, C_out)``, equal to
    ``tf.nn.conv2d_transpose(..., padding="SAME")`` up to float rounding. Output pixel
    ``(stride * i + a - p, stride * j + b - p)`` receives ``inputs[i, j] @ kernel[a, b]^T`` with
    ``p = max(k - stride, 0) // 2``, TensorFlow's leading padding. The sums are formed per output
    phase ``(r, q)`` (pixels ``(stride * m + r, stride * n + q)``) from shifted taps, then the
    phases are interleaved, so no zero-filled full-size intermediate is built.

    ``live``: the caller knows that only the first ``live`` rows and columns of ``inputs`` can be
    non-zero; the product then skips the others (exact: they contribute nothing).
    """
    batch = tf.shape(inputs)[0]
    height, width, in_channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    size, out_channels = kernel.shape[0], kernel.shape[2]
    lead = _leading_padding(size, stride)
    live_rows, live_cols = _live_extent(inputs, live)
    taps = tf.reshape(
        tf.matmul(tf.reshape(inputs[:, :live_rows, :live_cols, :], (-1, in_channels)),
                  kernel_rows(kernel), transpose_b=True),
        (batch, live_rows, live_cols, size * size, out_channels))
    if (live_rows, live_cols) != (height, width):
        taps = tf.pad(taps, [[0, 0], [0, height - live_rows], [0, width - live_cols], [0, 0], [0, 0]])
    # Tap a lands on phase (a - lead) mod stride, on the input row shifted by (a - lead) // stride.
    by_phase: dict[int, list[tuple[int, int]]] = {}
    for a in range(size):
        by_phase.setdefault((a - lead) % stride, []).append((a, (a - lead) // stride))
    phase_rows = []
    for r in range(stride):
        phase_cols = []
        for q in range(stride):
            total = None
            for a, shift_rows in by_phase.get(r, []):
                for b, shift_cols in by_phase.get(q, []):
                    term = _shift_rows_cols(taps[:, :, :, a * size + b, :], shift_rows, shift_cols)
                    total = term if total is None else total + term
            if total is None:   # a phase no tap reaches (stride > kernel size)
                total = tf.zeros_like(taps[:, :, :, 0, :])
            phase_cols.append(total)
        phase_rows.append(tf.stack(phase_cols, axis=3))          # (B, H, W, stride, C)
    interleaved = tf.stack(phase_rows, axis=2)                    # (B, H, stride, W, stride, C)
    return tf.reshape(interleaved, (batch, height * stride, width * stride, out_channels))


def _output_gradient_patches(output_gradient, size: int, stride: int, height: int, width: int):
    """``(B, H, W, k * k * C_out)``: for input pixel ``(i, j)`` the output gradient at the pixels its
    taps wrote, ``dy[stride * i + a - p, stride * j + b - p]`` (zero outside), channel
    ``(a * k + b) * C_out + c``: the adjoint of the overlap-add in one ``extract_patches``."""
    lead = _leading_padding(size, stride)
    out_height, out_width = output_gradient.shape[1], output_gradient.shape[2]
    bottom = max(stride * (height - 1) + size - lead - out_height, 0)
    right = max(stride * (width - 1) + size - lead - out_width, 0)
    padded = tf.pad(output_gradient, [[0, 0], [lead, bottom], [lead, right], [0, 0]])
    patches = tf.image.extract_patches(padded, sizes=[1, size, size, 1],
                                       strides=[1, stride, stride, 1], rates=[1, 1, 1, 1],
                                       padding="VALID")
    return patches[:, :height, :width, :]


def matmul_conv_transpose(inputs, kernel, stride: int, live: Optional[int] = None):
    """:func:`conv_transpose_as_matmul` with a gradient made of two matrix products.

    Same arguments and result. The gradient with respect to ``inputs`` is zero on the rows and
    columns past ``live`` (the forward pass ignores them: they are known to be zero).
    """
    size = kernel.shape[0]
    height, width, in_channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    out_channels = kernel.shape[2]
    live_rows, live_cols = _live_extent(inputs, live)

    @tf.custom_gradient
    def forward(x, w):
        def gradient(dy):
            patches = _output_gradient_patches(dy, size, stride, height, width)
            patches = tf.reshape(patches[:, :live_rows, :live_cols, :],
                                 (-1, size * size * out_channels))
            dx = tf.reshape(tf.matmul(patches, kernel_rows(w)),
                            (-1, live_rows, live_cols, in_channels))
            if (live_rows, live_cols) != (height, width):
                dx = tf.pad(dx, [[0, 0], [0, height - live_rows], [0, width - live_cols], [0, 0]])
            live_inputs = tf.reshape(x[:, :live_rows, :live_cols, :], (-1, in_channels))
            dw = tf.matmul(patches, live_inputs, transpose_a=True)          # (k*k*C_out, C_in)
            return dx, tf.reshape(dw, (size, size, out_channels, in_channels))

        return conv_transpose_as_matmul(x, w, stride, live=live), gradient

    return forward(inputs, kernel)


# --------------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3): stride-1 3x3 'same' convolutions as 16 matrix products of 2.25x less work
# --------------------------------------------------------------------------------------------------
# Output tile y (2x2) of input tile d (4x4) and kernel g (3x3): y = A^T [(G g G^T) * (B^T d B)] A
# (Lavin & Gray 2016). B^T, G, A^T hold only 0, +-1 and 1/2, so every transform below is a few
# additions of tensor slices, and the 16 element-wise products summed over the input channels are
# one batched matrix product. Rounding: the transforms add a few float32 ulps (measured: 3e-6
# relative to the direct convolution on 512 -> 1024 channels, gradients 1e-6 to 3e-6).


# G flip(g) lists the rows of G g in the order (3, 1, 2, 0): the transformed flipped kernel is the
# transformed kernel with positions (a, b) -> (FLIP[a], FLIP[b]). The input gradient uses it to
# reuse the forward pass's transformed kernel (FLIP is its own inverse).
_FLIP = (3, 1, 2, 0)


def _winograd_positions(flip: bool) -> list[int]:
    order = _FLIP if flip else (0, 1, 2, 3)
    return [4 * order[a] + order[b] for a in range(4) for b in range(4)]


def _winograd_input_tiles(x, flip: bool = False):
    """``B^T d B`` of every 4x4 input tile (stride 2) of the 1-padded ``x`` ``(B, H, W, C)``:
    ``(16, B * H/2 * W/2, C)``, row ``4 * a + b`` for transform position ``(a, b)`` (``flip``: row
    ``4 * FLIP[a] + FLIP[b]``)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    tiles_h, tiles_w = height // 2, width // 2
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    # Tile rows 2t..2t+3 are even row t, odd row t, even row t+1, odd row t+1 of the padded image.
    by_row = tf.reshape(padded, (-1, tiles_h + 1, 2, width + 2, channels))
    even, odd = by_row[:, :, 0], by_row[:, :, 1]
    d0, d1, d2, d3 = even[:, :tiles_h], odd[:, :tiles_h], even[:, 1:], odd[:, 1:]
    transformed = []
    for row in (d0 - d2, d1 + d2, d2 - d1, d1 - d3):
        by_col = tf.reshape(row, (-1, tiles_h, tiles_w + 1, 2, channels))
        even_c, odd_c = by_col[:, :, :, 0], by_col[:, :, :, 1]
        c0, c1, c2, c3 = even_c[:, :, :tiles_w], odd_c[:, :, :tiles_w], even_c[:, :, 1:], \
            odd_c[:, :, 1:]
        transformed += [c0 - c2, c1 + c2, c2 - c1, c1 - c3]
    if flip:
        transformed = [transformed[k] for k in _winograd_positions(True)]
    return tf.reshape(tf.stack(transformed), (16, -1, channels))


def _winograd_kernel(kernel):
    """``G g G^T`` of a ``(3, 3, C_in, C_out)`` kernel: ``(16, C_in, C_out)``."""
    def transform(g0, g1, g2):
        return [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]

    transformed = []
    for row in transform(kernel[0], kernel[1], kernel[2]):
        transformed += transform(row[0], row[1], row[2])
    return tf.stack(transformed)


def _winograd_kernel_adjoint(gradient):
    """The adjoint of :func:`_winograd_kernel`: ``(16, C_in, C_out)`` -> ``(3, 3, C_in, C_out)``."""
    def adjoint(v0, v1, v2, v3):
        return [v0 + (v1 + v2) * 0.5, (v1 - v2) * 0.5, (v1 + v2) * 0.5 + v3]

    grid = tf.reshape(gradient, (4, 4) + tuple(gradient.shape[1:]))
    rows = adjoint(grid[0], grid[1], grid[2], grid[3])
    return tf.stack([tf.stack(adjoint(row[0], row[1], row[2], row[3])) for row in rows])


def _winograd_output(products, height: int, width: int, flip: bool = False):
    """``A^T M A`` of the ``(16, B * H/2 * W/2, C_out)`` products, tiles interleaved:
    ``(B, H, W, C_out)`` (``flip``: product ``4 * FLIP[a] + FLIP[b]`` is position ``(a, b)``)."""
    tiles_h, tiles_w, channels = height // 2, width // 2, products.shape[-1]
    products = tf.reshape(products, (16, -1, tiles_h, tiles_w, channels))
    order = _winograd_positions(flip)
    grid = [[products[order[4 * a + b]] for b in range(4)] for a in range(4)]
    rows = []
    for row in ([g0 + g1 + g2 for g0, g1, g2 in zip(grid[0], grid[1], grid[2])],
                [g1 - g2 - g3 for g1, g2, g3 in zip(grid[1], grid[2], grid[3])]):
        rows.append(tf.stack([row[0] + row[1] + row[2], row[1] - row[2] - row[3]], axis=3))
    return tf.reshape(tf.stack(rows, axis=2), (-1, height, width, channels))


def _winograd_output_adjoint(output_gradient):
    """The adjoint of :func:`_winograd_output`: ``(B, H, W, C_out)`` -> ``(16, B * H/2 * W/2, C_out)``."""
    height, width, channels = output_gradient.shape[1], output_gradient.shape[2], \
        output_gradient.shape[3]
    tiles = tf.reshape(output_gradient, (-1, height // 2, 2, width // 2, 2, channels))
    top, bottom = tiles[:, :, 0], tiles[:, :, 1]
    transformed = []
    for row in (top, top + bottom, top - bottom, -bottom):
        left, right = row[:, :, :, 0], row[:, :, :, 1]
        transformed += [left, left + right, left - right, -right]
    return tf.reshape(tf.stack(transformed), (16, -1, channels))


def winograd_conv3x3(inputs, kernel):
    """``tf.nn.conv2d(inputs, kernel, 1, "SAME")`` for a 3x3 kernel by Winograd F(2x2, 3x3).

    ``inputs`` ``(B, H, W, C_in)`` with even static ``H`` and ``W``; ``kernel`` ``(3, 3, C_in,
    C_out)``; returns ``(B, H, W, C_out)``. The gradient is written out too: the kernel's from the
    forward pass's transformed tiles (``U^T dM``, one batched product), the input's as the same
    Winograd convolution of the output gradient with the flipped, transposed kernel. 16 products of
    ``(B * H * W / 4, C_in) @ (C_in, C_out)`` replace ``9 * B * H * W`` multiply-adds per channel
    pair: 2.25x fewer.
    """
    height, width = inputs.shape[1], inputs.shape[2]

    @tf.custom_gradient
    def forward(x, w):
        tiles = _winograd_input_tiles(x)
        kernel_transform = _winograd_kernel(w)
        outputs = _winograd_output(tf.matmul(tiles, kernel_transform), height, width)

        def gradient(dy):
            product_gradient = _winograd_output_adjoint(dy)
            dw = _winograd_kernel_adjoint(tf.matmul(tiles, product_gradient, transpose_a=True))
            # Position k of the flipped kernel's transform is position FLIP(k) of the kernel's:
            # taking dy's tiles in FLIP order pairs each with the kernel transform as it is.
            flipped_products = tf.matmul(_winograd_input_tiles(dy, flip=True), kernel_transform,
                                         transpose_b=True)
            dx = _winograd_output(flipped_products, height, width, flip=True)
            return dx, dw

        return outputs, gradient

    return forward(inputs, kernel)


def _row_sum_selection(out_channels: int, dtype):
    """``(3, 1, 3 * C_out, C_out)``: ones at ``[dy, 0, dy * C_out + o, o]``, zeros elsewhere."""
    selection = np.zeros((3, 1, 3 * out_channels, out_channels), np.float32)
    for dy in range(3):
        selection[dy, 0, dy * out_channels + np.arange(out_channels), np.arange(out_channels)] = 1.0
    return tf.constant(selection, dtype=dtype)


def narrow_conv3x3(inputs, kernel):
    """``tf.nn.conv2d(inputs, kernel, 1, "SAME")`` for a 3x3 kernel with few output channels.

    ``inputs`` ``(B, H, W, C_in)``; ``kernel`` ``(3, 3, C_in, C_out)``; returns ``(B, H, W, C_out)``.
    oneDNN computes output channels in blocks of 16, so the generator's 3-channel layer does the
    work of 16 (3 and 16 output channels take the same time). Here a 1x3 convolution
    first produces the ``3 * C_out`` row sums (channel ``dy * C_out + o``: kernel row ``dy`` applied
    along the columns), and a fixed 3x1 convolution of ones adds the three rows with their
    vertical offsets, the zero padding falling where the original's does. Same multiply-adds in
    about half the time at C_out = 3 (docs/performance.md); equal up to float32 summation order.
    """
    in_channels, out_channels = kernel.shape[2], kernel.shape[3]
    # (dy, dx, c, o) -> (1, dx, c, dy * C_out + o)
    rows = tf.reshape(tf.transpose(kernel, (1, 2, 0, 3)), (1, 3, in_channels, 3 * out_channels))
    row_sums = tf.nn.conv2d(inputs, rows, 1, padding="SAME")
    return tf.nn.conv2d(row_sums, _row_sum_selection(out_channels, row_sums.dtype), 1,
                        padding="SAME")


def _tensorflow_backend() -> bool:
    return keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class MatmulConv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` computed by :func:`matmul_conv_transpose` on small inputs.

    Applies to inputs of at most ``max_matmul_pixels`` pixels with static shape, 'same' padding,
    square strides, no dilation, no output padding, channels last, no bias and no activation (the
    generator's layers); anything else runs the parent's call. ``live_input``: only the first
    ``live_input`` rows and columns of the input can be non-zero (the caller guarantees it, e.g. a
    layer fed by a transposed convolution whose stride exceeds its kernel); None: all of them.
    Same variables and checkpoint layout as the parent.
    """

    def __init__(self, *args, live_input: Optional[int] = None,
                 max_matmul_pixels: int = MATMUL_CONV_TRANSPOSE_MAX_PIXELS, **kwargs):
        super().__init__(*args, **kwargs)
        self.live_input = None if live_input is None else int(live_input)
        self.max_matmul_pixels = int(max_matmul_pixels)

    def _matmul_applies(self, inputs) -> bool:
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        return (_tensorflow_backend() and None not in (height, width, channels)
                and height * width <= self.max_matmul_pixels and not self.use_bias
                and self.padding == "same" and self.strides[0] == self.strides[1]
                and tuple(self.dilation_rate) == (1, 1) and self.output_padding is None
                and self.data_format == "channels_last"
                and self.kernel_size[0] == self.kernel_size[1]
                and getattr(self.activation, "__name__", None) == "linear")

    def call(self, inputs):
        if not self._matmul_applies(inputs):
            return super().call(inputs)
        kernel = ops.cast(self.kernel, inputs.dtype)
        return matmul_conv_transpose(inputs, kernel, int(self.strides[0]), live=self.live_input)

    def get_config(self):
        return {**super().get_config(), "live_input": self.live_input,
                "max_matmul_pixels": self.max_matmul_pixels}


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class MatmulConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` through matrix products where that is faster on CPU.

    Runs :func:`winograd_conv3x3` for a 3x3 kernel with stride 1, 'same' padding, no dilation, no
    groups, channels last, no bias, no activation and more than one filter, on float32 inputs of
    static, even height and width with at most ``winograd_max_pixels`` pixels (in the GAN: the
    discriminator's 8x8, 512 -> 1024 layer, the widest). Anything else runs the parent's call
    (bfloat16 inputs too: the transforms' additions would round to 8 bits). Same variables and
    checkpoint layout as the parent.
    """

    def __init__(self, *args, winograd_max_pixels: int = WINOGRAD_MAX_PIXELS, **kwargs):
        super().__init__(*args, **kwargs)
        self.winograd_max_pixels = int(winograd_max_pixels)

    def _winograd_applies(self, inputs) -> bool:
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        return (_tensorflow_backend() and None not in (height, width, channels)
                and height % 2 == 0 and width % 2 == 0
                and height * width <= self.winograd_max_pixels
                and keras.backend.standardize_dtype(inputs.dtype) == "float32"
                and tuple(self.kernel_size) == (3, 3) and tuple(self.strides) == (1, 1)
                and self.filters > 1 and not self.use_bias and self.padding == "same"
                and self.groups == 1 and tuple(self.dilation_rate) == (1, 1)
                and self.data_format == "channels_last"
                and getattr(self.activation, "__name__", None) == "linear")

    def call(self, inputs):
        if not self._winograd_applies(inputs):
            return super().call(inputs)
        return winograd_conv3x3(inputs, ops.cast(self.kernel, inputs.dtype))

    def get_config(self):
        return {**super().get_config(), "winograd_max_pixels": self.winograd_max_pixels}
