"""The language-model space ``gpt``: strings, the network and its key/value cache, text, training with
resume, and the weight-sharing supernet. Tiny models and a few steps each."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space
from modnas.toolkit.spaces.gpt import arch as gpt_arch
from modnas.toolkit.spaces.gpt.arch import Arch, check_arch, parse_arch
from modnas.toolkit.spaces.gpt.model import GPT, GPTConfig, generate
from modnas.toolkit.spaces.gpt.space import DEFAULT_VOCAB, REFERENCE_ARCHS, GPTSpace
from modnas.toolkit.spaces.gpt.supernet import (GPTSupernet, heldout_tokens, inherited_loss, load_supernet_checkpoint,
                                                train_supernet)
from modnas.toolkit.spaces.gpt.text import (Corpus, Vocabulary, eval_windows, random_batch, read_text, resolve_text,
                                            split_heldout)
from modnas.toolkit.spaces.gpt.train import (CHECKPOINT_NAME, LMRecipe, load_lm, lr_schedule, mean_loss,
                                             read_checkpoint, train_lm)

BASELINE = "e=128;l=4;h=4-4-4-4;m=4-4-4-4"
LARGEST = "e=256;l=6;h=8-8-8-8-8-8;m=4-4-4-4-4-4"
SMALL = "e=128;l=2;h=2-2;m=2-2"
MIXED = "e=192;l=4;h=4-4-8-2;m=4-3-2-2"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space() -> GPTSpace:
    return get_space("gpt")  # type: ignore[return-value]


def words_text(n_words: int = 1500, seed: int = 0) -> str:
    """A small synthetic corpus: lines of words from a short list."""
    rng = random.Random(seed)
    words = ["the", "king", "queen", "and", "of", "to", "my", "lord", "thou", "art", "good", "night"]
    lines = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(n_words // 8)]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(words_text(), encoding="utf-8")
    return path


def _one_line(exc: pytest.ExceptionInfo[BadInput]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# -- strings --------------------------------------------------------------------------------------------
def test_strings_round_trip_and_unused_slots_are_canonical(space: GPTSpace) -> None:
    assert space.name == "gpt" and not space.enumerable and space.table_metrics == ("latency", "prefill")
    assert space.onehot_dim == 3 + 5 + 6 * 3 + 6 * 3
    assert space.canonical(" e=192 ; l=4;h=4-4-8-2;m=4-3-2-2 ") == MIXED
    idx = space.to_indices(MIXED)
    assert idx == [1, 2, 1, 1, 2, 0, 0, 0, 2, 1, 0, 0, 0, 0]  # slots 5 and 6 written as the first choice
    assert space.from_indices(idx) == MIXED
    # the unused slots do not change the network: any value there prints and encodes the same
    assert space.from_indices(idx[:6] + [2, 2] + idx[8:12] + [2, 1]) == MIXED
    for arch in space.sample(40, seed=3):
        a = parse_arch(arch)
        assert space.canonical(arch) == arch and len(a.heads) == len(a.mlp) == a.depth
        assert space.decode(space.encode([arch])[0]) == arch
    assert space.sample(10, seed=1) == space.sample(10, seed=1)


def test_reference_architectures_spread_over_the_space(space: GPTSpace) -> None:
    refs = space.reference_archs()
    assert refs == list(REFERENCE_ARCHS) and len(refs) >= 10 and len(set(refs)) == len(refs)
    assert all(space.canonical(r) == r for r in refs)
    assert BASELINE in refs and LARGEST in refs
    parsed = [parse_arch(r) for r in refs]
    assert {a.width for a in parsed} == {128, 192, 256}
    assert {a.depth for a in parsed} == {2, 3, 4, 5, 6}
    assert {h for a in parsed for h in a.heads} == {2, 4, 8}
    assert {m for a in parsed for m in a.mlp} == {2, 3, 4}


@pytest.mark.parametrize("arch, fault", [
    ("e=128;l=4;h=4-4-4;m=4-4-4-4", "field 'h' needs exactly l=4 entries (one per layer), got 3"),
    ("e=128;l=2;h=2-2;m=2-2-2", "field 'm' needs exactly l=2 entries"),
    ("e=128;l=2;h=2-2;m=2-2;x=1", "unknown field 'x' (known: e, l, h, m)"),
    ("e=100;l=2;h=2-2;m=2-2", "width e=100 not in [128, 192, 256]"),
    ("e=128;l=7;h=2-2-2-2-2-2-2;m=2-2-2-2-2-2-2", "depth l=7 not in [2, 3, 4, 5, 6]"),
    ("e=128;l=2;h=2-3;m=2-2", "heads 3 of layer 2 not in [2, 4, 8]"),
    ("e=128;l=2;h=2-2;m=5-2", "MLP ratio 5 of layer 1 not in [2, 3, 4]"),
    ("e=128;l=2;h=2-2", "missing field(s) m"),
    ("e=128;e=128;l=2;h=2-2;m=2-2", "field 'e' given twice"),
    ("e=128;l=2;h=2-x;m=2-2", "field 'h' must be integers joined by '-'"),
    ("e=128-192;l=2;h=2-2;m=2-2", "field 'e' takes one value"),
    ("nonsense", "expected 'e=...;l=...;h=...;m=...'"),
])
def test_bad_architecture_is_one_clear_line(space: GPTSpace, arch: str, fault: str) -> None:
    with pytest.raises(BadInput) as exc:
        space.to_indices(arch)
    assert fault in _one_line(exc)


def test_heads_must_divide_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # every width/heads pair of the space divides (head size 16..128) ...
    assert all(e % h == 0 for e in gpt_arch.WIDTHS for h in gpt_arch.HEADS)
    # ... and the check is there for a choice that would not
    monkeypatch.setattr(gpt_arch, "HEADS", (2, 4, 8, 5))
    with pytest.raises(BadInput) as exc:
        check_arch(Arch(128, (4, 5), (2, 2)))
    assert "heads 5 of layer 2 do not divide the width e=128" in _one_line(exc)
    with pytest.raises(BadInput):
        get_space("gpt").to_indices(42)  # type: ignore[arg-type]


# -- the network ----------------------------------------------------------------------------------------
def test_flops_is_the_decode_cost_and_build_ties_the_embedding(space: GPTSpace) -> None:
    # per layer (4 + 2m) e^2 + 2 e (context + 1), then e x vocab: the baseline at context 128, 321 tokens
    assert space.flops(BASELINE) == pytest.approx((4 * (12 * 128 ** 2 + 2 * 128 * 129) + 128 * 321) / 1e6)
    assert space.flops(BASELINE, context=256) > space.flops(BASELINE)
    assert space.flops(SMALL) < space.flops(BASELINE) < space.flops(MIXED) < space.flops(LARGEST)
    net = space.build(BASELINE)
    e, v = 128, DEFAULT_VOCAB
    per_layer = 2 * 2 * e + (3 * e * e + 3 * e) + (e * e + e) + (4 * e * e + 4 * e) + (4 * e * e + e)
    assert net.num_parameters() == v * e + 256 * e + 4 * per_layer + 2 * e  # no separate output layer
    x = space.example_input(BASELINE)
    assert x.dtype == torch.long and tuple(x.shape) == space.input_shape(BASELINE) == (1, 128)
    assert net(x).shape == (1, 128, v)
    with pytest.raises(BadInput):
        space.build(BASELINE, context=512)


def test_kv_cache_matches_recomputation() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, width=64, heads=(2, 8, 4), mlp=(2, 4, 3), context=16)).eval()
    for p in model.parameters():  # weights far from the initial ones, so a slip shows
        torch.nn.init.normal_(p, std=0.2)
    idx = torch.randint(50, (2, 12))
    with torch.no_grad():
        full = model(idx)
        logits, cache = model.prefill(idx[:, :7])
        assert torch.allclose(logits, full[:, :7], atol=1e-5)
        assert [tuple(k.shape) for k, _ in cache] == [(2, 2, 7, 32), (2, 8, 7, 8), (2, 4, 7, 16)]
        for t in range(7, 12):
            step, cache = model.decode(idx[:, t:t + 1], cache)
            assert torch.allclose(step, full[:, t], atol=1e-5), t
        assert cache[0][0].shape[2] == 12
        # a chunk of several tokens after a cache sees the cache and itself causally
        logits, cache = model.prefill(idx[:, :5])
        chunk, _ = model(idx[:, 5:12], cache, use_cache=True)
        assert torch.allclose(chunk, full[:, 5:12], atol=1e-5)
    # greedy generation with the cache equals generation by recomputation, also past the 16 positions
    prompt = idx[:1, :6]
    with_cache = generate(model, prompt, 20, use_cache=True)
    without = generate(model, prompt, 20, use_cache=False)
    assert with_cache.shape == (1, 26) and torch.equal(with_cache, without)


# -- text -------------------------------------------------------------------------------------------
def test_vocabulary_bytes_for_unknown_characters_and_json() -> None:
    vocab = Vocabulary.from_text("hello world\n")
    assert vocab.chars == "\n dehlorw" and vocab.size == 9 + 256
    ids = vocab.encode("hello €!")
    assert ids[:6].tolist() == [vocab.chars.index(c) for c in "hello "]
    assert ids[6:].tolist() == [9 + b for b in "€!".encode("utf-8")]  # 3 bytes of the euro, one of '!'
    assert vocab.decode(ids) == "hello €!"
    assert vocab.decode([9 + 0xE2, 9 + 0x82]) == "\ufffd"  # a cut multi-byte sequence
    again = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab and again.digest == vocab.digest
    strict = Vocabulary.from_text("abc", byte_fallback=False)
    with pytest.raises(BadInput) as exc:
        strict.encode("abd")
    assert "'d' is outside the vocabulary" in _one_line(exc)
    with pytest.raises(BadInput):
        vocab.decode([vocab.size])


def test_text_sources_and_bad_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "d" / "sub" / "c.txt").write_text("third\n", encoding="utf-8")
    (tmp_path / "d" / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / "d" / "skip.bin").write_bytes(b"\x00\x01")
    corpus = read_text(tmp_path / "d")
    assert corpus.text == "first\nsecond\nthird\n" and len(corpus.files) == 3
    cases = {"empty.txt": (b"", "the text is empty"), "blank.txt": (b" \n\n", "the text is empty"),
             "bin.txt": (b"abc\x00\x01def", "binary data, not text"),
             "latin.txt": ("caf\u00e9".encode("latin-1"), "not UTF-8 text")}
    for name, (raw, fault) in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(BadInput) as exc:
            read_text(tmp_path / name)
        assert fault in _one_line(exc), name
    (tmp_path / "none").mkdir()
    for spec, fault in ((tmp_path / "missing.txt", "no such file or directory"),
                        (tmp_path / "none", "holds no .txt files")):
        with pytest.raises(BadInput) as exc:
            resolve_text(spec)
        assert fault in _one_line(exc)
    monkeypatch.delenv("MODNAS_DATA", raising=False)
    with pytest.raises(BadInput) as exc:
        resolve_text("shakespeare")
    assert "--data DIR or set MODNAS_DATA" in _one_line(exc)
    monkeypatch.setenv("MODNAS_DATA", str(tmp_path))
    with pytest.raises(BadInput) as exc:
        resolve_text("shakespeare")
    assert "tinyshakespeare" in _one_line(exc)


def test_shakespeare_split_is_nanogpts(data_dir: Path) -> None:
    if not (data_dir / "text" / "tinyshakespeare" / "input.txt").exists():
        pytest.skip(f"no Tiny Shakespeare under {data_dir}")
    corpus = read_text("shakespeare", data_dir)
    vocab = Vocabulary.from_text(corpus.text)
    assert len(corpus.text) == 1115394 and len(vocab.chars) == 65 and vocab.size == DEFAULT_VOCAB
    train, held = split_heldout(vocab.encode(corpus.text))
    assert (len(train), len(held)) == (1003854, 111540)
    assert int(train.max()) < 65  # the corpus never needs the byte tokens


def test_batches_and_windows() -> None:
    tokens = torch.arange(100)
    x, y = random_batch(tokens, 8, 5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8) and torch.equal(y, x + 1)
    x, y = eval_windows(tokens, 8)
    assert x.shape == (12, 8) and torch.equal(x[:, 0], torch.arange(12) * 8) and torch.equal(y, x + 1)
    assert eval_windows(tokens, 8, max_windows=4)[0].shape == (4, 8)


# -- training -----------------------------------------------------------------------------------------
def test_schedule_warms_up_then_decays_to_the_minimum() -> None:
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.AdamW([p], lr=1e-3)
    recipe = LMRecipe(warmup=5)
    sched = lr_schedule(opt, 50, recipe)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(50):
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-3 / 6) and max(lrs) == pytest.approx(1e-3) and lrs.index(max(lrs)) == 5
    assert lrs[-1] == pytest.approx(recipe.min_lr)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[5:], lrs[6:]))
    placed = lr_schedule(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), 50, recipe, start=20)
    assert placed.get_last_lr()[0] == pytest.approx(lrs[20])


def test_training_resumes_to_the_uninterrupted_result(text_file: Path, tmp_path: Path) -> None:
    common = dict(context=16, batch=4, steps=12, save_every=100, quiet=True, recipe=LMRecipe(lr=3e-3, warmup=2))
    whole = train_lm(SMALL, text_file, out=tmp_path / "whole", **{**common, "save_every": 4})
    history = read_checkpoint(whole["checkpoint"])[1]["history"]
    assert [h["step"] for h in history] == [4, 8, 12]  # saves on the way change nothing below
    assert {"arch", "checkpoint", "steps", "seconds", "loss"} <= set(whole)
    assert set(whole["loss"]) == {"train", "heldout"} and whole["steps"] == 12 and whole["arch"] == SMALL
    assert whole["loss"]["heldout"] < math.log(whole["vocab_size"])  # it learned something
    first = train_lm(SMALL, text_file, out=tmp_path / "split", until=5, **common)
    assert first["steps"] == 5 and read_checkpoint(first["checkpoint"])[1]["steps"] == 5
    second = train_lm(SMALL, text_file, out=tmp_path / "split", **common)
    assert second["steps"] == 12 and second["loss"] == whole["loss"]
    a, vocab_a, meta_a = load_lm(whole["checkpoint"], SMALL)
    b, vocab_b, meta_b = load_lm(second["checkpoint"])
    assert vocab_a == vocab_b and meta_b["arch"] == SMALL
    assert all(torch.equal(t, b.state_dict()[k]) for k, t in a.state_dict().items())
    tensors_a, _ = read_checkpoint(whole["checkpoint"])
    tensors_b, _ = read_checkpoint(second["checkpoint"])
    assert {k for k in tensors_a if k.startswith("optim.")} == {k for k in tensors_b if k.startswith("optim.")}
    assert all(torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a)
    assert {p.name for p in (tmp_path / "split").iterdir()} == {CHECKPOINT_NAME, "checkpoint.json"}  # no temp files
    # asking again for what is done trains nothing and gives the same losses
    assert train_lm(SMALL, text_file, out=tmp_path / "split", **common)["loss"] == whole["loss"]


def test_checkpoint_of_another_architecture_or_text_is_refused(text_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    done = train_lm(SMALL, text_file, context=8, batch=2, steps=1, out=out, quiet=True)
    other = "e=128;l=3;h=2-2-2;m=2-2-2"
    with pytest.raises(BadInput) as exc:
        train_lm(other, text_file, context=8, batch=2, steps=2, out=out, quiet=True)
    assert f"holds a checkpoint of gpt {SMALL}; train {other} into another --out" in _one_line(exc)
    with pytest.raises(BadInput) as exc:
        load_lm(done["checkpoint"], other)
    assert "another architecture" in _one_line(exc)
    other_text = tmp_path / "other.txt"
    other_text.write_text(words_text(seed=1), encoding="utf-8")
    with pytest.raises(BadInput) as exc:
        train_lm(SMALL, other_text, context=8, batch=2, steps=2, out=out, quiet=True)
    assert "trained on other text" in _one_line(exc)
    with pytest.raises(BadInput) as exc:
        train_lm(SMALL, text_file, context=16, batch=2, steps=2, out=out, quiet=True)
    assert "trained with --context 8" in _one_line(exc)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(BadInput):
        train_lm(SMALL, text_file, context=8, batch=2, steps=1, out=tmp_path / "junk", quiet=True)
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be\n", encoding="utf-8")
    with pytest.raises(BadInput) as exc:
        train_lm(SMALL, short, context=64, batch=2, steps=1, out=tmp_path / "s", quiet=True)
    assert "too few for context 64" in _one_line(exc)


# -- the supernet -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def supernet() -> GPTSupernet:
    net = GPTSupernet(vocab_size=40, context=32, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # every weight random (LayerNorm gains and biases too), so a wrong slice shows
        for name, p in net.named_parameters():
            gain = 1.0 if ".ln" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + gain)
    return net.eval()


@pytest.mark.parametrize("arch", [SMALL, BASELINE, MIXED, "e=192;l=5;h=8-4-2-8-4;m=3-4-2-3-4", LARGEST])
def test_subnet_equals_a_standalone_network_with_the_sliced_weights(supernet: GPTSupernet, arch: str,
                                                                    space: GPTSpace) -> None:
    x = torch.randint(40, (2, 20), generator=torch.Generator().manual_seed(2))
    standalone = space.build(arch, vocab_size=40, context=32)
    standalone.load_state_dict(supernet.sub_state(arch), strict=True)
    with torch.no_grad():
        shared = supernet(x, arch)
        assert torch.allclose(standalone.eval()(x), shared, atol=1e-5)
        assert torch.allclose(space.subnet(supernet, arch)(x), shared, atol=1e-5)
    a = parse_arch(arch)
    e, state = a.width, supernet.sub_state(arch)
    qkv = supernet.net.blocks[0].attn.qkv.weight
    assert torch.equal(state["blocks.0.attn.qkv.weight"][e:2 * e], qkv[256:256 + e, :e])  # keys: first e of the k block
    assert state["blocks.0.mlp.fc.weight"].shape == (a.mlp[0] * e, e)


def test_onehot_drives_the_supernet_straight_through(supernet: GPTSupernet, space: GPTSpace) -> None:
    onehot = torch.tensor(space.encode([MIXED])[0], requires_grad=True)
    x = torch.randint(40, (1, 10), generator=torch.Generator().manual_seed(3))
    logits = space.supernet_logits(supernet, x, onehot)
    assert torch.allclose(logits, supernet(x, MIXED), atol=1e-6)
    logits.sum().backward()
    # offsets: width 0-2, depth 3-7, heads of slot i 8+3i.., MLP ratio of slot i 26+3i..; h=4-4-8-2, m=4-3-2-2
    expected = {1, 5, 8 + 1, 11 + 1, 14 + 2, 17 + 0, 26 + 2, 29 + 1, 32 + 0, 35 + 0}
    grads = onehot.grad
    assert grads is not None
    assert {int(i) for i in torch.nonzero(grads).flatten()} == expected  # the unused slots 5-6 get none


def test_sandwich_training_and_inherited_loss(text_file: Path, tmp_path: Path, space: GPTSpace) -> None:
    sup, result = train_supernet(text_file, context=8, batch=2, steps=3, out=tmp_path / "sup", random_subnets=1,
                                 quiet=True, save_every=100, recipe=LMRecipe(warmup=0))
    assert result["steps"] == 3 and set(result["loss"]) == {"train", "heldout", "smallest"}
    assert all(math.isfinite(v) for v in (result["loss"]["heldout"], result["loss"]["smallest"]["heldout"]))
    loaded, vocab, meta = load_supernet_checkpoint(result["checkpoint"])
    assert meta["supernet_args"] == loaded.config() == space.load_supernet(loaded.config()).config()
    assert space.run_build_kwargs(None, meta["supernet_args"]) == {"vocab_size": vocab.size, "context": 256}
    corpus = read_text(text_file)
    held = heldout_tokens(corpus, vocab)
    inherited = inherited_loss(loaded, MIXED, held, 8)
    sub = loaded.subnet(MIXED)
    x, y = eval_windows(held, 8)
    assert inherited == pytest.approx(mean_loss(sub, x, y), rel=1e-5)
    assert result["loss"]["heldout"] == pytest.approx(inherited_loss(loaded, LARGEST, held, 8), abs=1e-4)
    with pytest.raises(BadInput) as exc:
        load_lm(result["checkpoint"])
    assert "supernet checkpoint" in _one_line(exc)
    with pytest.raises(BadInput) as exc:
        train_lm(SMALL, text_file, context=8, batch=2, steps=1, out=tmp_path / "sup", quiet=True)
    assert "holds a checkpoint of gpt supernet" in _one_line(exc)


def test_corpus_object_and_subnet_initialisation(text_file: Path, tmp_path: Path, supernet: GPTSupernet) -> None:
    corpus = read_text(text_file)
    vocab = Vocabulary.from_text(corpus.text)
    sup = GPTSupernet(vocab.size, seed=0)
    init = sup.sub_state(SMALL)
    result = train_lm(SMALL, Corpus(corpus.text, "inline"), context=8, batch=2, steps=1, out=tmp_path / "init",
                      init=init, init_origin="supernet", quiet=True, recipe=LMRecipe(lr=1e-9, min_lr=0.0, warmup=0))
    model, _, meta = load_lm(result["checkpoint"])
    assert meta["initial_weights"] == "supernet" and meta["text"] == "inline"
    assert torch.allclose(model.state_dict()["wte.weight"], init["wte.weight"], atol=1e-6)
