"""A CNN quantized with Brevitas, trained on the 8x8 digits and exported to QONNX.

    python examples/brevitas_digits.py -o digits_brevitas.onnx
    python -m compiler import digits_brevitas.onnx -o digits_brevitas.qpk

What a FINN user brings: ternary first-layer weights with batch norm, 4-bit
weights and activations after it, max pooling, and a dense head whose bias is
quantized to the accumulator's scale (``Int32Bias``), so the logits are exact
integers. Needs the ``dev`` extra (Brevitas).
"""

import argparse
import logging
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def brevitas_digits_cnn():
    with warnings.catch_warnings():      # optional kernels Brevitas looks for at import
        warnings.simplefilter("ignore")
        import brevitas.nn as qnn
        from brevitas.quant import Int32Bias

    def conv_block(cin, cout, weight_bits):
        return [qnn.QuantConv2d(cin, cout, 3, padding=1, weight_bit_width=weight_bits,
                                bias=False),
                torch.nn.BatchNorm2d(cout),
                qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
                torch.nn.MaxPool2d(2)]

    return torch.nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        *conv_block(1, 16, 2), *conv_block(16, 16, 4),
        torch.nn.Flatten(),
        qnn.QuantLinear(64, 10, weight_bit_width=4, bias=True, bias_quant=Int32Bias))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", type=Path, default=Path("digits_brevitas.onnx"))
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args(argv)

    from compiler.frontend.data import digits
    from compiler.frontend.train import deterministic, fit
    train, test = digits()
    with warnings.catch_warnings():          # optional kernels Brevitas looks for
        warnings.simplefilter("ignore")
        from brevitas.export import export_qonnx
    with deterministic(0):
        net = fit(brevitas_digits_cnn(), train.x, train.y, epochs=args.epochs, lr=1e-2)
    net.eval()
    with torch.no_grad():
        logits = net(test.x)
    accuracy = float((getattr(logits, "value", logits).argmax(1) == test.y).float().mean())
    print(f"Brevitas model: {accuracy:.1%} on the {len(test)} test digits")
    logging.getLogger("torch").setLevel(logging.ERROR)    # torchvision is not needed
    with warnings.catch_warnings():          # the exporter's notes on torch.export
        warnings.simplefilter("ignore")
        export_qonnx(net, test.x[:1], export_path=str(args.out), verbose=False)
    print(f"wrote {args.out} (QONNX)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
