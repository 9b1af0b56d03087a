"""Trained weights for a zoo model, from a file a user downloaded: never unpickled.

``.safetensors`` files are read with the ``safetensors`` package (a JSON header
and raw arrays: nothing executes). A ``.pth`` state dict goes through
``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers. The names must be the model's own (torchvision's for ``resnet18``).
"""

from pathlib import Path

from ..errors import QuantizeError

__all__ = ["load_checkpoint"]


def _read(path):
    import torch
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise QuantizeError(f"{path}: cannot read as .safetensors: {err}") from None
    if path.suffix in (".pth", ".pt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:        # pickle errors of every kind: refuse, say why
            raise QuantizeError(f"{path}: cannot read as a weights-only state dict: "
                                f"{type(err).__name__}: {err}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise QuantizeError(f"{path}: holds a {type(state).__name__}, not a state dict")
        return state
    raise QuantizeError(f"{path}: a checkpoint is a .safetensors file or a .pth state dict")


def load_checkpoint(model, path):
    """Load ``path`` into ``model``; every missing, unexpected or misshapen tensor is an error."""
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"{path}: no such file")
    state = _read(path)
    own = model.state_dict()
    # torchvision's own ResNet-18 file (resnet18-f37072fd.pth) predates batch norm's
    # step counter; torch fills it in for such files, and so does this (it counts training
    # steps and changes nothing in eval).
    state = {**{k: v for k, v in own.items()
                if k.endswith(".num_batches_tracked") and k not in state}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise QuantizeError(f"{path}: does not match the model: missing "
                            f"{', '.join(missing[:3]) or 'nothing'}"
                            f"{' ...' if len(missing) > 3 else ''}; unexpected "
                            f"{', '.join(unexpected[:3]) or 'nothing'}"
                            f"{' ...' if len(unexpected) > 3 else ''}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise QuantizeError(f"{path}: tensor '{name}' has shape {list(tensor.shape)}, the "
                                f"model's is {list(own[name].shape)}")
    model.load_state_dict(state)
    return model
