"""Running a model at fp32, bf16 or dynamic int8 on CPU, through PyTorch or ONNX Runtime: the one place where a
precision is applied.

The benchmark (bench.py), the Playground and `evaluate` (inference.py) and export (export.py) all go through
`prepare_for_precision`, so the precision that was measured fast is exactly the one that is served and scored.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distill_core.errors import UserError

if TYPE_CHECKING:  # torch loads inside the functions: the pages read PRECISIONS and PRECISION_HELP without it
    import torch

__all__ = ["PRECISIONS", "PRECISION_HELP", "TORCH_PRECISIONS", "ContextFactory", "prepare_for_precision"]

TORCH_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
# ONNX Runtime at fp32 and dynamic int8 (onnx_serving.py): the model exported once, cached, served by ORT.
PRECISIONS: tuple[str, ...] = (*TORCH_PRECISIONS, "ort-fp32", "ort-int8")
PRECISION_HELP: dict[str, str] = {
    "fp32": "PyTorch, float32 weights: the reference",
    "bf16": "PyTorch, weights cast to bfloat16: faster only on CPUs with AMX/AVX512-BF16",
    "int8": "PyTorch, dynamic int8 quantisation of the linear layers",
    "ort-fp32": "ONNX Runtime, float32: exported to ONNX once per model (cached); fastest at batch 1 here",
    "ort-int8": "ONNX Runtime, dynamic int8 (per-channel weights) of the exported model",
}

ContextFactory = Callable[[], contextlib.AbstractContextManager[Any]]


def prepare_for_precision(model: torch.nn.Module, precision: str, *, fingerprint: str | None = None
                          ) -> tuple[Any, ContextFactory]:
    """Return ``(model, context_factory)`` for running ``model`` at ``precision`` on CPU.

    Run every forward pass as ``with context_factory(): model(**inputs)`` under ``torch.inference_mode()``. The
    benchmark, the Playground, evaluation and export all go through this function, so the precision that was
    measured fast is exactly the one that is served and scored. The returned model is in eval mode and its
    logits are float32 whatever the precision.

    - ``fp32``: the model itself (put in eval mode; not copied).
    - ``bf16``: a deep copy with every weight cast to bfloat16. We also tried ``torch.autocast("cpu",
      dtype=torch.bfloat16)`` around the fp32 model; casting the model was faster at every shape we measured
      (MiniLM-L6, 2 threads, AVX512-BF16/AMX Xeon: 1x32 8.0 vs 13.1 ms, 8x64 26-29 vs 35-43 ms, 64x150 532 vs
      613 ms; fp32 14.2 / 68-75 / 1595 ms) because autocast re-casts every fp32 weight to bf16 on each call
      (its cast cache lives only inside one autocast region), while a cast model reads half the bytes and casts
      nothing. Autocast on top of a cast model brought nothing. The cost is that LayerNorm parameters and the
      residual stream are also bf16 (8-bit mantissa) rather than fp32, so accuracy must be measured.
      A forward hook casts the logits back to float32 so callers can use ``.numpy()`` and compare with fp32.
      On CPUs without native bf16 (no AVX512-BF16/AMX) bf16 is emulated and usually slower than fp32.
    - ``int8``: dynamic quantization of every ``nn.Linear`` (weights int8 per tensor, activations quantized
      on the fly per batch), on a copy. Embeddings, LayerNorm and attention score matmuls stay fp32.
    - ``ort-fp32`` / ``ort-int8``: the model exported to ONNX (cached by ``fingerprint``, the weights' hash from
      ``models.model_fingerprint``; default: a hash of the state dict) and run by ONNX Runtime, fp32 or dynamic
      int8; an ``onnx_serving.OrtClassifier`` that takes the same inputs and returns ``.logits`` likewise.

    Accuracy must be measured for each precision: bf16 and int8 change the logits. A check on MiniLM-L6 with a
    linear head fitted on 1,500 AG News texts, scored on 1,000 test texts: fp32 84.0%, bf16 cast 83.5% (99.5%
    agreement with fp32), bf16 autocast 83.9% (99.7%), int8 81.4% (93.8%). Small students can lose points
    to int8; a speed-up only counts where the accuracy on the validation split holds.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision in ("ort-fp32", "ort-int8"):
        from distill_core.onnx_serving import prepare_ort

        return prepare_ort(model, precision, fingerprint=fingerprint), contextlib.nullcontext
    if precision == "fp32":
        return model.eval(), contextlib.nullcontext
    if precision == "bf16":
        import torch

        cast = copy.deepcopy(model).to(torch.bfloat16).eval()
        cast.register_forward_hook(_logits_to_float32)
        return cast, contextlib.nullcontext
    return _quantize_dynamic_int8(model), contextlib.nullcontext


def _logits_to_float32(module: torch.nn.Module, args: Any, output: Any) -> Any:
    import torch

    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor) and logits.dtype != torch.float32:
        output.logits = logits.float()  # ModelOutput keeps attribute and mapping views in sync
        return output
    if isinstance(output, torch.Tensor) and output.is_floating_point() and output.dtype != torch.float32:
        return output.float()
    return output


def _quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    import torch

    # torch 2.13 marks torch.ao.quantization deprecated in favour of torchao's quantize_, but torchao is not a
    # dependency here and quantize_dynamic still works (and is still the fast fbgemm/x86 path for Linear). The
    # warnings are silenced only around this call so they cannot hide anything else. inplace=False deep-copies,
    # so the caller's model (possibly shared through st.cache_resource) is left untouched.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.ao\.quantization is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", r".*quantized tensor creation functions.*deprecated", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    return quantized.eval()
