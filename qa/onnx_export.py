"""Export a sentence-transformers model folder to ONNX (and int8), once; run as a child process.

    python -m qa.onnx_export MODEL_DIR OUT_DIR [--precision fp32|int8]

torch's own exporter (`torch.onnx.export`) writes the transformer (token ids in, last hidden state
out); ONNX Runtime's `quantize_dynamic` makes the int8 variant (weights int8 per channel,
activations quantized on the fly). Pooling and normalization stay in qa.onnx_embedding, as the
model's own config (1_Pooling, 2_Normalize) says. The folder is written under a temporary name
and renamed when complete, so a crash never leaves a half export in the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

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
        if precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m qa.onnx_export", description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="sentence-transformers model folder")
    ap.add_argument("out", type=Path, help="folder to write")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    export(args.model, args.out, args.precision)


if __name__ == "__main__":
    main()
