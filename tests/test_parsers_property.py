"""Property-based tests of every parser that reads outside input: architecture strings, CSV imports,
device files and the board agent's reply.  Each either gives a valid value or refuses with one line
(BadInput / BadReply), never another exception."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modnas.profilers.campaign import BadReply, MeasureJob, parse_reply
from modnas.toolkit.config import DeviceConfig, parse_device
from modnas.toolkit.errors import BadInput
from modnas.toolkit.data.importer import read_measurement_csv
from modnas.toolkit.spaces import get_space

NB201 = get_space("nb201")
OFA = get_space("ofa_mbv3")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text.strip(), repr(text)
    return text


def indices(space: object) -> st.SearchStrategy[list[int]]:
    return st.tuples(*[st.integers(0, len(d.choices) - 1) for d in space.decisions]).map(list)


# -- architecture strings -------------------------------------------------------------------------
NB201_PIECES = st.sampled_from(["|", "+", "~", "0", "1", "2", "3", "none", "skip_connect", "nor_conv_1x1",
                                "nor_conv_3x3", "avg_pool_3x3", " ", "\n", "~~", "||", "\x00", "é"])


@FAST
@given(st.one_of(st.text(max_size=120), st.lists(NB201_PIECES, max_size=40).map("".join)))
def test_nb201_strings_parse_or_refuse_in_one_line(text: str) -> None:
    try:
        arch = NB201.canonical(text)
    except BadInput as err:
        one_line(err)
        return
    assert NB201.canonical(arch) == arch
    assert 0 <= NB201.index(arch) < 15625


@FAST
@given(indices(NB201))
def test_nb201_round_trip(idx: list[int]) -> None:
    arch = NB201.from_indices(idx)
    assert NB201.canonical(arch) == arch
    assert NB201.to_indices(arch) == idx
    assert NB201.arch_at(NB201.index(arch)) == arch


@FAST
@given(indices(NB201), st.integers(0, 200), st.characters(blacklist_categories=("Cs",)))
def test_nb201_one_changed_character_is_a_valid_arch_or_one_line(idx: list[int], where: int, ch: str) -> None:
    arch = NB201.from_indices(idx)
    pos = where % len(arch)
    mutated = arch[:pos] + ch + arch[pos + 1:]
    try:
        got = NB201.canonical(mutated)
    except BadInput as err:
        one_line(err)
        return
    assert NB201.canonical(got) == got


OFA_PIECES = st.sampled_from(["ks=", "e=", "d=", "r=", ";", "-", "3", "4", "5", "6", "7", "2", "0", "224",
                              "192", "-1", "1e3", " ", ";;", "==", "x", "\x00"])


@FAST
@given(st.one_of(st.text(max_size=160), st.lists(OFA_PIECES, max_size=60).map("".join)))
def test_ofa_strings_parse_or_refuse_in_one_line(text: str) -> None:
    try:
        arch = OFA.canonical(text)
    except BadInput as err:
        one_line(err)
        return
    assert OFA.canonical(arch) == arch


@FAST
@given(indices(OFA))
def test_ofa_round_trip_and_idle_slots_do_not_matter(idx: list[int]) -> None:
    arch = OFA.canonical(OFA.from_indices(idx))
    assert OFA.canonical(arch) == arch
    fields = dict(part.split("=", 1) for part in arch.split(";"))
    depths = [int(x) for x in fields["d"].split("-")]
    ks = fields["ks"].split("-")
    for stage, depth in enumerate(depths):  # slots past a stage's depth are ignored on input
        for slot in range(depth, 4):
            ks[stage * 4 + slot] = "7" if ks[stage * 4 + slot] != "7" else "3"
    fields["ks"] = "-".join(ks)
    other = ";".join(f"{k}={fields[k]}" for k in ("ks", "e", "d", "r"))
    assert OFA.canonical(other) == arch


@FAST
@given(indices(OFA), st.sampled_from(["ks", "e", "d", "r"]), st.sampled_from(["0", "9", "-1", "", "x", "1.5", "3-3"]))
def test_ofa_bad_values_are_refused_by_name(idx: list[int], key: str, value: str) -> None:
    arch = OFA.canonical(OFA.from_indices(idx))
    fields = dict(part.split("=", 1) for part in arch.split(";"))
    parts = fields[key].split("-")
    parts[0] = value
    fields[key] = "-".join(parts)
    text = ";".join(f"{k}={fields[k]}" for k in ("ks", "e", "d", "r"))
    try:
        OFA.canonical(text)
    except BadInput as err:
        one_line(err)
        assert key in str(err), str(err)  # refused by name
        return
    # every value above is outside every field's choices, and slot 0 of each field is always in use
    pytest.fail(f"{key}={value!r} in slot 0 was accepted: {text!r}")


# -- CSV imports ---------------------------------------------------------------------------------------
CELL = st.one_of(st.text(max_size=30), st.sampled_from(NB201.sample(5, seed=1)),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["1.5", "-2", "0", "nan"]))


@FAST
@given(header=st.sampled_from(["arch,value", "Arch, Value", "arch", "value,arch", ""]),
       rows=st.lists(st.lists(CELL, min_size=0, max_size=3), max_size=12))
def test_csv_import_good_rows_or_one_line_rejections(tmp_path: Path, header: str, rows: list[list[str]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    if header:
        buf.write(header + "\n")
    csv.writer(buf).writerows(rows)
    path = tmp_path / "m.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    try:
        good, rejected = read_measurement_csv(path, NB201)
    except BadInput as err:
        assert str(path) in one_line(err)
        return
    for arch, value in good.items():
        assert NB201.canonical(arch) == arch
        assert math.isfinite(value) and value > 0
    lines = buf.getvalue().count("\n") + 1
    for rej in rejected:
        assert 2 <= rej["line"] <= lines
        one_line(ValueError(rej["error"]))
    assert len(good) + len(rejected) <= len(rows)


@FAST
@given(st.dictionaries(st.sampled_from(NB201.sample(40, seed=2)), st.floats(1e-3, 1e6), min_size=1, max_size=20))
def test_csv_import_keeps_every_valid_row(tmp_path: Path, values: dict[str, float]) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("arch,value\n" + "".join(f"{a},{v!r}\n" for a, v in values.items()))
    good, rejected = read_measurement_csv(path, NB201)
    assert rejected == [] and good == values


# -- device files ----------------------------------------------------------------------------------------
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=3), max_leaves=8)
KEYS = st.sampled_from(list(DeviceConfig.model_fields) + ["password", "Password", "ssh_password", "extra", ""])


@FAST
@given(st.dictionaries(KEYS, JSONISH, max_size=8))
def test_device_dicts_are_valid_or_refused_in_one_line(data: dict) -> None:
    try:
        cfg = parse_device(data, "dev.yaml")
    except BadInput as err:
        text = one_line(err)
        assert text.startswith("dev.yaml")
        if any("password" in k.lower() for k in data):
            assert "password" in text.lower()
        return
    assert not any("password" in k.lower() for k in data)
    assert cfg.host_key_policy in ("strict", "accept-new")
    if "host_key_policy" not in data:
        assert cfg.host_key_policy == "strict"  # strict unless asked


SHELLISH = st.sampled_from(["; touch /tmp/x", "$(id)", "`id`", "a b", "x\ny", "../etc", "-oProxyCommand=x", "|",
                            "&&", "'", '"', "\x00", "~root/../x"])


@FAST
@given(st.sampled_from(["name", "workdir", "python", "host", "user"]), SHELLISH)
def test_device_fields_with_shell_syntax_are_refused(field: str, value: str) -> None:
    data = {"name": "dev", "host": "127.0.0.1", field: value if field != "python" else "/usr/bin/" + value}
    with pytest.raises(BadInput) as info:
        parse_device(data, "dev.yaml")
    assert field in one_line(info.value)


# -- the agent's reply ------------------------------------------------------------------------------------
JOB = MeasureJob(artifact=Path("m.onnx"), sha256="0" * 64, runtime="onnxruntime", threads=1, input_shape=[1, 3, 8, 8],
                 measurement={"warmup_s": 0.0, "min_runs": 3, "min_time_s": 0.0, "repeats": 2, "cooldown_s": 0.0})


def good_reply(blocks: list[list[float]]) -> dict:
    return {"ok": True, "error_code": None, "error": None, "blocks": blocks, "runtime": "onnxruntime",
            "runtime_version": "1.0", "agent_seconds": 0.5, "energy": None}


@FAST
@given(st.binary(max_size=300))
def test_reply_bytes_parse_or_refuse(data: bytes) -> None:
    try:
        doc = parse_reply(data, JOB)
    except BadReply as err:
        one_line(err)
        return
    assert isinstance(doc, dict) and isinstance(doc["ok"], bool)


@FAST
@given(st.dictionaries(st.sampled_from(list(good_reply([])) + ["x"]), JSONISH, max_size=9))
def test_reply_objects_parse_or_refuse(doc: dict) -> None:
    try:
        out = parse_reply(json.dumps(doc).encode(), JOB)
    except BadReply as err:
        one_line(err)
        return
    if out["ok"]:
        assert len(out["blocks"]) == 2 and all(len(b) >= 3 for b in out["blocks"])
    else:
        assert out["error_code"]


@FAST
@given(st.lists(st.lists(st.floats(1e-6, 1e6), min_size=3, max_size=8), min_size=2, max_size=2))
def test_good_replies_are_accepted(blocks: list[list[float]]) -> None:
    doc = parse_reply((json.dumps(good_reply(blocks)) + "\n").encode(), JOB)
    assert doc["blocks"] == blocks


@FAST
@given(st.lists(st.lists(st.floats(1e-6, 1e6), min_size=3, max_size=8), min_size=2, max_size=2),
       st.sampled_from(["short", "nan", "negative", "zero", "blocks", "runtime", "bool", "two_lines", "string"]))
def test_lying_replies_are_refused(blocks: list[list[float]], lie: str) -> None:
    doc = good_reply([list(b) for b in blocks])
    if lie == "short":
        doc["blocks"][1] = doc["blocks"][1][:2]
    elif lie == "nan":
        doc["blocks"][0][0] = float("nan")
    elif lie == "negative":
        doc["blocks"][0][-1] = -1.0
    elif lie == "zero":
        doc["blocks"][1][0] = 0
    elif lie == "blocks":
        doc["blocks"] = doc["blocks"][:1]
    elif lie == "runtime":
        doc["runtime"] = "tvm"
    elif lie == "bool":
        doc["blocks"][0][0] = True
    elif lie == "string":
        doc["blocks"][0][0] = "1.0"
    text = json.dumps(doc)
    if lie == "two_lines":
        text = "motd: welcome\n" + text
    with pytest.raises(BadReply) as info:
        parse_reply(text.encode(), JOB)
    one_line(info.value)
