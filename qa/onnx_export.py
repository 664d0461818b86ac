"""Export a sentence-transformers model folder to ONNX (and int8), once; run as a child process.

    python -m qa.onnx_export MODEL_DIR OUT_DIR [--precision fp32|int8|int8-v1]

torch's own exporter (`torch.onnx.export`) writes the transformer (token ids in, last hidden state
out); ONNX Runtime's `quantize_dynamic` makes the int8 variants (weights int8 per channel,
activations quantized on the fly, one scale per tensor and model run). Pooling and normalization
stay in qa.onnx_embedding, as the model's own config (1_Pooling, 2_Normalize) says. The folder is
written under a temporary name and renamed when complete, so a crash never leaves a half export in
the cache.

int8 is smoothed first (`smooth`, after SmoothQuant, Xiao et al. 2022): a few input channels of a
transformer's layers carry activations 10-16x larger than the rest, and with one scale per tensor
they leave the other channels a few int8 steps. Each weight MatMul's input is divided by a
per-channel factor and the weight's rows multiplied by it (the same product in exact arithmetic),
so the activations quantize evenly. The factors come from the activations of a short bundled text
(qa/calibration.txt). int8-v1 is the plain quantization of indexes built before smoothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# SmoothQuant's migration strength: the share of an input channel's range moved into the weights. all-MiniLM-L6-v2,
# mean cosine to fp32 of 800 paragraphs / the questions, squad-dev and scifact-train (benchmarks/README.md,
# "Issue 16, seventeenth session"): plain int8 0.9944 / 0.9943 and 0.9945 / 0.9935; alpha 0.7: 0.9972 / 0.9980 and 0.9971 / 0.9977;
# 0.8: 0.9963 / 0.9980 and 0.9965 / 0.9978; 0.9: 0.9945 / 0.9983.
ALPHA = 0.7
CALIBRATION = Path(__file__).with_name("calibration.txt")
COPIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def _check_config(model: Path) -> int:
    """The model's max_seq_length, after checking it is mean-pooled and normalized as qa.onnx_embedding does."""
    modules = json.loads((model / "modules.json").read_text()) if (model / "modules.json").exists() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if modules and kinds[:2] != ["Transformer", "Pooling"]:
        raise SystemExit(f"unsupported sentence-transformers modules {kinds}")
    pooling = next((model / m["path"] / "config.json" for m in modules if m["type"].endswith("Pooling")), None)
    if pooling and pooling.exists():
        cfg = json.loads(pooling.read_text())
        if not cfg.get("pooling_mode_mean_tokens") or any(
                v for k, v in cfg.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"):
            raise SystemExit(f"only mean pooling is supported, not {cfg}")
    st = model / "sentence_bert_config.json"
    return int(json.loads(st.read_text()).get("max_seq_length", 256)) if st.exists() else 256


def export(model: Path, out: Path, precision: str) -> None:
    """Write OUT/model.onnx, the tokenizer files and qa-export.json."""
    import torch
    from transformers import AutoModel

    max_len = _check_config(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        net = AutoModel.from_pretrained(str(model)).eval()

        class Hidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
                return self.net(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

        ids = torch.ones((2, 16), dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"last_hidden_state": {0: "batch", 1: "sequence"}}
        fp32 = tmp / ("model.onnx" if precision == "fp32" else "model-fp32.onnx")
        with torch.no_grad():
            torch.onnx.export(Hidden(), (ids, ids, torch.zeros_like(ids)), str(fp32), input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                              dynamo=False)
        if precision in ("int8", "int8-v1"):
            from onnxruntime.quantization import QuantType, quantize_dynamic

            if precision == "int8":
                smooth(fp32, model / "tokenizer.json", max_len)
            quantize_dynamic(str(fp32), str(tmp / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
            fp32.unlink()
        for name in COPIED:
            if (model / name).exists():
                shutil.copy2(model / name, tmp / name)
        special = json.loads((model / "special_tokens_map.json").read_text()) if (
            model / "special_tokens_map.json").exists() else {}
        pad = special.get("pad_token", "[PAD]")
        meta = {"model": model.name if model.name != "model" else model.parent.name, "source": str(model),
                "precision": precision, "max_seq_length": max_len, "pooling": "mean", "normalize": True,
                "pad_token": pad["content"] if isinstance(pad, dict) else pad, "torch": torch.__version__}
        (tmp / "qa-export.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def calibration_texts(path: Path = CALIBRATION) -> list[str]:
    """The calibration text's lines, alone and joined 4, 8 and 16 at a time and all together: the activation
    peaks grow with a text's length, and documents are embedded in chunks of up to 256 word pieces."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines + [" ".join(lines[i:i + k]) for k in (4, 8, 16) for i in range(0, len(lines), k)] + [" ".join(lines)]


def smooth(path: Path, tokenizer: Path, max_len: int, alpha: float = ALPHA) -> None:
    """Rewrite the fp32 ONNX model at `path` so that int8 quantizes its activations evenly (see the module's
    docstring): for every MatMul by a weight, input / s and weight rows * s, where
    s = max|input channel| ** alpha / max|weight row| ** (1 - alpha) over the calibration texts."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from tokenizers import Tokenizer

    m = onnx.load(str(path))
    weights = {w.name: w for w in m.graph.initializer}
    users: dict[str, list[Any]] = {}  # input tensor -> the weight MatMuls reading it (query, key, value share one)
    for node in m.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            users.setdefault(node.input[0], []).append(node)
    if not users:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    for x in users:
        probe.graph.output.append(helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    del probe
    tok = Tokenizer.from_file(str(tokenizer))
    tok.enable_truncation(max_len)
    tok.no_padding()
    names = list(users)
    peak = {x: np.zeros(0, dtype=np.float32) for x in names}
    for text in calibration_texts():
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        feed = {i.name: feed[i.name] for i in session.get_inputs()}
        for x, out in zip(names, session.run(names, feed)):
            a = np.abs(out.reshape(-1, out.shape[-1])).max(0)
            peak[x] = a if not peak[x].size else np.maximum(peak[x], a)
    for x, nodes in users.items():
        ws = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        if any(w.ndim != 2 or w.shape[0] != peak[x].size for w in ws):
            continue
        w_peak = np.max([np.abs(w).max(1) for w in ws], axis=0)
        s = (np.maximum(peak[x], 1e-5) ** alpha / np.maximum(w_peak, 1e-5) ** (1 - alpha)).astype(np.float32)
        inv, smoothed = f"{x}/smooth_scale", f"{x}/smoothed"
        m.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv))
        m.graph.node.insert(list(m.graph.node).index(nodes[0]), helper.make_node("Mul", [x, inv], [smoothed]))
        for n, w in zip(nodes, ws):
            weights[n.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), n.input[1]))
            n.input[0] = smoothed
    onnx.save(m, str(path))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m qa.onnx_export", description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="sentence-transformers model folder")
    ap.add_argument("out", type=Path, help="folder to write")
    ap.add_argument("--precision", choices=("fp32", "int8", "int8-v1"), default="fp32")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    export(args.model, args.out, args.precision)


if __name__ == "__main__":
    main()
