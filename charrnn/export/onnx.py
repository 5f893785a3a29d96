"""The model's one-character step as an ONNX graph, built node by node from the checkpoint's weights.

    ids [N] int64 ──Gather(embed)──► x [N, E]
    for each layer l:  h[l], c[l] ──Gather(axis 0)──► [N, H]
        LSTM   gates = [x; h] W^T + b -> i, f, g, o      c' = s(f) c + s(i) tanh(g)   h' = s(o) tanh(c')
        GRU    gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh  r, z = s(gi_rz + gh_rz)   (s: sigmoid)
               n = tanh(gi_n + r gh_n)                   h' = n + z (h - n)
        RNN    h' = tanh([x; h] W^T + b)
        x = h'
    logits [N, V] = x W_head^T + b_head;  h_next, c_next [L, N, H] = the h', c' stacked

The gate math is PyTorch's (the same as charrnn.sampling.blas); N is a symbolic dimension
("streams"). Built with `onnx.helper` rather than `torch.onnx`: torch 2.x's exporter needs
onnxscript, and a hand-built graph has exactly these nodes, whatever the torch version.
The vocabulary, the config and the sampling rule travel in the model's metadata_props.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.errors import CharRNNError, ConfigError
from charrnn.files import display_path, write_output
from charrnn.model import GATES, ModelConfig, count_parameters
from charrnn.version import __version__

if TYPE_CHECKING:
    from onnx import ModelProto

OPSET = 17  # onnxruntime >= 1.12, onnx.js / onnxruntime-web, TensorRT 8.5, OpenVINO all run it
IR_VERSION = 8  # the IR version that came with opset 17, so older runtimes read the file
MAX_BYTES = 2**31 - 2**24  # protobuf's 2 GB limit on one message, less room for the graph itself
MISSING = "charrnn export --format onnx needs onnx: pip install 'charrnn[export]'"
STREAMS = "streams"

# How charrnn turns logits into a character (charrnn.sampling.rng and .pick), for clients to repeat.
SAMPLING = (
    "SplitMix64 counter uniforms, inverse-CDF pick: u_t = (SplitMix64 output t of the seed >> 40) / 2^24; "
    "in float32, w = exp((logits - max) / temperature), cdf = cumsum(w), next id = count(cdf <= u_t * cdf[-1]); "
    "temperature 0: argmax. Details in charrnn's docs/export.md"
)


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise CharRNNError(MISSING) from None
    return onnx


def export_onnx(checkpoint_path: str, out: str) -> str:
    """Write the step graph of the checkpoint at `checkpoint_path` to `out`; a one-line summary."""
    onnx = require_onnx()
    from charrnn.store.checkpoint import load_checkpoint, load_model

    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint.config
    if count_parameters(config) * 4 > MAX_BYTES:
        raise ConfigError(f"{checkpoint_path}: the model is over 2 GB, more than one ONNX file holds")
    model = load_model(checkpoint)
    weights = {name: tensor.detach().float().cpu().numpy() for name, tensor in model.state_dict().items()}
    proto = step_graph(weights, config, checkpoint.vocab.chars)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    write_output(out, data, "ONNX model")
    shape = f"{config.num_layers}x{config.hidden_size} {config.cell.upper()}"
    return f"wrote {display_path(out)}: {shape}, vocab {config.vocab_size}, {size_text(len(data))}"


def size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def metadata(config: ModelConfig, chars: str) -> dict[str, str]:
    """The model's metadata_props: everything a client needs besides the graph."""
    shape = {name: getattr(config, name) for name in ("cell", "num_layers", "hidden_size", "embed_size", "vocab_size")}
    return {
        "charrnn.vocab": json.dumps(chars),
        "charrnn.model_config": json.dumps(shape),
        "charrnn.version": __version__,
        "charrnn.sampling": SAMPLING,
    }


class Graph:
    """Nodes and initializers, appended in order; every value gets a fresh name."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def const(self, name: str, array: np.ndarray) -> str:
        contiguous = np.require(array, requirements="C")  # (np.ascontiguousarray turns 0-d into 1-d)
        self.initializers.append(self.numpy_helper.from_array(contiguous, name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, out: str | None = None, **attrs: Any) -> Any:
        """Add one node; its output name (or names, when `outputs` > 1)."""
        names = []
        for _ in range(outputs):
            self.count += 1
            names.append(f"{op_type.lower()}_{self.count}")
        if out is not None:
            names = [out]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, name: str, out: str | None = None) -> str:
        """x W^T + b, with W^T stored as [in, out]."""
        product = self.op("MatMul", x, self.const(f"{name}.weight_t", weight.T))
        return str(self.op("Add", product, self.const(f"{name}.bias", bias), out=out))

    def split(self, x: str, sizes: list[int], name: str) -> list[str]:
        """Columns of x [N, sum(sizes)] in blocks."""
        return list(self.op("Split", x, self.const(name, np.array(sizes, dtype=np.int64)), outputs=len(sizes), axis=1))


def step_graph(weights: dict[str, np.ndarray], config: ModelConfig, chars: str) -> ModelProto:
    """The step as an ONNX model (fp32 weights from a CharRNN state dict)."""
    from onnx import TensorProto, helper

    g = Graph()
    cell, layers, hidden = config.cell, config.num_layers, config.hidden_size
    state_names = ["h", "c"] if cell == "lstm" else ["h"]
    state_shape: list[str | int] = [layers, STREAMS, hidden]

    x = g.op("Gather", g.const("embed.weight", weights["embed.weight"]), "ids", axis=0)  # [N, E]
    h_next, c_next = [], []
    for layer in range(layers):
        w_ih, w_hh = weights[f"rnn.weight_ih_l{layer}"], weights[f"rnn.weight_hh_l{layer}"]
        b_ih, b_hh = weights[f"rnn.bias_ih_l{layer}"], weights[f"rnn.bias_hh_l{layer}"]
        index = g.const(f"layer{layer}.index", np.array(layer, dtype=np.int64))
        h = g.op("Gather", "h", index, axis=0)  # [N, H]
        name = f"layer{layer}"
        if cell == "gru":
            gi = g.linear(x, w_ih, b_ih, f"{name}.ih")
            gh = g.linear(h, w_hh, b_hh, f"{name}.hh")
            gi_rz, gi_n = g.split(gi, [2 * hidden, hidden], f"{name}.split_rzn")
            gh_rz, gh_n = g.split(gh, [2 * hidden, hidden], f"{name}.split_rzn_h")
            r, z = g.split(g.op("Sigmoid", g.op("Add", gi_rz, gh_rz)), [hidden, hidden], f"{name}.split_rz")
            n = g.op("Tanh", g.op("Add", gi_n, g.op("Mul", r, gh_n)))
            h = g.op("Add", n, g.op("Mul", z, g.op("Sub", h, n)))  # (1 - z) n + z h
        else:
            both = g.op("Concat", x, h, axis=1)  # [N, in + H]
            gates = g.linear(both, np.concatenate([w_ih, w_hh], axis=1), b_ih + b_hh, f"{name}.cat")
            if cell == "lstm":
                c = g.op("Gather", "c", index, axis=0)
                i, f, gg, o = g.split(gates, [hidden] * GATES[cell], f"{name}.split_ifgo")
                c = g.op("Add", g.op("Mul", g.op("Sigmoid", f), c), g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", gg)))
                h = g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c))
                c_next.append(c)
            else:
                h = g.op("Tanh", gates)
        h_next.append(h)
        x = h
    g.linear(x, weights["head.weight"], weights["head.bias"], "head", out="logits")

    axis0 = g.const("axis0", np.array([0], dtype=np.int64))
    for out, parts in (("h_next", h_next), ("c_next", c_next)):
        if parts:
            g.op("Concat", *(g.op("Unsqueeze", part, axis0) for part in parts), out=out, axis=0)

    float_state = [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in state_names]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [STREAMS]), *float_state]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [STREAMS, config.vocab_size])]
    outputs += [helper.make_tensor_value_info(f"{n}_next", TensorProto.FLOAT, state_shape) for n in state_names]
    graph = helper.make_graph(g.nodes, f"charrnn_{cell}_step", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="charrnn",
        producer_version=__version__,
        doc_string=f"charrnn {cell.upper()} {layers}x{hidden}: one character per stream per call (docs/export.md)",
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, metadata(config, chars))
    return model
