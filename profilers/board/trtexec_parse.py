"""Parse the text that ``trtexec`` prints: its timing summary, TensorRT version and device.

Shared by the board (the TensorRT runtime's trtexec fallback) and the host (``modnas.exporters.tensorrt``);
stdlib only and Python 3.8 compatible. Handles both layouts trtexec has used:
- TensorRT 8 and 10: ``=== Performance summary ===`` then one line per metric, e.g.
  ``Latency: min = 4.8 ms, max = ..., mean = ..., median = ..., percentile(90%) = ..., percentile(99%) = ...``;
- TensorRT 7: a block per metric (``Host Latency``, ``Enqueue Time``, ``GPU Compute``) with
  ``min: 1.6 ms (end to end 1.7 ms)`` ... ``percentile: 1.7 ms at 99% (end to end 3.0 ms at 99%)``.
All times in the result are milliseconds except the ``*_s`` totals.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

_PREFIX = re.compile(r"^\s*\[[^\]]*\]\s*\[[A-Z]\]\s?")
_NUM = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*" + _NUM + r"\s*ms")
_VERSION_TAG = re.compile(r"\[TensorRT v(\d+)\]")
_VERSION_LINE = re.compile(r"TensorRT version:\s*(\d+(?:\.\d+)+)")
_RESULT = re.compile(r"^&&&& (PASSED|FAILED|RUNNING) TensorRT\.trtexec")

# summary line label -> result key
_METRICS = {
    "Latency": "latency_ms",
    "End-to-End Host Latency": "end_to_end_ms",
    "Enqueue Time": "enqueue_ms",
    "H2D Latency": "h2d_ms",
    "GPU Compute Time": "gpu_compute_ms",
    "D2H Latency": "d2h_ms",
}
# TensorRT 7 block header -> result key
_BLOCKS = {"Host Latency": "latency_ms", "Enqueue Time": "enqueue_ms", "H2D Latency": "h2d_ms",
           "GPU Compute": "gpu_compute_ms", "GPU Compute Time": "gpu_compute_ms", "D2H Latency": "d2h_ms"}
_LEGACY_STAT = re.compile(r"^(min|max|mean|median):\s*" + _NUM + r"\s*ms(?:\s*\(end to end\s*" + _NUM + r"\s*ms\))?")
_LEGACY_PCT = re.compile(r"^percentile:\s*" + _NUM + r"\s*ms at (\d+(?:\.\d+)?)%(?:\s*\(end to end\s*" + _NUM + r"\s*ms)?")


def version_from_tag(number: int) -> str:
    """``[TensorRT v8601]`` -> ``8.6.1``; ``v100200`` -> ``10.2.0`` (major*1000+minor*100+patch before 10,
    major*10000+minor*100+patch from 10 on)."""
    if number >= 10000:
        return "%d.%d.%d" % (number // 10000, (number // 100) % 100, number % 100)
    return "%d.%d.%d" % (number // 1000, (number // 100) % 10, number % 100)


def _stat_key(name: str, pct: Optional[str]) -> str:
    if pct is None:
        return name
    return "p%s" % (pct[:-2] if pct.endswith(".0") else pct)


def parse_stats(text: str) -> Dict[str, float]:
    """``min = 1 ms, max = 2 ms, ..., percentile(99%) = 3 ms`` -> {min, max, ..., p99}."""
    return {_stat_key(m.group(1).split("(")[0], m.group(2)): float(m.group(3)) for m in _STAT.finditer(text)}


def parse_trtexec(text: str) -> dict:
    """Everything found in a trtexec log; absent fields are None. ``layout`` says which format matched
    (``summary``, ``legacy`` or None when no timing was found)."""
    result = {
        "tensorrt_version": None, "device": None, "compute_capability": None, "status": None, "layout": None,
        "throughput_qps": None, "total_host_walltime_s": None, "total_gpu_compute_s": None,
    }  # type: dict
    for key in set(_METRICS.values()):
        result[key] = None
    block = None  # type: Optional[str]
    in_summary = False
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw).strip()
        status = _RESULT.match(raw.strip())
        if status:
            if status.group(1) != "RUNNING" or result["status"] is None:
                result["status"] = status.group(1).lower()
        tag = _VERSION_TAG.search(raw)
        if tag and result["tensorrt_version"] is None:
            result["tensorrt_version"] = version_from_tag(int(tag.group(1)))
        vline = _VERSION_LINE.search(line)
        if vline:
            result["tensorrt_version"] = vline.group(1)
        if line.startswith("Selected Device:"):
            result["device"] = line.split(":", 1)[1].strip() or None
        elif line.startswith("Compute Capability:"):
            result["compute_capability"] = line.split(":", 1)[1].strip() or None
        if line == "=== Performance summary ===":
            in_summary, block = True, None
            result["layout"] = "summary"
            continue
        if line.startswith("===") and line != "=== Performance summary ===":
            in_summary = False
        label, sep, rest = line.partition(":")
        if sep and label in _METRICS and (in_summary or _STAT.search(rest)):
            stats = parse_stats(rest)
            if stats:
                result[_METRICS[label]] = stats
                result["layout"] = result["layout"] or "summary"
                continue
        if sep and label == "Throughput":
            result["throughput_qps"] = _number(rest)
            continue
        if sep and label == "Total Host Walltime":
            result["total_host_walltime_s"] = _number(rest)
            continue
        if sep and label == "Total GPU Compute Time":
            result["total_gpu_compute_s"] = _number(rest)
            continue
        if line in _BLOCKS:
            block = _BLOCKS[line]
            continue
        if block is not None:
            if _legacy_line(result, block, line):
                result["layout"] = result["layout"] or "legacy"
            elif line and not line.startswith("Average on"):
                block = None
    return result


def _legacy_line(result: dict, block: str, line: str) -> bool:
    """Fold one TensorRT 7 block line into ``result``; False when the line is not part of a block."""
    stat = _LEGACY_STAT.match(line)
    if stat:
        _put(result, block, stat.group(1), float(stat.group(2)))
        if stat.group(3) is not None and block == "latency_ms":
            _put(result, "end_to_end_ms", stat.group(1), float(stat.group(3)))
        return True
    pct = _LEGACY_PCT.match(line)
    if pct:
        key = "p" + (pct.group(2)[:-2] if pct.group(2).endswith(".0") else pct.group(2))
        _put(result, block, key, float(pct.group(1)))
        if pct.group(3) is not None and block == "latency_ms":
            _put(result, "end_to_end_ms", key, float(pct.group(3)))
        return True
    low = line.lower()
    if block == "latency_ms" and low.startswith("throughput:"):
        result["throughput_qps"] = _number(line.split(":", 1)[1])
        return True
    if low.startswith("walltime:"):
        if block == "latency_ms":
            result["total_host_walltime_s"] = _number(line.split(":", 1)[1])
        return True
    if low.startswith("total compute time:"):
        if block == "gpu_compute_ms":
            result["total_gpu_compute_s"] = _number(line.split(":", 1)[1])
        return True
    return False


def _put(result: dict, key: str, stat: str, value: float) -> None:
    if result.get(key) is None:
        result[key] = {}
    result[key][stat] = value


def _number(text: str) -> Optional[float]:
    match = re.search(_NUM, text)
    return float(match.group(1)) if match else None


def last_error(text: str) -> str:
    """The most telling error line of a failed trtexec run (for a one-line message)."""
    lines = [_PREFIX.sub("", raw).strip() for raw in text.splitlines()]
    flagged = [raw for raw in text.splitlines() if "[E]" in raw]
    if flagged:
        return _PREFIX.sub("", flagged[-1]).strip()
    for line in reversed(lines):
        if line and not line.startswith("&&&&"):
            return line
    return "no output"

