"""Language models as two ONNX graphs for a board: prefill and decode with a key/value cache.

The network is any torch module with ``prefill(idx) -> (logits [1, T, V], cache)`` and
``decode(token [1, 1], cache) -> (logits [1, V], cache)``, the cache a tuple of ``(k, v)`` per layer,
each ``[1, heads_i, T, head_dim_i]`` (the ``gpt`` space's network; its number of positions is read
from ``model.config.context`` when it has one). Two files, opset 17, batch 1, legacy TorchScript
exporter (the ``torch.export`` one needs ``onnxscript``, not installed here):

- prefill: ``idx`` int64 ``[1, 'prompt']`` -> ``logits`` ``[1, 'prompt', V]`` and ``present_k_i`` /
  ``present_v_i`` ``[1, heads_i, 'prompt', head_dim_i]``;
- decode: ``token`` int64 ``[1, 1]`` and ``past_k_i`` / ``past_v_i`` ``[1, heads_i, 'past', head_dim_i]``
  -> ``logits`` ``[1, V]`` and ``present_k_i`` / ``present_v_i`` ``[1, heads_i, 'total', head_dim_i]``
  (``total`` = ``past`` + 1): a board builds its inputs from the declared shapes.

Each export is compared with PyTorch in onnxruntime (logits and cache, at two prompt or cache lengths,
decode over several steps fed its own cache), within 1e-4 x max(1, largest |logit|) as
:mod:`modnas.exporters.onnx`; :func:`export_lm_onnx` also decodes :data:`GREEDY_TOKENS` greedy tokens
with the graphs and with PyTorch and requires the same tokens. :class:`LMRuntime`,
:func:`generate_onnx`, :func:`lm_loss_onnx` need onnxruntime and numpy only (no torch).
INT8 (:func:`quantize_lm_int8`): onnxruntime's dynamic quantisation of the MatMuls with weights.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from modnas.exporters.result import ExportMismatch, ExportResult, read_sidecar, sha256_file, write_sidecar
from modnas.profilers.errors import BadInput

OPSET = 17
TOLERANCE = 1e-4
GREEDY_TOKENS = 64
DECODE_STEPS = 4  # decode steps compared with PyTorch, each fed the graph's own cache
TOKEN_INPUT = {"prefill": "idx", "decode": "token"}
WEIGHT_TYPES = ("qint8", "quint8")
DEFAULT_WEIGHT_TYPE = "qint8"  # see benchmarks/lm_export.py: within 0.05 nats of fp32 held out


def past_names(depth: int) -> list[str]:
    """Decode-graph cache inputs: ``past_k_0, past_v_0, past_k_1, ...``."""
    return [f"past_{kv}_{i}" for i in range(depth) for kv in ("k", "v")]


def present_names(depth: int) -> list[str]:
    """Cache outputs of both graphs: ``present_k_0, present_v_0, ...``."""
    return [f"present_{kv}_{i}" for i in range(depth) for kv in ("k", "v")]


# -- export (torch) -------------------------------------------------------------------------------------
def _context(model: Any) -> int | None:
    context = getattr(getattr(model, "config", None), "context", None)
    return int(context) if context else None


def _flat(cache: Any) -> tuple[Any, ...]:
    return tuple(t for kv in cache for t in kv)


def _pairs(flat: Sequence[Any]) -> tuple[tuple[Any, Any], ...]:
    return tuple((flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2))


def _wrappers(model: Any) -> tuple[Any, Any]:
    """The two graphs as modules with flat tensor inputs and outputs (what the ONNX exporter traces)."""
    import torch

    class Prefill(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
            logits, cache = self.net.prefill(idx)
            return (logits,) + _flat(cache)

    class Decode(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, token: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            logits, cache = self.net.decode(token, _pairs(past))
            return (logits,) + _flat(cache)

    return Prefill(model).eval(), Decode(model).eval()


def cache_layout(model: Any) -> tuple[list[tuple[int, int]], int]:
    """``[(heads_i, head_dim_i) per layer]`` and the vocabulary size, from a one-token prefill."""
    import torch

    with torch.no_grad():
        logits, cache = model.eval().prefill(torch.zeros(1, 1, dtype=torch.long))
    return [(int(k.shape[1]), int(k.shape[3])) for k, _ in cache], int(logits.shape[-1])


def _random_tokens(vocab: int, n: int, seed: int) -> Any:
    import torch

    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


def _session(path: str | Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _diff(got: Sequence[np.ndarray], want: Sequence[Any]) -> tuple[float, float]:
    """Largest |got - want| over the arrays, and the largest |want|."""
    diff = scale = 0.0
    for a, b in zip(got, want):
        b = np.asarray(b)
        if a.shape != b.shape:
            raise ExportMismatch(f"onnxruntime gives shape {list(a.shape)}, PyTorch {list(b.shape)}")
        if a.size:
            diff = max(diff, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
            scale = max(scale, float(np.max(np.abs(b))))
    return diff, scale


def _within(name: str, what: str, diff: float, scale: float, tolerance: float) -> None:
    # the rule of modnas.exporters.onnx: 1e-4 absolute for outputs up to 1, scaled with larger ones
    if not diff <= tolerance * max(1.0, scale):
        raise ExportMismatch(f"{name}: onnxruntime {what} differs from PyTorch by {diff:.3g} "
                             f"(> {tolerance:g} x max(1, |output| = {scale:.3g}))")


def _write_onnx(module: Any, args: tuple[Any, ...], path: Path, inputs: list[str], outputs: list[str],
                axes: dict[str, dict[int, str]]) -> Path:
    """Trace ``module`` to a temporary file beside ``path`` and check it with onnx.checker; the temp path."""
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # shape branches (prompt vs one token) are meant to be fixed by the trace
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, args, str(tmp), dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
        onnx.checker.check_model(onnx.load(str(tmp), load_external_data=False), full_check=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _finish(tmp: Path, path: Path, info: dict[str, Any], diff: float | None) -> ExportResult:
    os.replace(tmp, path)
    write_sidecar(path, info)
    return ExportResult(path=path, sha256=sha256_file(path), max_abs_diff=diff, meta=info)


def _base_meta(model: Any, graph: str, layers: list[tuple[int, int]], vocab: int) -> dict[str, Any]:
    import onnx
    import torch

    return {"format": "onnx", "graph": graph, "opset": OPSET, "batch": 1, "vocab_size": vocab,
            "context": _context(model), "layers": [list(x) for x in layers],
            "onnx_version": onnx.__version__, "torch_version": torch.__version__}


def export_lm_prefill(model: Any, path: str | Path, *, prompt: int = 128, check: bool = True, seed: int = 0,
                      tolerance: float = TOLERANCE, meta: dict[str, Any] | None = None) -> ExportResult:
    """The prefill graph (dynamic prompt length), traced at ``prompt`` tokens and checked against
    PyTorch at ``prompt`` and ``max(1, prompt // 3)`` tokens (logits and cache)."""
    import torch

    path = Path(path)
    layers, vocab = cache_layout(model)
    context = _context(model)
    if not 2 <= prompt <= (context or prompt):
        raise BadInput(f"prompt must be 2..{context or 'the context'} tokens, got {prompt}", param="prompt")
    prefill, _ = _wrappers(model)
    outputs = ["logits", *present_names(len(layers))]
    axes = {"idx": {1: "prompt"}, "logits": {1: "prompt"}, **{n: {2: "prompt"} for n in outputs[1:]}}
    tmp = _write_onnx(prefill, (_random_tokens(vocab, prompt, seed),), path, ["idx"], outputs, axes)
    info = {**_base_meta(model, "prefill", layers, vocab), "inputs": {"idx": [1, "prompt"]},
            "trace_prompt": prompt}
    diff = None
    try:
        if check:
            session = _session(tmp)
            diff = cache_diff = 0.0
            lengths = sorted({prompt, max(1, prompt // 3)})
            for n in lengths:
                idx = _random_tokens(vocab, n, seed + n)
                got = session.run(None, {"idx": idx.numpy()})
                with torch.no_grad():
                    want = prefill(idx)
                d, s = _diff(got[:1], [want[0].numpy()])
                _within(path.name, f"logits at {n} tokens", d, s, tolerance)
                dc, sc = _diff(got[1:], [t.numpy() for t in want[1:]])
                _within(path.name, f"cache at {n} tokens", dc, sc, tolerance)
                diff, cache_diff = max(diff, d), max(cache_diff, dc)
            info.update({"checked_prompts": lengths, "max_abs_diff": diff, "cache_max_abs_diff": cache_diff})
        return _finish(tmp, path, {**info, **(meta or {})}, diff)
    finally:
        tmp.unlink(missing_ok=True)


def export_lm_decode(model: Any, path: str | Path, *, past: int = 128, steps: int = DECODE_STEPS, check: bool = True,
                     seed: int = 0, tolerance: float = TOLERANCE, meta: dict[str, Any] | None = None) -> ExportResult:
    """The decode graph (dynamic cache length ``past``), traced with a cache of ``past`` tokens and
    checked against PyTorch for ``steps`` steps from caches of ``past`` and ``max(1, past // 3)`` tokens
    (each step fed the previous step's cache; logits every step, the cache at the end)."""
    import torch

    path = Path(path)
    layers, vocab = cache_layout(model)
    context = _context(model)
    if not 1 <= past or (context and past + steps > context):
        raise BadInput(f"past must be 1..{(context or past + steps) - steps} tokens (context {context}, "
                       f"{steps} steps checked), got {past}", param="past")
    prefill, decode = _wrappers(model)
    depth = len(layers)
    inputs, outputs = ["token", *past_names(depth)], ["logits", *present_names(depth)]
    axes = {**{n: {2: "past"} for n in inputs[1:]}, **{n: {2: "total"} for n in outputs[1:]}}
    with torch.no_grad():
        cache = prefill(_random_tokens(vocab, past, seed))[1:]
    tmp = _write_onnx(decode, (_random_tokens(vocab, 1, seed + 1), *cache), path, inputs, outputs, axes)
    info = {**_base_meta(model, "decode", layers, vocab),
            "inputs": {"token": [1, 1], **{n: [1, layers[i // 2][0], "past", layers[i // 2][1]]
                                           for i, n in enumerate(inputs[1:])}},
            "trace_past": past}
    diff = None
    try:
        if check:
            session = _session(tmp)
            diff = cache_diff = 0.0
            lengths = sorted({past, max(1, past // 3)})
            for n in lengths:
                with torch.no_grad():
                    torch_cache = prefill(_random_tokens(vocab, n, seed + n))[1:]
                ort_cache = [t.numpy() for t in torch_cache]
                tokens = _random_tokens(vocab, steps, seed + 2 * n)
                for step in range(steps):
                    token = tokens[:, step:step + 1]
                    got = session.run(None, {"token": token.numpy(), **dict(zip(inputs[1:], ort_cache))})
                    with torch.no_grad():
                        want = decode(token, *torch_cache)
                    d, s = _diff(got[:1], [want[0].numpy()])
                    _within(path.name, f"logits (cache {n + step})", d, s, tolerance)
                    diff = max(diff, d)
                    ort_cache, torch_cache = got[1:], want[1:]
                dc, sc = _diff(ort_cache, [t.numpy() for t in torch_cache])
                _within(path.name, f"cache after {steps} steps", dc, sc, tolerance)
                cache_diff = max(cache_diff, dc)
            info.update({"checked_past": lengths, "checked_steps": steps, "max_abs_diff": diff,
                         "cache_max_abs_diff": cache_diff})
        return _finish(tmp, path, {**info, **(meta or {})}, diff)
    finally:
        tmp.unlink(missing_ok=True)


def export_lm_onnx(model: Any, out_dir: str | Path, stem: str, *, prompt: int = 128, past: int = 128,
                   greedy_tokens: int = GREEDY_TOKENS, check: bool = True, seed: int = 0,
                   meta: dict[str, Any] | None = None) -> dict[str, ExportResult]:
    """Both graphs as ``<stem>-prefill.onnx`` and ``<stem>-decode.onnx`` in ``out_dir``, keyed
    ``onnx_prefill`` and ``onnx`` (the decode graph, the one ``latency`` measures); with ``check``, also
    ``greedy_tokens`` greedy tokens from an 8-token prompt must equal PyTorch's (recorded in the decode
    graph's sidecar as ``greedy_tokens_equal``)."""

    out = Path(out_dir)
    context = _context(model)
    if context:
        past = min(past, context - DECODE_STEPS)
    pre = export_lm_prefill(model, out / f"{stem}-prefill.onnx", prompt=prompt, check=check, seed=seed, meta=meta)
    dec = export_lm_decode(model, out / f"{stem}-decode.onnx", past=past, check=check, seed=seed, meta=meta)
    if check and greedy_tokens > 0:
        _, vocab = cache_layout(model)
        prompt_ids = _random_tokens(vocab, 8, seed + 3)[0].tolist()
        want = greedy_torch(model, prompt_ids, greedy_tokens)
        got = generate_onnx(pre.path, dec.path, prompt_ids, greedy_tokens, context=context)
        if got != want:
            first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
            raise ExportMismatch(f"{dec.path.name}: greedy decoding with the ONNX graphs departs from PyTorch "
                                 f"at token {first} of {greedy_tokens}")
        dec.meta["greedy_tokens_equal"] = greedy_tokens
        write_sidecar(dec.path, dec.meta)
    return {"onnx_prefill": pre, "onnx": dec}


def greedy_torch(model: Any, prompt: Sequence[int], n_tokens: int) -> list[int]:
    """PyTorch's greedy continuation of ``prompt`` (new tokens only), by :func:`greedy`'s rule."""
    import torch

    def prefill(ids: list[int]) -> tuple[np.ndarray, Any]:
        logits, cache = model.prefill(torch.tensor([ids], dtype=torch.long))
        return logits[0, -1].numpy(), cache

    def decode(token: int, cache: Any) -> tuple[np.ndarray, Any]:
        logits, cache = model.decode(torch.tensor([[token]], dtype=torch.long), cache)
        return logits[0].numpy(), cache

    with torch.no_grad():
        return greedy(prefill, decode, prompt, n_tokens, _context(model.eval()))


# -- running the graphs (onnxruntime and numpy only) ------------------------------------------------------
def greedy(prefill: Callable[[list[int]], tuple[np.ndarray, Any]], decode: Callable[[int, Any], tuple[np.ndarray, Any]],
           prompt: Sequence[int], n_tokens: int, context: int | None) -> list[int]:
    """Greedy decoding by the rule of the space's ``generate``: prefill the last ``context`` tokens,
    then decode with the cache while it holds fewer than ``context`` tokens, else prefill again.
    ``prefill(ids)`` and ``decode(token, cache)`` return the last position's logits and the cache."""
    out = [int(t) for t in prompt]
    if not out:
        raise BadInput("the prompt needs at least one token", param="prompt")
    logits: np.ndarray | None = None
    cache: Any = None
    length = 0
    for step in range(n_tokens):
        if logits is None:
            window = out[-context:] if context else out
            logits, cache = prefill(window)
            length = len(window)
        nxt = int(np.argmax(logits))
        out.append(nxt)
        if step + 1 == n_tokens:
            break
        if context is None or length < context:
            logits, cache = decode(nxt, cache)
            length += 1
        else:
            logits = None
    return out[len(prompt):]


class LMRuntime:
    """The prefill and/or decode graph in onnxruntime on the CPU (``threads`` intra-op threads)."""

    def __init__(self, prefill: str | Path | None = None, decode: str | Path | None = None, threads: int = 1) -> None:
        for p in (prefill, decode):
            if p is not None and not Path(p).is_file():
                raise BadInput(f"ONNX file not found: {p}")
        self.prefill_session = _session(prefill, threads) if prefill else None
        self.decode_session = _session(decode, threads) if decode else None
        ref = self.prefill_session or self.decode_session
        if ref is None:
            raise BadInput("give the prefill graph, the decode graph or both")
        self.vocab_size = int(ref.get_outputs()[0].shape[-1])
        self.past = [i.name for i in self.decode_session.get_inputs()[1:]] if self.decode_session else []
        meta = read_sidecar(decode or prefill)  # type: ignore[arg-type]
        self.context: int | None = meta.get("context")

    def prefill(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits ``[1, T, V]`` of a prompt and its cache (``present_*`` in order)."""
        if self.prefill_session is None:
            raise BadInput("this runtime has no prefill graph")
        idx = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        out = self.prefill_session.run(None, {"idx": idx})
        return out[0], out[1:]

    def decode(self, token: int, cache: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits ``[1, V]`` after ``token`` and the cache one position longer."""
        if self.decode_session is None:
            raise BadInput("this runtime has no decode graph")
        feed = {"token": np.array([[token]], dtype=np.int64), **dict(zip(self.past, cache))}
        out = self.decode_session.run(None, feed)
        return out[0], out[1:]

    def generate(self, prompt: Sequence[int], n_tokens: int, context: int | None = None) -> list[int]:
        """Greedy continuation (new tokens only), the cache kept between decode steps."""
        def last(ids: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
            logits, cache = self.prefill(ids)
            return logits[0, -1], cache

        def step(token: int, cache: Any) -> tuple[np.ndarray, list[np.ndarray]]:
            logits, cache = self.decode(token, cache)
            return logits[0], cache

        return greedy(last, step, prompt, n_tokens, context or self.context)


def generate_onnx(prefill: str | Path, decode: str | Path, prompt: Sequence[int], n_tokens: int, *,
                  context: int | None = None, threads: int = 1) -> list[int]:
    """Greedy tokens after ``prompt`` with the two graphs (``context``: the sidecar's by default)."""
    return LMRuntime(prefill, decode, threads).generate(prompt, n_tokens, context)


def nll_sum(logits: np.ndarray, targets: np.ndarray) -> float:
    """Summed cross-entropy (nats) of ``logits [T, V]`` against ``targets [T]``, in float64."""
    z = logits.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=-1))
    return float(np.sum(lse - z[np.arange(len(targets)), targets]))


def check_windows(x: Any, y: Any, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Token windows ``x`` and next-token targets ``y`` as int64 ``[N, T]`` arrays within the vocabulary."""
    xs, ys = np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64)
    if xs.ndim != 2 or xs.shape != ys.shape or xs.size == 0:
        raise BadInput(f"windows and targets must be two equal [N, T] arrays, "
                       f"got {list(xs.shape)} and {list(ys.shape)}")
    if xs.min() < 0 or ys.min() < 0 or max(xs.max(), ys.max()) >= vocab:
        raise BadInput(f"token ids must lie in 0..{vocab - 1}")
    return xs, ys


def lm_loss_onnx(prefill: str | Path, x: Any, y: Any, *, threads: int = 1) -> float:
    """Mean next-token cross-entropy (nats per token) of a prefill graph (fp32 or INT8) over token
    windows ``x`` ``[N, T]`` with targets ``y`` (e.g. the held-out windows of the checkpoint's text)."""
    runtime = LMRuntime(prefill, threads=threads)
    xs, ys = check_windows(x, y, runtime.vocab_size)
    total = 0.0
    for window, target in zip(xs, ys):
        logits, _ = runtime.prefill(window)
        total += nll_sum(logits[0], target)
    return total / ys.size


# -- INT8 ----------------------------------------------------------------------------------------------
def quantize_lm_int8(onnx_path: str | Path, out_path: str | Path | None = None, *,
                     weight_type: str = DEFAULT_WEIGHT_TYPE, per_channel: bool = False,
                     meta: dict[str, Any] | None = None) -> ExportResult:
    """Dynamic INT8 of a prefill or decode graph with onnxruntime: the MatMuls with a weight (attention
    projections, MLP, output layer) become ``MatMulInteger`` on 8-bit weights and activations quantised
    at run time (uint8); attention's activation-by-activation MatMuls stay fp32. ``max_abs_diff`` is
    the largest logit difference to the fp32 graph on a random input."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BadInput(f"ONNX file not found: {onnx_path}")
    if weight_type not in WEIGHT_TYPES:
        raise BadInput(f"weight_type: one of {', '.join(WEIGHT_TYPES)}, got {weight_type!r}", param="weight_type")
    out = Path(out_path) if out_path else onnx_path.with_name(onnx_path.stem + "-int8.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    qtype = QuantType.QInt8 if weight_type == "qint8" else QuantType.QUInt8
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out.parent) as tmpdir:
        staged = Path(tmpdir) / "int8.onnx"
        # no pre-processing: its graph optimisation fuses the linear layers into Gemm, which dynamic
        # quantisation leaves in fp32; silence onnxruntime's warning that advises it
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))
        try:
            quantize_dynamic(str(onnx_path), str(staged), weight_type=qtype, per_channel=per_channel,
                             op_types_to_quantize=["MatMul"])
        finally:
            root.setLevel(level)
        proto = onnx.load(str(staged))
        onnx.checker.check_model(proto, full_check=True)
        quantized = sum(n.op_type == "MatMulInteger" for n in proto.graph.node)
        if quantized == 0:
            raise BadInput(f"{onnx_path.name}: no MatMul with weights to quantise")
        os.replace(staged, out)
    diff = _int8_diff(onnx_path, out)
    info = {**read_sidecar(onnx_path), "precision": "int8", "quantization": "dynamic", "weight_type": weight_type,
            "weight_quant": "per-channel" if per_channel else "per-tensor", "activations": "uint8, per run",
            "quantized_matmuls": quantized, "fp32_sha256": sha256_file(onnx_path),
            "max_abs_diff_vs_fp32": diff, **(meta or {})}
    info.pop("max_abs_diff", None)
    info.pop("cache_max_abs_diff", None)
    write_sidecar(out, info)
    return ExportResult(path=out, sha256=sha256_file(out), max_abs_diff=diff, meta=info)


def _int8_diff(fp32: Path, int8: Path, seed: int = 0) -> float:
    """Largest logit difference between the two graphs on one random input (16 tokens or cache)."""
    a, b = _session(fp32), _session(int8)
    rng = np.random.default_rng(seed)
    vocab = int(a.get_outputs()[0].shape[-1])
    feed: dict[str, np.ndarray] = {}
    for inp in a.get_inputs():
        if inp.name in TOKEN_INPUT.values():
            feed[inp.name] = rng.integers(0, vocab, size=(1, 16 if inp.name == "idx" else 1)).astype(np.int64)
        else:
            shape = [d if isinstance(d, int) else 16 for d in inp.shape]
            feed[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return float(np.max(np.abs(a.run(["logits"], feed)[0] - b.run(["logits"], feed)[0])))


__all__ = ["DEFAULT_WEIGHT_TYPE", "GREEDY_TOKENS", "LMRuntime", "OPSET", "TOLERANCE", "cache_layout", "check_windows",
           "export_lm_decode", "export_lm_onnx", "export_lm_prefill", "generate_onnx", "greedy", "greedy_torch",
           "lm_loss_onnx", "nll_sum", "past_names", "present_names", "quantize_lm_int8"]
