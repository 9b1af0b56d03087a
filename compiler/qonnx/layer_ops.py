"""The layers that only move, pool, add or rescale activations.

``Relu`` waits for the quantizer after it where it can (a staircase absorbs it),
``MaxPool``, ``GlobalAveragePool``, ``Add`` and ``Flatten`` become IR ops, and
``BatchNormalization``, ``Mul``/``Div`` by constants and the addition of a
constant only change the affine map of the activations.
"""

from dataclasses import replace

import numpy as np

from .values import Act, scalar

__all__ = ["LayerOps"]


class LayerOps:
    """The importer's handlers of the other layers (a mixin of ``convert._Importer``)."""

    def op_Relu(self, n, a):
        return replace(self.act(n), relu=True)

    def op_MaxPool(self, n, a):
        x = self.act(n)
        if np.any(x.scale <= 0):
            self.fail(n, "its input has a non-positive scale; the maximum would change sides")
        k, strides = a.get("kernel_shape", []), a.get("strides", None)
        pads = a.get("pads", [0, 0, 0, 0])
        strides = strides or k
        if len(k) != 2 or k[0] != k[1] or len(set(strides)) != 1 or len(set(pads)) != 1:
            self.fail(n, f"kernel {k}, strides {strides}, pads {pads}: square and the same on "
                         "every side are supported")
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(n, "ceil_mode and dilations are not supported")
        # max(relu(v)) == relu(max(v)): a pending ReLU passes through.
        node = self.add(n, "maxpool", [x.node], {"kernel": k[0], "stride": strides[0],
                                                 "padding": pads[0]})
        return replace(x, node=node.name, shape=node.shape)

    def _gap(self, n, x):
        x = self.settled(n, x)
        if len(x.shape) != 3:
            self.fail(n, f"its input has shape {list(x.shape)}; a feature map is expected")
        node = self.add(n, "gap", [x.node])
        area = x.shape[1] * x.shape[2]
        return Act(node.name, node.shape, x.scale / area, x.offset)

    def op_GlobalAveragePool(self, n, a):
        return self._gap(n, self.act(n))

    def op_AveragePool(self, n, a):
        x = self.act(n)
        if len(x.shape) != 3 or list(a.get("kernel_shape", [])) != list(x.shape[1:]) \
                or any(a.get("pads", [0])):
            self.fail(n, "only a global average pool (kernel = the whole map, no padding) is "
                         "supported")
        return self._gap(n, x)

    def op_ReduceMean(self, n, a):
        x = self.act(n)
        axes = a.get("axes")
        if axes is None and len(n.input) > 1 and n.input[1]:
            axes = self.const(n, 1, "the axes").ravel().tolist()
        if len(x.shape) != 3 or sorted(int(i) % 4 for i in axes or []) != [2, 3]:
            self.fail(n, f"a mean over axes {axes}: only the mean over H and W (a global "
                         "average pool) is supported")
        return self._gap(n, x)

    def op_Add(self, n, a):
        left, right = (self.values.get(i) for i in n.input)
        if isinstance(right, Act) and not isinstance(left, Act):
            left, right = right, left
        if not isinstance(left, Act):
            self.fail(n, "neither input is activations")
        if isinstance(right, np.ndarray):                  # a bias
            x = self.settled(n, left)
            return replace(x, offset=x.offset + self.channel_param(n, right, x, "the addend"))
        if not isinstance(right, Act):
            self.fail(n, "its inputs must be activations or a constant")
        x, y = self.settled(n, left), self.settled(n, right)
        if x.shape != y.shape:
            self.fail(n, f"shapes {list(x.shape)} and {list(y.shape)} differ")
        if not np.array_equal(x.scale, y.scale):
            self.fail(n, "its two inputs have different scales "
                         f"({scalar(x.scale):.6g} and {scalar(y.scale):.6g}); an integer sum "
                         "needs them equal (share one quantizer between the branches)")
        node = self.add(n, "add", [x.node, y.node])
        return Act(node.name, node.shape, x.scale, x.offset + y.offset)

    def _scaled(self, n, c, i=0):
        x = self.act(n, i)
        c = self.channel_param(n, c, x, "the factor")
        if np.any(c <= 0) or np.any(~np.isfinite(c)):
            self.fail(n, "only multiplication by finite positive constants is supported")
        return replace(x, scale=x.scale * c, offset=x.offset * c)

    def op_Mul(self, n, a):
        if isinstance(self.values.get(n.input[0]), np.ndarray):
            return self._scaled(n, self.const(n, 0, "the factor"), 1)
        return self._scaled(n, self.const(n, 1, "the factor"))

    def op_Div(self, n, a):
        c = self.const(n, 1, "the divisor")
        if np.any(c == 0):
            self.fail(n, "division by zero")
        return self._scaled(n, 1.0 / np.asarray(c, np.float64))

    def op_BatchNormalization(self, n, a):
        x = self.act(n)
        gamma, beta, mean, var = (self.channel_param(n, self.const(n, i, what), x, what, True)
                                  for i, what in ((1, "scale"), (2, "bias"), (3, "mean"),
                                                  (4, "variance")))
        if x.relu:
            self.fail(n, "a batch norm after a Relu is not supported")
        g = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        return replace(x, scale=x.scale * g, offset=(x.offset - mean) * g + beta)

    def _flatten(self, n, x):
        if len(x.shape) == 1:           # after a global pool the IR has a vector already
            return x
        c, h, w = x.shape
        node = self.add(n, "flatten", [x.node])
        return replace(x, node=node.name, shape=node.shape, scale=np.repeat(x.scale, h * w),
                       offset=np.repeat(x.offset, h * w))

    def op_Flatten(self, n, a):
        if a.get("axis", 1) != 1:
            self.fail(n, f"axis={a.get('axis')}: only axis=1 is supported")
        return self._flatten(n, self.act(n))

    def op_Reshape(self, n, a):
        x = self.act(n)
        target = [int(d) for d in self.const(n, 1, "the shape").ravel()]
        size = int(np.prod(x.shape))
        if target not in ([1, size], [1, -1], [-1, size]) and target != [1, *x.shape]:
            self.fail(n, f"reshape to {target}: only flattening to (1, {size}) is supported")
        return x if target == [1, *x.shape] else self._flatten(n, x)

    def op_Identity(self, n, a):
        return self.values[n.input[0]]

    op_Dropout = op_Identity

    def op_Constant(self, n, a):
        if "value" not in a or not isinstance(a["value"], np.ndarray):
            self.fail(n, "only Constant nodes with a 'value' tensor are supported")
        return a["value"]
