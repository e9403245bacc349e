"""TVM target presets by name, and the merge of a preset with a device file's ``target``.

Targets are plain dicts because TVM 0.27 rejects target strings: ``tvm.target.Target(dict)``.
Board presets name the CPU so LLVM schedules for it; ``num-cores`` is what MetaSchedule assumes
when tuning (the runtime's thread count is set separately, by ``threads`` in the device file).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Callable

from modnas.profilers.errors import BadInput

AARCH64 = "aarch64-linux-gnu"

# keys accepted for an LLVM CPU target (a subset of TVM 0.27's "llvm" kind options)
LLVM_KEYS: frozenset[str] = frozenset(
    {"kind", "mtriple", "mcpu", "mattr", "mabi", "mfloat-abi", "num-cores", "opt-level", "keys", "tag",
     "vector-width", "fast-math", "libs"}
)
KINDS: frozenset[str] = frozenset({"llvm", "c"})

_BOARDS: dict[str, dict[str, Any]] = {
    # Raspberry Pi 4 (BCM2711): 4x Cortex-A72, Armv8.0-A with NEON
    "cortex-a72": {"kind": "llvm", "mtriple": AARCH64, "mcpu": "cortex-a72", "mattr": ["+neon"], "num-cores": 4},
    # Raspberry Pi 5 (BCM2712): 4x Cortex-A76, Armv8.2-A with dot product and half precision
    "cortex-a76": {"kind": "llvm", "mtriple": AARCH64, "mcpu": "cortex-a76",
                   "mattr": ["+neon", "+dotprod", "+fullfp16"], "num-cores": 4},
    # Jetson Orin (AGX 12 cores, NX 8, Nano 6): Cortex-A78AE; override num-cores in the device file
    "cortex-a78ae": {"kind": "llvm", "mtriple": AARCH64, "mcpu": "cortex-a78ae",
                     "mattr": ["+neon", "+dotprod", "+fullfp16"], "num-cores": 8},
}

# /proc/cpuinfo flag -> LLVM CPU name, best first, used when TVM cannot name the host CPU
_X86_FLAGS: tuple[tuple[str, str], ...] = (
    ("avx512f", "skylake-avx512"),
    ("avx2", "haswell"),
    ("avx", "sandybridge"),
    ("sse4_2", "nehalem"),
)


def detect_x86_mcpu(cpuinfo: str | None = None, use_tvm: bool = True) -> str | None:
    """LLVM's name for this machine's x86 CPU (TVM's LLVM host query, else /proc/cpuinfo flags), or None."""
    if use_tvm and cpuinfo is None:
        try:
            from tvm.target import codegen

            name = str(codegen.llvm_get_system_cpu())
            if name and name != "generic":
                return name
        except Exception:  # TVM built without LLVM or missing: fall back to the flags
            pass
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            break
    for flag, mcpu in _X86_FLAGS:
        if flag in flags:
            return mcpu
    return None


def _x86() -> dict[str, Any]:
    target: dict[str, Any] = {"kind": "llvm", "num-cores": os.cpu_count() or 1}
    if platform.machine().lower() in {"x86_64", "amd64", "i686", "i386"}:
        mcpu = detect_x86_mcpu()
        if mcpu:
            target["mcpu"] = mcpu
    return target


PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "x86": _x86,
    **{name: (lambda spec=spec: {k: (list(v) if isinstance(v, list) else v) for k, v in spec.items()})
       for name, spec in _BOARDS.items()},
}


def preset(name: str) -> dict[str, Any]:
    """A fresh copy of the preset ``name``."""
    if name not in PRESETS:
        raise BadInput(f"unknown TVM target preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


def validate_target(target: Any, where: str = "target") -> dict[str, Any]:
    """Check a target dict's keys and value types; raise BadInput naming the key. Returns a clean copy."""
    if not isinstance(target, dict):
        raise BadInput(f"{where}: expected a mapping such as {{kind: llvm, mtriple: {AARCH64}}}, got {type(target).__name__}")
    kind = target.get("kind")
    if kind not in KINDS:
        raise BadInput(f"{where}.kind: expected one of {', '.join(sorted(KINDS))}, got {kind!r}")
    clean: dict[str, Any] = {}
    for key, value in target.items():
        if key not in LLVM_KEYS:
            raise BadInput(f"{where}.{key}: unknown key (known: {', '.join(sorted(LLVM_KEYS))})")
        if key in {"mtriple", "mcpu", "mabi", "mfloat-abi", "tag", "kind"}:
            if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                raise BadInput(f"{where}.{key}: expected a word, got {value!r}")
        elif key in {"num-cores", "opt-level", "vector-width"}:
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "opt-level" else 1):
                raise BadInput(f"{where}.{key}: expected a positive integer, got {value!r}")
        elif key == "mattr":
            if not isinstance(value, list) or not all(isinstance(v, str) and v[:1] in "+-" and len(v) > 1 for v in value):
                raise BadInput(f"{where}.mattr: expected a list like ['+neon'], got {value!r}")
            value = list(value)
        elif key in {"keys", "libs"}:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise BadInput(f"{where}.{key}: expected a list of names, got {value!r}")
            value = list(value)
        elif key == "fast-math" and not isinstance(value, bool):
            raise BadInput(f"{where}.fast-math: expected true or false, got {value!r}")
        clean[key] = value
    return clean


def resolve_target(device_target: dict[str, Any] | None, preset_name: str | None = None) -> dict[str, Any]:
    """The TVM target for a build: the preset (default ``x86`` when neither is given), overridden key by key
    by the device file's ``target``. A device target alone is used as it is."""
    if device_target is None and preset_name is None:
        preset_name = "x86"
    base = preset(preset_name) if preset_name else {}
    if device_target is not None:
        checked = validate_target(dict(device_target), "target") if "kind" in device_target else device_target
        if not isinstance(checked, dict):
            raise BadInput(f"target: expected a mapping, got {type(checked).__name__}")
        base.update(checked)
    return validate_target(base, "target")


def target_arch(target: dict[str, Any]) -> str:
    """The CPU architecture the target compiles for (``x86_64``, ``aarch64``, ...); the host's when no mtriple."""
    triple = target.get("mtriple")
    if not triple:
        return host_arch()
    arch = str(triple).split("-", 1)[0].lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch, arch)


def host_arch() -> str:
    """This machine's architecture in the same spelling as :func:`target_arch`."""
    machine = platform.machine().lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def runs_here(target: dict[str, Any]) -> bool:
    """Whether code for ``target`` can be loaded and run on this machine."""
    return target_arch(target) == host_arch()


def check_with_tvm(target: dict[str, Any]) -> None:
    """Let TVM parse the target and LLVM confirm the CPU name; BadInput naming the problem."""
    import tvm
    from tvm.target import codegen

    try:
        tvm.target.Target(target)
    except Exception as exc:
        raise BadInput(f"target: TVM rejects {target}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    mcpu = target.get("mcpu")
    if target.get("kind") == "llvm" and mcpu:
        triple = target.get("mtriple") or str(tvm.target.Target({"kind": "llvm"}).attrs["mtriple"])
        if not codegen.llvm_is_valid_cpu(mcpu, triple):
            raise BadInput(f"target.mcpu: LLVM does not know CPU {mcpu!r} for {triple}")
