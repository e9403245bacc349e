"""Language models' jobs (spaces whose ``inputs`` are ``"tokens"``, e.g. ``gpt``): ``modnas train``,
``modnas export`` and ``modnas sample`` for them.

:mod:`modnas.toolkit.workflow.training` and :mod:`modnas.toolkit.workflow.exporting` hand a token
space's command to :func:`train_lm_arch` and :func:`export_lm_arch`; ``modnas sample`` calls
:func:`sample_lm`. Everything a command needs is read and checked before a file is written, so bad
input (one ``BadInput`` line naming its parameter) leaves nothing behind.

``run`` for a language model: a supernet checkpoint of
:func:`modnas.toolkit.spaces.gpt.supernet.train_supernet` (its ``checkpoint.safetensors`` or the
directory holding it), or a gpt search run carrying one (:mod:`modnas.toolkit.search.lm_run`, with a
copy of its text's held-out split for the losses of exports); the architecture's slice of it starts
training, or is what ``export`` and ``sample`` use. A search-run directory without one is refused in one line.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc, internal

LM_FORMATS = ("onnx", "tvm")  # what a language model exports to so far
DEFAULT_PROMPT = "\n"
DEFAULT_SAMPLE_TOKENS = 200


# -- results ---------------------------------------------------------------------------------------
@dataclass
class LMLoss(JsonDoc):
    """Cross-entropy in nats per token on the training text and on its held-out last 10 %."""

    train: float
    heldout: float


@dataclass
class LMTrainResult(JsonDoc):
    """``modnas train --space gpt``: the checkpoint, the steps it holds and its losses."""

    arch: str
    checkpoint: str
    steps: int
    seconds: float
    loss: LMLoss
    initial_weights: str = internal("scratch")
    context: int = internal(0)


@dataclass
class SampleResult(JsonDoc):
    """``modnas sample``: the generated text (new tokens only, the prompt not repeated), the number of
    new tokens and how fast they came (tokens per second of generation, prompt included in the time)."""

    text: str
    tokens: int
    tokens_per_s: float
    runtime: str = internal("pytorch")


# -- shared checks -----------------------------------------------------------------------------------
def _space(space: Any) -> Any:
    if getattr(space, "inputs", "images") != "tokens":
        raise BadInput(f"`space` {space.name}: its networks take {space.inputs}; this command is for language "
                       "models (e.g. --space gpt)", param="space")
    return space


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"`out` {out}: not a directory", param="out")


def supernet_checkpoint(run: str | Path) -> Path:
    """The supernet checkpoint ``run`` names (the file, or a directory holding ``checkpoint.safetensors``)."""
    from modnas.toolkit.spaces.gpt.train import CHECKPOINT_NAME

    path = Path(run).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file() and not (path / CHECKPOINT_NAME).is_file():
            raise BadInput(f"`run` {run}: a search run without a supernet checkpoint (gpt runs of "
                           "`default_run --space gpt` carry one); give a gpt supernet checkpoint "
                           "(train_supernet's checkpoint.safetensors)", param="run")
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise BadInput(f"`run` {run}: no gpt supernet checkpoint there", param="run")
    return path


def subnet_of_run(run: str | Path, arch: str) -> tuple[Any, Any, dict[str, Any], str]:
    """The architecture's slice of a supernet checkpoint: model, vocabulary, the checkpoint's metadata
    and where the weights came from."""
    from modnas.toolkit.spaces.gpt.supernet import load_supernet_checkpoint

    path = supernet_checkpoint(run)
    try:
        supernet, vocab, meta = load_supernet_checkpoint(path)
    except BadInput as err:
        raise BadInput(f"`run` {err}", param="run") from None
    return supernet.subnet(arch), vocab, meta, f"supernet:{path.resolve()}"


def _weights(arch: str, weights: str | None, run: str | None
             ) -> tuple[Any, Any, dict[str, Any] | None, str]:
    """(model, vocabulary or None, checkpoint metadata with ``weights`` else None, tag)."""
    from modnas.toolkit.spaces.gpt.train import load_lm

    if weights is not None and run is not None:
        raise BadInput("give `weights` CKPT or `run` RUN, not both", param=("weights", "run"))
    if weights is not None:
        from modnas.exporters.result import sha256_file

        try:
            model, vocab, meta = load_lm(weights, arch)
        except BadInput as err:
            raise BadInput(f"`weights` {err}", param="weights") from None
        return model, vocab, meta, "checkpoint-" + sha256_file(weights)[:16]
    if run is not None:
        model, vocab, meta, tag = subnet_of_run(run, arch)
        from modnas.toolkit.spaces.gpt.text import HELDOUT_TEXT

        return model, vocab, {**meta, "carried": str(supernet_checkpoint(run).parent / HELDOUT_TEXT)}, tag
    from modnas.toolkit.spaces.gpt.space import DEFAULT_VOCAB
    from modnas.toolkit.spaces.gpt.train import build_model

    return build_model(arch, DEFAULT_VOCAB, seed=0).eval(), None, None, "untrained"


# -- train -------------------------------------------------------------------------------------------
def train_lm_arch(space: Any, arch: str, *, text: str | None, out: Path, context: int | None = None,
                  batch: int | None = None, steps: int | None = None, run: str | None = None,
                  data_dir: str | Path | None = None, seed: int = 0, quiet: bool = False,
                  stream: Any = None) -> LMTrainResult:
    """Train (or resume) one language model on ``text`` to ``steps`` steps in all (nanoGPT's recipe,
    :func:`modnas.toolkit.spaces.gpt.train.train_lm`); ``run`` starts a fresh one from a supernet's slice."""
    from modnas.toolkit.spaces.gpt.text import Vocabulary, read_text
    from modnas.toolkit.spaces.gpt.train import LMRecipe, train_lm

    _space(space)
    arch = space.canonical(arch)
    if text is None:
        raise BadInput(f"`text` FILE|DIR|shakespeare is needed to train a {space.name} network", param="text")
    context = 64 if context is None else context
    batch = 12 if batch is None else batch
    steps = 2000 if steps is None else steps
    for name, value, low in (("context", context, 1), ("batch", batch, 1), ("steps", steps, 1)):
        if value < low:
            raise BadInput(f"`{name}` must be at least {low}, got {value}", param=name)
    from modnas.toolkit.spaces.gpt.arch import MAX_CONTEXT

    if context > MAX_CONTEXT:
        raise BadInput(f"`context` must be at most {MAX_CONTEXT} (the network's positions), got {context}",
                       param="context")
    _check_out(out)
    try:
        corpus = read_text(text, data_dir)
    except BadInput as err:
        line = str(err).replace("--text", "`text`")
        raise BadInput(line if line.startswith("`text`") else f"`text` {line}", param="text") from None
    init, origin = None, "scratch"
    if run is not None:
        model, vocab, _, origin = subnet_of_run(run, arch)
        if vocab != Vocabulary.from_text(corpus.text):
            raise BadInput(f"`run` {run}: the supernet was trained on another text (its vocabulary differs)",
                           param=("run", "text"))
        init = model.state_dict()
    res = train_lm(arch, corpus, context=context, batch=batch, steps=steps, out=out, data_dir=data_dir,
                   recipe=LMRecipe(seed=seed), init=init, init_origin=origin, quiet=quiet, stream=stream)
    return LMTrainResult(res["arch"], res["checkpoint"], int(res["steps"]), float(res["seconds"]),
                         LMLoss(float(res["loss"]["train"]), float(res["loss"]["heldout"])),
                         initial_weights=str(res.get("initial_weights", origin)), context=int(res["context"]))


# -- export ------------------------------------------------------------------------------------------
def carried_heldout(path: str | Path, vocab: Any) -> Any:
    """The held-out split a search run carries (``heldout.txt.gz``) in the vocabulary's tokens; None without one."""
    import gzip

    path = Path(path)
    if not path.is_file():
        return None
    return vocab.encode(gzip.decompress(path.read_bytes()).decode("utf-8"))


def heldout_windows(meta: dict[str, Any], vocab: Any, data_dir: str | Path | None = None) -> tuple[Any, Any] | None:
    """The checkpoint's held-out windows (every position once, ``context`` tokens each) and targets. A
    supernet of a search run (``meta["carried"]``) reads its text's held-out split from the data directory
    or, where that text is not there or has changed since, the copy the run carries; None when neither is
    there (no loss then)."""
    from modnas.toolkit.spaces.gpt.text import eval_windows, read_text, split_heldout

    if "carried" in meta:
        try:
            corpus = read_text(meta["text"], data_dir)
        except BadInput:
            corpus = None
        if corpus is None or corpus.digest != meta.get("text_digest"):  # not there, or since changed: the copy
            held = carried_heldout(meta["carried"], vocab)
            return None if held is None else eval_windows(held, int(meta["context"]))
        return eval_windows(split_heldout(vocab.encode(corpus.text))[1], int(meta["context"]))
    try:
        corpus = read_text(meta["text"], data_dir)
    except BadInput as err:
        raise BadInput(f"`weights`: the checkpoint's text cannot be read ({str(err).replace('--text ', '')}); "
                       "its held-out loss needs it", param="weights") from None
    if corpus.digest != meta["text_digest"]:
        raise BadInput(f"`weights`: the text {meta['text']} changed since the checkpoint was trained",
                       param="weights")
    held = split_heldout(vocab.encode(corpus.text))[1]
    return eval_windows(held, int(meta["context"]))


def export_lm_arch(space: Any, arch: str, *, formats: list[str], out: Path, stem: str, weights: str | None = None,
                   run: str | None = None, quantize: str | None = None, target: dict[str, Any] | None = None,
                   data_dir: str | Path | None = None) -> dict[str, Any]:
    """Export a language model as ONNX graphs (decode with its key/value cache as ``onnx``, prefill as
    ``onnx_prefill``; with ``quantize`` int8 also ``onnx_int8`` and ``onnx_prefill_int8``) and TVM
    libraries (``tvm``: decode with a cache of 128 tokens; ``tvm_prefill``: prefill at the checkpoint's
    window length, else 128). With ``weights`` (a ``train --space gpt`` checkpoint), ``loss`` holds each
    runtime's held-out nats per token on the checkpoint's text. Returns the export document
    (:class:`modnas.toolkit.workflow.exporting.ExportReport` reads it); ``target`` is the TVM target."""
    from modnas.toolkit.spaces.gpt.space import DEFAULT_CONTEXT

    _space(space)
    arch = space.canonical(arch)
    later = [f for f in formats if f not in LM_FORMATS]
    if later or not formats:
        raise BadInput(f"`formats` {','.join(later or formats) or repr('')}: not yet for language models "
                       f"({', '.join(LM_FORMATS)} are)", param="formats")
    if quantize is not None and quantize != "int8":
        raise BadInput(f"`quantize` {quantize!r}: choose int8", param="quantize")
    if "tvm" in formats and target is None:
        raise BadInput("`formats` tvm needs a target", param="formats")
    _check_out(out)
    model, vocab, meta, tag = _weights(arch, weights, run)
    windows = heldout_windows(meta, vocab, data_dir) if meta is not None else None

    from modnas.exporters.lm_onnx import export_lm_onnx, lm_loss_onnx, quantize_lm_int8

    out.mkdir(parents=True, exist_ok=True)
    info = {"space": space.name, "arch": arch, "weights": tag}
    graphs = export_lm_onnx(model, out, stem, meta=info)
    doc: dict[str, Any] = {"arch": arch, "max_abs_diff": {}}
    for key in ("onnx", "onnx_prefill"):
        doc[key] = str(graphs[key].path)
        doc["max_abs_diff"][key] = graphs[key].max_abs_diff
    if quantize:
        for key, res in (("onnx", graphs["onnx"]), ("onnx_prefill", graphs["onnx_prefill"])):
            q = quantize_lm_int8(res.path, out / f"{res.path.stem}-int8.onnx", meta=info)
            doc[f"{key}_int8"] = str(q.path)
            doc["max_abs_diff"][f"{key}_int8"] = q.max_abs_diff  # vs the fp32 graph
    tvm_prefill = None
    if "tvm" in formats:
        from modnas.exporters.lm_tvm import compile_lm_tvm
        from modnas.exporters.targets import runs_here

        assert target is not None
        dec = compile_lm_tvm(graphs["onnx"].path, target, out, length=DEFAULT_CONTEXT, name=f"{stem}-decode-tvm")
        window = int(meta["context"]) if meta is not None else DEFAULT_CONTEXT
        pre = compile_lm_tvm(graphs["onnx_prefill"].path, target, out, length=window, name=f"{stem}-prefill-tvm")
        doc["tvm"], doc["tvm_prefill"] = str(dec.path), str(pre.path)
        doc["max_abs_diff"]["tvm"], doc["max_abs_diff"]["tvm_prefill"] = dec.max_abs_diff, pre.max_abs_diff
        if runs_here(target):
            tvm_prefill = pre.path
        elif windows is not None:
            doc["accuracy_note"] = "the TVM library is built for another CPU: its loss is measured on the board"
    if "onnx" not in formats:  # the graphs are the source of the TVM build; keep them only when asked for
        for key in ("onnx", "onnx_prefill"):
            Path(doc[key]).unlink(missing_ok=True)
            Path(doc[key] + ".json").unlink(missing_ok=True)
            del doc[key]
            doc["max_abs_diff"].pop(key)
    if windows is not None:
        from modnas.toolkit.spaces.gpt.train import mean_loss

        x, y = windows
        loss = {"pytorch": mean_loss(model, x, y)}
        if "onnx" in formats:
            loss["onnx"] = lm_loss_onnx(graphs["onnx_prefill"].path, x.numpy(), y.numpy())
            if quantize:
                loss["onnx_int8"] = lm_loss_onnx(doc["onnx_prefill_int8"], x.numpy(), y.numpy())
        if tvm_prefill is not None:
            from modnas.exporters.lm_tvm import lm_loss_tvm

            loss["tvm"] = lm_loss_tvm(tvm_prefill, x.numpy(), y.numpy())
        doc["loss"] = {k: round(float(v), 5) for k, v in loss.items()}
    return doc


# -- sample ------------------------------------------------------------------------------------------
def sample_lm(space: Any, arch: str, *, weights: str | None = None, run: str | None = None,
              prompt: str | None = None, tokens: int | None = None, fmt: str | None = None) -> SampleResult:
    """Greedy text from a trained language model (``weights``) or a supernet's slice (``run``): with
    PyTorch and the key/value cache (``fmt`` None or ``pytorch``) or with the ONNX prefill and decode
    graphs in onnxruntime (``fmt`` ``onnx``, exported to a temporary directory). Positions beyond the
    checkpoint's training context are never used: past it, generation re-reads the last ``context`` tokens."""
    import tempfile

    from modnas.exporters.lm_onnx import LMRuntime, export_lm_onnx, greedy

    _space(space)
    arch = space.canonical(arch)
    if weights is None and run is None:
        raise BadInput("`sample` needs trained weights: give `weights` CKPT or `run` RUN", param=("weights", "run"))
    n = DEFAULT_SAMPLE_TOKENS if tokens is None else tokens
    if n < 1:
        raise BadInput(f"`tokens` must be at least 1, got {n}", param="tokens")
    if fmt not in (None, "pytorch", "onnx"):
        raise BadInput(f"`format` {fmt!r}: sample runs pytorch or onnx", param="format")
    prompt = DEFAULT_PROMPT if prompt is None else prompt
    if not prompt:
        raise BadInput("`prompt` is empty: give at least one character", param="prompt")
    model, vocab, meta, _ = _weights(arch, weights, run)
    assert vocab is not None
    if meta is not None:
        context = int(meta["context"])
    else:
        context = int(model.config.context)
    ids = vocab.encode(prompt).tolist()
    if fmt == "onnx":
        with tempfile.TemporaryDirectory(prefix="modnas-sample-") as tmp:
            graphs = export_lm_onnx(model, tmp, "lm", check=False)
            runtime = LMRuntime(graphs["onnx_prefill"].path, graphs["onnx"].path)
            runtime.prefill(ids[-context:])  # warm-up: tokens_per_s times generation, not the first run's set-up
            started = time.perf_counter()
            new = runtime.generate(ids, n, context)
            seconds = time.perf_counter() - started
    else:
        import torch

        def prefill(window: list[int]) -> tuple[Any, Any]:
            logits, cache = model.prefill(torch.tensor([window], dtype=torch.long))
            return logits[0, -1].numpy(), cache

        def decode(token: int, cache: Any) -> tuple[Any, Any]:
            logits, cache = model.decode(torch.tensor([[token]], dtype=torch.long), cache)
            return logits[0].numpy(), cache

        with torch.no_grad():
            prefill(ids[-context:])  # warm-up, as for onnx
            started = time.perf_counter()
            new = greedy(prefill, decode, ids, n, context)
            seconds = time.perf_counter() - started
    return SampleResult(vocab.decode(new), len(new), round(len(new) / max(seconds, 1e-9), 2),
                        runtime=fmt or "pytorch")


__all__ = ["LMLoss", "LMTrainResult", "LM_FORMATS", "SampleResult", "export_lm_arch", "heldout_windows",
           "sample_lm", "subnet_of_run", "supernet_checkpoint", "train_lm_arch"]
