"""Hardware groups of benchmark-table device keys: one name per physical hardware, so that its
runtimes, tasks, batch sizes and copies are always held out together."""
from __future__ import annotations

import re

# Rules on names (not a device list): the same chip under several names maps to one group.
_CHIP_RULES: tuple[tuple[str, str], ...] = (
    (r"1080\s*-?ti|core-i7-7820x", "gtx1080ti-desktop"),  # Eagle's i7 and GTX files are near-duplicates
    (r"edge-?tpu", "edgetpu"),
    (r"adreno-?640|snapdragon-855-adreno", "snapdragon855-gpu"),
    (r"cortexa76|kryo-?485|snapdragon-855-kryo", "snapdragon855-cpu"),
    (r"hexagon-?690|snapdragon-855-hexagon", "snapdragon855-dsp"),
    (r"jetson[_-]?tx2", "jetson-tx2"),
)


def hardware_group(key: str) -> str:
    """One name per physical hardware: all its runtimes, tasks, batch sizes and copies share it."""
    low = key.lower()
    for pattern, group in _CHIP_RULES:
        if re.search(pattern, low):
            return group
    parts = low.split(":")
    source, name = parts[0], parts[1] if len(parts) > 1 else parts[0]
    if source == "oneproxy":
        name = re.sub(r"^(hwnasbench|nnmeter|eagle)_", "", name)
        name = re.sub(r"_(tflite|openvino)[0-9a-z]*$", "", name)
    if source in ("help", "help_ofa"):
        name = re.sub(r"_\d{1,3}$", "", name)  # batch sizes (model numbers have 4 digits)
    name = re.sub(r"-(int8|fp32|fp16)$", "", name)
    return name


def groups(keys: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k in keys:
        out.setdefault(hardware_group(k), []).append(k)
    return out
