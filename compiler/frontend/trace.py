"""Trace a float ``torch.nn.Module`` into a small layer graph, folding batch norm.

:func:`trace` runs ``torch.fx.symbolic_trace`` and maps every fx node onto one
of the IR's ops (:mod:`compiler.ops`), under their one name::

    input  conv2d  dense  relu  add  maxpool  gap  flatten

Modules and functions that compute nothing (``nn.Identity``, dropout, shape
queries feeding a ``view``) disappear. A batch norm that directly follows a conv
or linear layer is folded into that layer's per-channel affine ``scale`` and
``shift`` (eval-mode statistics). Anything else raises
:class:`~compiler.errors.QuantizeError` naming the fx node and the torch op.

The result is still float: :func:`run_float` evaluates it, and equals the module
in eval mode up to float rounding (the tests hold it to that). Quantization
decisions are made later, by :mod:`compiler.frontend.placement`.
"""

import contextlib
import io
import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from ..errors import QuantizeError
from ..ops import Add, Conv2d, Dense, Flatten, Gap, Input, MaxPool, Relu, is_op, op_of

__all__ = ["Layer", "LayerGraph", "trace", "run_float", "SUPPORTED"]

SUPPORTED = ("nn.Conv2d, nn.Linear, nn.BatchNorm2d/1d (after a conv/linear), nn.ReLU, "
             "nn.MaxPool2d, nn.AdaptiveAvgPool2d(1), nn.Flatten, nn.Identity, nn.Dropout, "
             "F.relu/torch.relu/Tensor.relu, +/torch.add, torch.flatten/Tensor.flatten, "
             "Tensor.view/reshape(batch, -1), mean over (2, 3), F.max_pool2d, "
             "F.adaptive_avg_pool2d(x, 1)")


@dataclass
class Layer:
    """One layer of the traced network (float).

    ``shape`` is the output shape without the batch axis, as the IR sees it (a
    global average pool gives ``(C,)``). For ``conv``/``linear`` the layer computes
    ``y[c] = scale[c] * (W x)[c] + shift[c]``: the layer's bias and any folded
    batch norm live in ``scale`` and ``shift``; ``weight`` has no bias.
    """

    name: str
    op: str
    inputs: list
    shape: tuple
    origin: str                      # the torch op, for messages ("nn.Conv2d", "torch.relu")
    attrs: dict = field(default_factory=dict)
    weight: torch.Tensor = None
    scale: torch.Tensor = None
    shift: torch.Tensor = None
    folded: list = field(default_factory=list)   # names of the batch norms folded in


@dataclass
class LayerGraph:
    layers: list                     # topological order, layers[0] is the input
    output: str

    def __getitem__(self, name):
        return next(layer for layer in self.layers if layer.name == name)

    def consumers(self, name):
        return [layer for layer in self.layers if name in layer.inputs]

    @property
    def input(self):
        return self.layers[0]


def _describe(node, gm):
    """A short name for the torch op behind an fx node."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        cls = type(mod)
        prefix = "nn." if cls.__module__.startswith("torch.nn") else f"{cls.__module__}."
        return prefix + cls.__name__
    if node.op == "call_function":
        mod = getattr(node.target, "__module__", None) or "torch"
        short = {"_operator": "operator", "torch.nn.functional": "F", "torch._C._nn": "F"}
        mod = short.get(mod, mod)
        return f"{mod}.{getattr(node.target, '__name__', str(node.target))}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return node.op


class _Tracer:
    def __init__(self, gm, batch):
        self.gm = gm
        self.batch = batch
        self.layers = []
        self.alias = {}              # fx node name -> layer name it is equal to
        self.meta = set()            # fx nodes holding sizes, not tensors

    # -- helpers ----------------------------------------------------------------

    def fail(self, node, message):
        raise QuantizeError(f"node '{node.name}' ({_describe(node, self.gm)}): {message}")

    def shape(self, node):
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            self.fail(node, "does not produce a single tensor")
        shape = tuple(meta.shape)
        if not shape or shape[0] != self.batch:
            self.fail(node, f"output shape {list(shape)} has no batch axis")
        return shape[1:]

    def src(self, node, arg):
        if not isinstance(arg, fx.Node):
            self.fail(node, f"input {arg!r} is a constant; only tensors computed from the "
                            "network input are supported")
        if arg.name in self.meta:
            self.fail(node, f"input '{arg.name}' is a size, not a tensor")
        return self.alias.get(arg.name, arg.name)

    def layer_of(self, name):
        return next(layer for layer in self.layers if layer.name == name)

    def add(self, node, op, inputs, origin=None, **kw):
        layer = Layer(node.name, op, inputs, self.shape(node), origin or _describe(node, self.gm),
                      **kw)
        self.layers.append(layer)
        return layer

    def need_rank(self, node, src, rank, what):
        shape = self.layer_of(src).shape
        if len(shape) != rank:
            self.fail(node, f"needs {what}, but its input '{src}' has shape {list(shape)}")

    # -- ops ----------------------------------------------------------------------

    def conv(self, node, mod):
        problems = []
        k = mod.kernel_size
        if k[0] != k[1]:
            problems.append(f"non-square kernel {tuple(k)}")
        if mod.stride[0] != mod.stride[1]:
            problems.append(f"unequal strides {tuple(mod.stride)}")
        if isinstance(mod.padding, str) or mod.padding[0] != mod.padding[1]:
            problems.append(f"padding {mod.padding!r} (need one integer for both sides)")
        if tuple(mod.dilation) != (1, 1):
            problems.append(f"dilation {tuple(mod.dilation)}")
        if mod.groups != 1:
            problems.append(f"groups={mod.groups}")
        if mod.padding_mode != "zeros":
            problems.append(f"padding_mode='{mod.padding_mode}'")
        if problems:
            self.fail(node, "unsupported convolution: " + ", ".join(problems)
                      + "; supported: square kernels, equal strides, integer zero padding, "
                        "no dilation, groups=1")
        src = self.src(node, node.args[0])
        self.need_rank(node, src, 3, "a feature map (C, H, W)")
        self._mac(node, Conv2d.name, src, mod,
                  {"kernel": k[0], "stride": mod.stride[0], "padding": mod.padding[0]})

    def linear(self, node, mod):
        src = self.src(node, node.args[0])
        self.need_rank(node, src, 1, "a vector (insert a flatten before it)")
        self._mac(node, Dense.name, src, mod, {})

    def _mac(self, node, op, src, mod, attrs):
        w = mod.weight.detach().clone().float()
        out = w.shape[0]
        bias = (mod.bias.detach().clone().float() if mod.bias is not None
                else torch.zeros(out))
        self.add(node, op, [src], attrs=attrs, weight=w, scale=torch.ones(out), shift=bias)

    def batchnorm(self, node, mod):
        src = self.src(node, node.args[0])
        prev = self.layer_of(src)
        if not is_op(prev, Conv2d, Dense):
            self.fail(node, f"batch norm must directly follow a conv or linear layer, "
                            f"not '{prev.name}' ({prev.origin})")
        # Folding changes the layer's output, so nothing else may read the unfolded value.
        producer = next(n for n in self.gm.graph.nodes if n.name == src)
        users = len(producer.users) if producer is node.args[0] else max(
            len(producer.users), len(node.args[0].users))
        if users != 1:
            self.fail(node, f"the output of '{src}' is used by {users} nodes; batch norm "
                            "can only be folded into a layer whose output it alone uses")
        if mod.running_mean is None or mod.running_var is None:
            self.fail(node, "batch norm without running statistics cannot be folded")
        # Fold in float64: y = g * (s x + t) + (beta - mean * g), g = gamma / sqrt(var + eps).
        var = mod.running_var.detach().double()
        mean = mod.running_mean.detach().double()
        gamma = mod.weight.detach().double() if mod.weight is not None else torch.ones_like(var)
        beta = mod.bias.detach().double() if mod.bias is not None else torch.zeros_like(var)
        g = gamma / torch.sqrt(var + mod.eps)
        prev.scale = (prev.scale.double() * g).float()
        prev.shift = (prev.shift.double() * g + beta - mean * g).float()
        prev.folded.append(node.name)
        self.alias[node.name] = src

    def relu(self, node):
        self.add(node, Relu.name, [self.src(node, node.args[0])])

    def add_op(self, node):
        if node.target is torch.add and node.kwargs.get("alpha", 1) != 1:
            self.fail(node, "torch.add with alpha != 1 is not supported")
        args = list(node.args[:2])
        if len(args) != 2:
            self.fail(node, "needs two tensor operands")
        a, b = (self.src(node, x) for x in args)
        if self.layer_of(a).shape != self.layer_of(b).shape:
            self.fail(node, f"adds tensors of shapes {list(self.layer_of(a).shape)} and "
                            f"{list(self.layer_of(b).shape)} (broadcasting is not supported)")
        self.add(node, Add.name, [a, b])

    def maxpool(self, node, kernel, stride, padding, dilation, ceil_mode):
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        kernel, stride = pair(kernel), pair(stride if stride else kernel)
        padding = pair(padding)
        if (kernel[0] != kernel[1] or stride[0] != stride[1] or padding[0] != padding[1]
                or pair(dilation) != (1, 1) or ceil_mode):
            self.fail(node, f"unsupported max pooling (kernel {kernel}, stride {stride}, "
                            f"padding {padding}, dilation {dilation}, ceil_mode {ceil_mode}); "
                            "supported: square kernel, equal strides, equal padding, no "
                            "dilation, no ceil_mode")
        src = self.src(node, node.args[0])
        self.need_rank(node, src, 3, "a feature map (C, H, W)")
        self.add(node, MaxPool.name, [src], attrs={"kernel": kernel[0], "stride": stride[0],
                                                   "padding": padding[0]})

    def gap(self, node):
        src = self.src(node, node.args[0])
        self.need_rank(node, src, 3, "a feature map (C, H, W)")
        c, h, w = self.layer_of(src).shape
        layer = self.add(node, Gap.name, [src], attrs={"pixels": h * w})
        layer.shape = (c,)           # the IR's gap gives a vector; (C, 1, 1) is the same data

    def flatten(self, node):
        """Accept only reshapes to ``(batch, -1)``, checked on the propagated shapes."""
        src = self.src(node, node.args[0])
        meta = node.meta.get("tensor_meta")
        shape = tuple(getattr(meta, "shape", ()))
        size = math.prod(self.layer_of(src).shape)
        if shape != (self.batch, size):
            self.fail(node, f"reshapes a batch of {self.batch} to {list(shape)}; only "
                            "flattening to (batch, -1) is supported")
        self.add(node, Flatten.name, [src])

    def mean(self, node):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        src = self.src(node, node.args[0])
        rank = len(self.layer_of(src).shape) + 1
        if rank != 4 or sorted(d % rank for d in dims if isinstance(d, int)) != [2, 3]:
            self.fail(node, f"mean over dims {dims} of a rank-{rank} tensor; only the global "
                            "average over (2, 3) of a feature map is supported")
        self.gap(node)

    def identity(self, node):
        self.alias[node.name] = self.src(node, node.args[0])

    # -- dispatch -------------------------------------------------------------------

    def node(self, node):
        op, t = node.op, node.target
        if op == "placeholder":
            if self.layers:
                self.fail(node, "a second network input; only one is supported")
            shape = self.shape(node)
            if len(shape) not in (1, 3):
                self.fail(node, f"input shape {list(shape)}: need (C, H, W) or (K,)")
            self.layers.append(Layer(node.name, Input.name, [], shape, "input"))
            return
        if op == "get_attr":
            self.fail(node, "uses a parameter or buffer directly; only layers are supported")
        if op == "call_module":
            mod = self.gm.get_submodule(t)
            if isinstance(mod, nn.Conv2d):
                return self.conv(node, mod)
            if isinstance(mod, nn.Linear):
                return self.linear(node, mod)
            if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
                return self.batchnorm(node, mod)
            if isinstance(mod, nn.ReLU):
                return self.relu(node)
            if isinstance(mod, nn.MaxPool2d):
                if mod.return_indices:
                    self.fail(node, "return_indices=True is not supported")
                return self.maxpool(node, mod.kernel_size, mod.stride, mod.padding,
                                    mod.dilation, mod.ceil_mode)
            if isinstance(mod, nn.AdaptiveAvgPool2d):
                size = mod.output_size
                if size not in (1, (1, 1), [1, 1]):
                    self.fail(node, f"output_size {size}; only global pooling (1) is supported")
                return self.gap(node)
            if isinstance(mod, nn.Flatten):
                return self.flatten(node)
            if isinstance(mod, (nn.Identity, nn.Dropout, nn.Dropout2d)):
                return self.identity(node)
        elif op == "call_function":
            name = getattr(t, "__name__", "")
            if t in (F.relu, torch.relu, torch.relu_):
                return self.relu(node)
            if t in (operator.add, operator.iadd, torch.add):
                return self.add_op(node)
            if t is torch.flatten:
                return self.flatten(node)
            if t is torch.mean:
                return self.mean(node)
            if t is F.dropout:
                return self.identity(node)
            if name == "max_pool2d":
                arg = lambda i, key, default: (node.args[i] if len(node.args) > i  # noqa: E731
                                               else node.kwargs.get(key, default))
                return self.maxpool(node, arg(1, "kernel_size", None), arg(2, "stride", None),
                                    arg(3, "padding", 0), arg(4, "dilation", 1),
                                    arg(5, "ceil_mode", False))
            if t is F.adaptive_avg_pool2d:
                size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
                if size not in (1, (1, 1), [1, 1]):
                    self.fail(node, f"output_size {size}; only global pooling (1) is supported")
                return self.gap(node)
            if t in (getattr, operator.getitem) and not isinstance(
                    node.meta.get("tensor_meta"), TensorMetadata):
                self.meta.add(node.name)
                return
        elif op == "call_method":
            if t in ("relu", "relu_"):
                return self.relu(node)
            if t in ("add", "add_", "__add__"):
                return self.add_op(node)
            if t in ("flatten", "view", "reshape"):
                return self.flatten(node)
            if t == "mean":
                return self.mean(node)
            if t in ("size", "dim"):
                self.meta.add(node.name)
                return
            if t in ("contiguous",):
                return self.identity(node)
        self.fail(node, f"unsupported op; supported: {SUPPORTED}")


def _prune(layers, output):
    """Drop layers that do not lead to the output (fx keeps unused modules' calls)."""
    used = {output}
    for layer in reversed(layers):
        if layer.name in used:
            used.update(layer.inputs)
    return [layer for layer in layers if layer.name in used]


def trace(model, example):
    """Trace ``model`` (a float module) on ``example`` inputs into a :class:`LayerGraph`.

    ``example`` is a batch of inputs ``(N, ...)``; only its shape matters. The
    module is put in eval mode while tracing (batch norm must use its running
    statistics) and restored afterwards. Raises QuantizeError for anything the
    IR cannot express.
    """
    if not isinstance(model, nn.Module):
        raise QuantizeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    example = torch.as_tensor(example, dtype=torch.float32)
    if example.ndim < 2 or example.shape[0] < 1:
        raise QuantizeError(f"example inputs must be a batch (N, ...), got shape "
                            f"{list(example.shape)}")
    # Three samples, so that a reshape to a hard-wired batch size (1, 2, ...) is unlikely
    # to pass for a flatten; a single sample is repeated.
    example = example[:1].repeat(3, *[1] * (example.ndim - 1)) if example.shape[0] < 3 \
        else example[:3]
    was_training = model.training
    model.eval()
    try:
        try:
            gm = fx.symbolic_trace(model)
        except Exception as err:       # fx raises many kinds; the user needs the message
            raise QuantizeError(f"torch.fx cannot trace the model: {type(err).__name__}: "
                                f"{err}") from None
        try:
            # The module itself first: its own error names the problem (ShapeProp wraps it in
            # a message about fx nodes, and prints a traceback of its own).
            with torch.no_grad():
                model(example)
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                ShapeProp(gm).propagate(example)
        except Exception as err:
            raise QuantizeError(f"the model fails on inputs of shape {list(example.shape)}: "
                                f"{type(err).__name__}: {err}") from None
        tracer = _Tracer(gm, example.shape[0])
        output = None
        for node in gm.graph.nodes:
            if node.op == "output":
                result = node.args[0]
                if not isinstance(result, fx.Node):
                    tracer.fail(node, "the model must return one tensor")
                output = tracer.src(node, result)
            else:
                tracer.node(node)
    finally:
        model.train(was_training)
    if not tracer.layers or not is_op(tracer.layers[0], Input):
        raise QuantizeError("the model has no tensor input")
    layers = _prune(tracer.layers, output)
    if not is_op(layers[0], Input):
        raise QuantizeError("the model's output does not depend on its input")
    return LayerGraph(layers, output)


def _float_mac(layer, x):
    a = layer.attrs
    if is_op(layer, Conv2d):
        y = F.conv2d(x, layer.weight, stride=a["stride"], padding=a["padding"])
        return y * layer.scale.view(1, -1, 1, 1) + layer.shift.view(1, -1, 1, 1)
    return F.linear(x, layer.weight) * layer.scale + layer.shift


#: What each op computes in float, on a traced layer and its input values.
_FLOAT = {
    Input: lambda layer, x, ins: x,
    Conv2d: lambda layer, x, ins: _float_mac(layer, ins[0]),
    Dense: lambda layer, x, ins: _float_mac(layer, ins[0]),
    Relu: lambda layer, x, ins: F.relu(ins[0]),
    Add: lambda layer, x, ins: ins[0] + ins[1],
    MaxPool: lambda layer, x, ins: F.max_pool2d(ins[0], layer.attrs["kernel"],
                                                layer.attrs["stride"], layer.attrs["padding"]),
    Gap: lambda layer, x, ins: ins[0].mean(dim=(2, 3)),
    Flatten: lambda layer, x, ins: ins[0].flatten(1),
}


def run_float(graph, x):
    """Evaluate a :class:`LayerGraph` in float (batch norm folded); for checking the trace."""
    values = {}
    for layer in graph.layers:
        ins = [values[s] for s in layer.inputs]
        values[layer.name] = _FLOAT[type(op_of(layer))](layer, x, ins)
    return values[graph.output]
