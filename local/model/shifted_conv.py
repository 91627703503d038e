"""The causal dilated convolution as shifted views times one matrix (``formulation="shifted"`` of
:func:`local.model.wavenet.build_wavenet`): measured, not the default (bench/bench_training.py compares them).
"""

_DILATED_CONV = []


def dilated_conv_class():
    """The causal dilated convolution as shifted views times one matrix: a Keras layer class, registered as
    ``waveforms>Conv1D`` (made on first use, so importing this module does not import Keras): call it before
    ``keras.models.load_model`` of a model built with ``formulation="shifted"`` (the default models use Keras'
    own Conv1D and need nothing)."""
    if _DILATED_CONV:
        return _DILATED_CONV[0]
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class Conv1D(keras.layers.Conv1D):
        """Keras' causal ``Conv1D`` (same config, weights and outputs), computed as k shifted views of the
        input concatenated on channels times the kernel reshaped to (k * in, filters): one matrix product.

        Issue 11's candidate against TensorFlow's space-to-batch path for dilated convolutions (tensorflow
        issue 37883); measured slower than TensorFlow 2.19's oneDNN convolution on a CPU (see
        :func:`build_wavenet`), so only bench/bench_training.py builds it by default. The class is named ``Conv1D`` on purpose:
        a model's weight file names its layers by class (``layers/conv1d_3/vars/0``), so checkpoints written
        with the stock layer load into this one and back.
        """

        def call(self, inputs):
            if (self.padding != "causal" and self.kernel_size != (1,)) or self.strides != (1,) or \
                    self.data_format != "channels_last":
                return super().call(inputs)
            width, dilation = self.kernel_size[0], self.dilation_rate[0]
            span = (width - 1) * dilation
            padded = ops.pad(inputs, [[0, 0], [span, 0], [0, 0]]) if span else inputs
            # tap j reads x[t - (width-1-j) * dilation], as the causal convolution's kernel row j does
            taps = [padded[:, j * dilation:(j * dilation - span) or None, :] for j in range(width)]
            stacked = ops.concatenate(taps, axis=-1) if width > 1 else taps[0]
            kernel = ops.reshape(self.kernel, (width * self.kernel.shape[1], self.filters))
            # as one 2-D product: TensorFlow's broadcasting batch matmul of (B, T, C) by (C, F) is slower
            batch, steps = ops.shape(stacked)[0], ops.shape(stacked)[1]
            outputs = ops.reshape(ops.matmul(ops.reshape(stacked, (-1, width * self.kernel.shape[1])), kernel),
                                  (batch, steps, self.filters))
            if self.use_bias:
                outputs = outputs + self.bias
            return self.activation(outputs) if self.activation is not None else outputs

    _DILATED_CONV.append(Conv1D)
    return Conv1D
