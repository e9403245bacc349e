"""Language models for the board: prefill and decode ONNX graphs with a key/value cache against PyTorch,
greedy decoding with the graphs, dynamic INT8 and its held-out loss, TVM libraries against onnxruntime.
A tiny network (width 128, two layers of 2 and 4 heads, 50 tokens, 96 positions) exported once."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modnas.exporters.lm_onnx import (OPSET, LMRuntime, export_lm_decode, export_lm_onnx, export_lm_prefill,
                                      generate_onnx, lm_loss_onnx, quantize_lm_int8)
from modnas.exporters.result import ExportMismatch, read_sidecar, sha256_file
from modnas.profilers.errors import BadInput
from modnas.toolkit.spaces.gpt.model import GPT, GPTConfig, generate

ARCH = "e=128;l=2;h=2-4;m=2-2"
VOCAB, CONTEXT = 50, 96


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_model(seed: int = 0) -> GPT:
    """Random weights, the matrices at std 0.2 (not 0.02): greedy decoding then varies its tokens."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(VOCAB, 128, (2, 4), (2, 2), CONTEXT)).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.2)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[GPT, dict[str, Any]]:
    torch.set_num_threads(1)
    model = tiny_model()
    out = tmp_path_factory.mktemp("lm")
    return model, export_lm_onnx(model, out, "tiny", prompt=24, past=32, meta={"arch": ARCH})


def _ids(n: int, seed: int) -> list[int]:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_graphs_declare_their_cache_and_match_pytorch(exported: tuple[GPT, dict[str, Any]]) -> None:
    model, res = exported
    assert sorted(res) == ["onnx", "onnx_prefill"]
    for r in res.values():
        assert r.max_abs_diff is not None and r.max_abs_diff <= 1e-4
        assert r.meta["cache_max_abs_diff"] <= 1e-4 and r.sha256 == sha256_file(r.path)
        assert onnx.load(str(r.path)).opset_import[0].version == OPSET
        assert read_sidecar(r.path)["arch"] == ARCH
    dec = ort.InferenceSession(str(res["onnx"].path), providers=["CPUExecutionProvider"])
    declared = {i.name: i.shape for i in dec.get_inputs()}
    assert declared == {"token": [1, 1], "past_k_0": [1, 2, "past", 64], "past_v_0": [1, 2, "past", 64],
                        "past_k_1": [1, 4, "past", 32], "past_v_1": [1, 4, "past", 32]}
    assert [o.name for o in dec.get_outputs()] == ["logits", "present_k_0", "present_v_0", "present_k_1", "present_v_1"]
    assert dec.get_outputs()[0].shape == [1, VOCAB]
    assert res["onnx"].meta["greedy_tokens_equal"] == 64
    # a prompt length neither export was checked at; then three decode steps, each on the graph's own cache
    runtime = LMRuntime(res["onnx_prefill"].path, res["onnx"].path)
    prompt = torch.tensor([_ids(37, 1)])
    logits, cache = runtime.prefill(prompt[0].tolist())
    with torch.no_grad():
        want, torch_cache = model.prefill(prompt)
    assert np.max(np.abs(logits - want.numpy())) <= 1e-4
    for token in _ids(3, 2):
        logits, cache = runtime.decode(token, cache)
        with torch.no_grad():
            want, torch_cache = model.decode(torch.tensor([[token]]), torch_cache)
        assert logits.shape == (1, VOCAB) and np.max(np.abs(logits - want.numpy())) <= 1e-4
    assert cache[2].shape == (1, 4, 40, 32)
    assert np.max(np.abs(cache[3] - torch_cache[1][1].numpy())) <= 1e-4


def test_decode_after_prefill_is_the_longer_prompt_recomputed(exported: tuple[GPT, dict[str, Any]]) -> None:
    _, res = exported
    runtime = LMRuntime(res["onnx_prefill"].path, res["onnx"].path)
    ids = _ids(21, 3)
    _, cache = runtime.prefill(ids[:-1])
    step_logits, step_cache = runtime.decode(ids[-1], cache)
    full_logits, full_cache = runtime.prefill(ids)
    assert np.max(np.abs(step_logits[0] - full_logits[0, -1])) <= 1e-5
    assert len(step_cache) == len(full_cache) == 4
    for a, b in zip(step_cache, full_cache):
        assert a.shape == b.shape and np.max(np.abs(a - b)) <= 1e-5


@pytest.mark.parametrize("prompt_len", [5, 60])  # 60 + 64 passes the 96 positions: the cache is rebuilt
def test_greedy_tokens_equal_pytorch_generate(exported: tuple[GPT, dict[str, Any]], prompt_len: int) -> None:
    model, res = exported
    prompt = _ids(prompt_len, prompt_len)
    want = generate(model, torch.tensor([prompt]), 64)[0, prompt_len:].tolist()
    got = generate_onnx(res["onnx_prefill"].path, res["onnx"].path, prompt, 64)
    assert len(got) == 64 and got == want
    assert len(set(got)) >= 5  # not a degenerate run of one token


class _BakedBranch(torch.nn.Module):
    """A network whose decode step takes a Python branch on the cache length: a trace freezes it."""

    def __init__(self, net: GPT) -> None:
        super().__init__()
        self.net, self.config = net, net.config

    def prefill(self, idx: torch.Tensor) -> Any:
        return self.net.prefill(idx)

    def decode(self, token: torch.Tensor, past: Any) -> Any:
        logits, cache = self.net.decode(token, past)
        return (logits + 1.0 if past[0][0].shape[2] > 20 else logits), cache


def test_a_trace_that_does_not_generalise_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportMismatch, match="differs from PyTorch"):
        export_lm_decode(_BakedBranch(tiny_model()), tmp_path / "d.onnx", past=32)  # checked again at 10
    assert not list(tmp_path.glob("*.onnx"))


def test_bad_settings_are_one_line(exported: tuple[GPT, dict[str, Any]], tmp_path: Path) -> None:
    model, res = exported
    cases = [lambda: export_lm_prefill(model, tmp_path / "p.onnx", prompt=1),
             lambda: export_lm_decode(model, tmp_path / "d.onnx", past=CONTEXT),
             lambda: lm_loss_onnx(res["onnx_prefill"].path, np.zeros((2, 8)), np.zeros((2, 7))),
             lambda: lm_loss_onnx(res["onnx_prefill"].path, np.zeros((1, 8)), np.full((1, 8), VOCAB)),
             lambda: quantize_lm_int8(res["onnx"].path, tmp_path / "q.onnx", weight_type="int4"),
             lambda: LMRuntime(tmp_path / "missing.onnx")]
    for case in cases:
        with pytest.raises(BadInput) as info:
            case()
        assert str(info.value) and "\n" not in str(info.value)


def _corpus(n_lines: int = 400, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["the", "king", "queen", "and", "of", "to", "my", "lord", "thou", "art", "good", "night"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(n_lines)) + "\n"


def test_int8_loss_is_close_to_fp32_on_a_trained_model(tmp_path: Path) -> None:
    from modnas.toolkit.spaces.gpt.text import Vocabulary, eval_windows, split_heldout
    from modnas.toolkit.spaces.gpt.train import load_lm, mean_loss, train_lm

    text = tmp_path / "corpus.txt"
    text.write_text(_corpus(), encoding="utf-8")
    done = train_lm(ARCH, text, context=32, batch=8, steps=100, out=tmp_path / "ckpt", quiet=True, save_every=100)
    model, vocab, _ = load_lm(done["checkpoint"])
    assert isinstance(vocab, Vocabulary)
    res = export_lm_onnx(model, tmp_path / "onnx", "trained", prompt=32, past=32, greedy_tokens=0)
    _, held = split_heldout(vocab.encode(text.read_text(encoding="utf-8")))
    x, y = eval_windows(held, 32, max_windows=40)
    fp32 = lm_loss_onnx(res["onnx_prefill"].path, x, y)
    assert abs(fp32 - mean_loss(model, x, y)) <= 1e-4  # the scorer is the training code's loss
    assert fp32 < 2.5  # it learnt something (uniform over the vocabulary would be about 5.6)
    int8 = quantize_lm_int8(res["onnx_prefill"].path)
    ops = [n.op_type for n in onnx.load(str(int8.path)).graph.node]
    assert ops.count("MatMulInteger") == 9 and ops.count("MatMul") == 4  # attention's own products stay fp32
    assert read_sidecar(int8.path)["precision"] == "int8" and 0 < int8.max_abs_diff < 1.0
    assert abs(lm_loss_onnx(int8.path, x, y) - fp32) <= 0.05
    dec8 = quantize_lm_int8(res["onnx"].path)
    tokens = generate_onnx(int8.path, dec8.path, vocab.encode("the king ").tolist(), 16)
    assert len(tokens) == 16 and all(0 <= t < vocab.size for t in tokens)


@pytest.fixture(scope="module")
def tvm_target() -> dict[str, Any]:
    from modnas.exporters.targets import resolve_target

    return resolve_target(None, None)


def test_tvm_libraries_match_onnxruntime(exported: tuple[GPT, dict[str, Any]], tvm_target: dict[str, Any],
                                         tmp_path: Path) -> None:
    from modnas.exporters.lm_tvm import compile_lm_tvm, lm_loss_tvm, load_lm_vm, run_lm_tvm

    _, res = exported
    pre = compile_lm_tvm(res["onnx_prefill"].path, tvm_target, tmp_path, length=16)
    dec = compile_lm_tvm(res["onnx"].path, tvm_target, tmp_path, length=16)
    assert pre.max_abs_diff is not None and pre.max_abs_diff <= 1e-4 and dec.max_abs_diff <= 1e-4
    assert [i["shape"] for i in dec.meta["inputs"]][:2] == [[1, 1], [1, 2, 16, 64]]
    # a real cache: onnxruntime's prefill of 16 tokens, then one step in TVM and in onnxruntime
    runtime = LMRuntime(res["onnx_prefill"].path, res["onnx"].path)
    ids = _ids(16, 4)
    _, cache = runtime.prefill(ids)
    want_logits, want_cache = runtime.decode(7, cache)
    got = run_lm_tvm(load_lm_vm(dec.path), [np.array([[7]], dtype=np.int64), *cache])
    assert np.max(np.abs(got[0] - want_logits)) <= 1e-4
    assert all(np.max(np.abs(a - b)) <= 1e-4 for a, b in zip(got[1:], want_cache))
    x = np.array([_ids(16, 5), _ids(16, 6)])
    y = np.roll(x, -1, axis=1)
    assert abs(lm_loss_tvm(pre.path, x, y) - lm_loss_onnx(res["onnx_prefill"].path, x, y)) <= 1e-4
    with pytest.raises(BadInput):
        lm_loss_tvm(pre.path, x[:, :8], y[:, :8])
    with pytest.raises(BadInput):
        compile_lm_tvm(res["onnx"].path, tvm_target, tmp_path, length=CONTEXT)  # no room for the new token


@pytest.mark.slow
def test_tvm_decode_with_a_symbolic_cache_length(exported: tuple[GPT, dict[str, Any]], tvm_target: dict[str, Any],
                                                 tmp_path: Path) -> None:
    from modnas.exporters.lm_tvm import compile_lm_tvm

    _, res = exported
    with pytest.raises(BadInput, match="schedule none"):
        compile_lm_tvm(res["onnx"].path, tvm_target, tmp_path, length=None)
    lib = compile_lm_tvm(res["onnx"].path, tvm_target, tmp_path, length=None, schedule="none")
    assert lib.max_abs_diff is not None and lib.max_abs_diff <= 1e-4  # checked at 8 and 40 cached tokens
    assert lib.meta["inputs"][1]["shape"] == [1, 2, "past", 64]
