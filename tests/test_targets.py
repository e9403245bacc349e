"""TVM target presets and their merge with a device file's ``target``."""
from __future__ import annotations

import pytest

from modnas.exporters.targets import (PRESETS, check_with_tvm, detect_x86_mcpu, host_arch, preset,
                                      resolve_target, runs_here, target_arch, validate_target)
from modnas.toolkit.errors import BadInput

BOARD_PRESETS = [name for name in PRESETS if name != "x86"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_accepted_by_tvm(name: str) -> None:
    target = preset(name)
    assert validate_target(target) == target
    check_with_tvm(target)  # TVM parses it and LLVM knows the CPU for the triple


@pytest.mark.parametrize("name", BOARD_PRESETS)
def test_board_presets_cross_compile_for_aarch64(name: str) -> None:
    target = preset(name)
    assert target["mtriple"] == "aarch64-linux-gnu"
    assert target["mcpu"] == name
    assert "+neon" in target["mattr"]
    assert target["num-cores"] >= 4
    assert target_arch(target) == "aarch64"


def test_presets_are_fresh_copies() -> None:
    first = preset("cortex-a72")
    first["mattr"].append("+crc")
    assert preset("cortex-a72")["mattr"] == ["+neon"]


def test_x86_preset_names_the_host_cpu_when_on_x86() -> None:
    target = preset("x86")
    assert "mtriple" not in target and target["kind"] == "llvm"
    if host_arch() == "x86_64":
        assert target.get("mcpu"), "the host CPU should be detected on x86"
        assert runs_here(target)


@pytest.mark.parametrize("flags,expected", [
    ("fpu sse sse2 sse4_1 sse4_2 avx avx2 fma avx512f avx512bw", "skylake-avx512"),
    ("fpu sse sse2 sse4_2 avx avx2 fma", "haswell"),
    ("fpu sse sse2 sse4_2 avx", "sandybridge"),
    ("fpu sse sse2 sse4_2", "nehalem"),
    ("fpu sse sse2", None),
])
def test_x86_detection_from_cpuinfo_flags(flags: str, expected: str | None) -> None:
    cpuinfo = f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
    assert detect_x86_mcpu(cpuinfo) == expected


def test_device_target_overrides_preset_key_by_key() -> None:
    merged = resolve_target({"num-cores": 12}, "cortex-a78ae")
    assert merged["num-cores"] == 12 and merged["mcpu"] == "cortex-a78ae"
    alone = resolve_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}, None)
    assert alone == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    assert resolve_target(None, None) == resolve_target(None, "x86")


@pytest.mark.parametrize("target,key", [
    ({"kind": "llvm", "mcpux": "cortex-a72"}, "mcpux"),
    ({"kind": "cuda"}, "kind"),
    ({"kind": "llvm", "mattr": "+neon"}, "mattr"),
    ({"kind": "llvm", "mattr": ["neon"]}, "mattr"),
    ({"kind": "llvm", "num-cores": 0}, "num-cores"),
    ({"kind": "llvm", "num-cores": True}, "num-cores"),
    ({"kind": "llvm", "mtriple": "aarch64 linux"}, "mtriple"),
])
def test_bad_targets_name_the_key(target: dict, key: str) -> None:
    with pytest.raises(BadInput, match=f"target.{key}"):
        resolve_target(target, None)


def test_partial_device_target_needs_a_preset_and_unknown_presets_fail() -> None:
    with pytest.raises(BadInput, match="kind"):
        resolve_target({"num-cores": 4}, None)
    with pytest.raises(BadInput, match="cortex-a53"):
        resolve_target(None, "cortex-a53")


def test_llvm_rejects_an_unknown_cpu() -> None:
    with pytest.raises(BadInput, match="mcpu"):
        check_with_tvm({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-z99"})
