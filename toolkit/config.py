"""Typed configuration: device files (YAML) validated once, with one-line errors."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modnas.exporters.tvm_tune import TvmRpcSettings
from modnas.toolkit.errors import BadInput
from modnas.toolkit.names import NAME_RE

HOST_RE = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")
REMOTE_PATH_RE = re.compile(r"^[A-Za-z0-9_./~+-]{1,255}$")
DEVICE_CONFIG_DIR = Path(__file__).resolve().parents[1] / "device_configs"
THIS_MACHINE = ("local", "replay")  # hosts whose agent runs on this machine: `python` defaults to sys.executable


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasurementSettings(Strict):
    """The timing protocol run on the board."""

    warmup_s: float = Field(1.0, ge=0, le=600)
    min_runs: int = Field(50, ge=1, le=1_000_000)
    min_time_s: float = Field(1.0, ge=0, le=3600)
    repeats: int = Field(3, ge=1, le=100)
    cooldown_s: float = Field(0.1, ge=0, le=600)
    timeout_s: float = Field(300.0, gt=0, le=86400)
    # language models (a space whose board artifact has a prefill companion, e.g. gpt): the tokens held
    # in the key/value cache while one token is decoded (latency), and the prompt's tokens (prefill)
    context: int = Field(128, ge=1, le=65536)
    prompt: int = Field(128, ge=1, le=65536)

    def key(self) -> str:
        """A stable text key: measurements taken with other settings are not reused (``context`` and
        ``prompt`` join it in :meth:`lm_key`, for the spaces they concern)."""
        return (f"w{self.warmup_s:g}-n{self.min_runs}-t{self.min_time_s:g}"
                f"-r{self.repeats}-c{self.cooldown_s:g}")

    def lm_key(self) -> str:
        """The key's part for a language model: the decode context and the prefill prompt."""
        return f"x{self.context}-p{self.prompt}"


class EnergySettings(Strict):
    """Which on-board sensor to integrate, and how."""

    sensor: Literal["none", "rapl", "ina3221", "tegrastats", "nvml", "command", "replay"] = "none"
    domain: str | None = None
    rail: str | None = None
    root: str | None = None
    command: str | None = None
    index: int | None = None
    interval_ms: int = Field(100, ge=1, le=60_000)
    idle_s: float = Field(2.0, ge=0, le=600)
    min_samples: int = Field(10, ge=1, le=100_000)
    # finer controls of the on-board meter and sensors (None: the sensor's own default)
    mode: Literal["auto", "energy", "power"] | None = None       # nvml: counter or power polling
    stream: bool | None = None                                    # command: reads a streaming command
    timeout_s: float | None = Field(None, gt=0, le=600)           # command: per reading
    poll_ms: float | None = Field(None, gt=0, le=60_000)
    lag_s: float | Literal["auto"] | None = None                  # sensor reports late by this much
    method: Literal["trapezoid", "updates"] | None = None         # updates: for monitors that average
    min_time_s: float | None = Field(None, ge=0, le=3600)
    max_time_s: float | None = Field(None, gt=0, le=3600)
    probe_s: float | None = Field(None, gt=0, le=600)


def _default_python(host: str) -> str:
    """The board's interpreter when the device file names none: this one for the agent run here, else python3."""
    return sys.executable if host in THIS_MACHINE else "python3"


class ReplaySettings(Strict):
    """A replay board's tables (CSV ``arch,value``: ms, mJ, and ms of prefill) and the noise its measurements carry."""

    latency: str
    energy: str | None = None
    prefill: str | None = None                # a language model's prompt time (ms), beside its decode latency
    noise: float = Field(0.0, ge=0, le=1.0)   # relative spread of the log-normal factor (0: the table's values)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    space: str | None = None                  # the tables' search space (default: found from the first row)

    @field_validator("latency", "energy", "prefill")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(ord(ch) < 32 for ch in v)):
            raise ValueError("give the path of a CSV file")
        return v


class DeviceConfig(Strict):
    """One board, as written in a device YAML file."""

    name: str
    host: str = "local"
    port: int = Field(22, ge=1, le=65535)
    user: str | None = None
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    connect_timeout: float = Field(10.0, gt=0, le=600)
    python: str = Field(default_factory=lambda data: _default_python(data.get("host", "local")))
    workdir: str = "/tmp/modnas"
    runtime: Literal["onnxruntime", "tvm", "tensorrt", "executorch", "replay"] = "onnxruntime"
    threads: int = Field(1, ge=1, le=1024)
    # int8: profiling measures each architecture's static INT8 (QDQ) ONNX model (onnxruntime)
    precision: Literal["fp32", "int8"] = "fp32"
    target: dict[str, Any] | None = None
    tvm_rpc: TvmRpcSettings | None = None  # `export --tune` times candidates there (else: here, if the target runs here)
    measurement: MeasurementSettings = MeasurementSettings()
    energy: EnergySettings = EnergySettings()
    replay: ReplaySettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_host(cls, data: Any) -> Any:
        """Defaults that depend on the host: this machine's interpreter; a replay board's runtime and sensor."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("host") == "replay":
            data.setdefault("runtime", "replay")
            replay = data.get("replay")
            if "energy" not in data and isinstance(replay, dict) and replay.get("energy"):
                data["energy"] = {"sensor": "replay"}
        return data

    @model_validator(mode="after")
    def _replay_consistent(self) -> "DeviceConfig":
        if self.host == "replay":
            if self.replay is None:
                raise ValueError("host: replay needs replay: {latency: TABLE.csv, ...}")
            if self.runtime != "replay":
                raise ValueError(f"a replay board has only the replay runtime, not {self.runtime!r}")
            if self.energy.sensor not in ("none", "replay"):
                raise ValueError(f"a replay board has only the replay energy sensor, not {self.energy.sensor!r}")
            if self.energy.sensor == "replay" and not self.replay.energy:
                raise ValueError("energy sensor replay needs an energy table (replay.energy)")
        else:
            if self.replay is not None:
                raise ValueError("replay tables are for host: replay")
            if self.runtime == "replay" or self.energy.sensor == "replay":
                raise ValueError("the replay runtime and sensor are only on host: replay")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("use letters, digits, '-' and '_' only")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not HOST_RE.match(v) or v.startswith("-"):
            raise ValueError("not a host name or address")
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[a-z_][a-z0-9_.-]{0,31}$", v):
            raise ValueError("not a user name")
        return v

    @field_validator("workdir", "python")
    @classmethod
    def _remote_path(cls, v: str) -> str:
        if not REMOTE_PATH_RE.match(v) or ".." in v.split("/") or v.startswith("-"):
            raise ValueError("use a plain path (letters, digits, '_', '.', '/', '~', '+', '-')")
        return v

    @property
    def is_local(self) -> bool:
        return self.host == "local"

    @property
    def is_replay(self) -> bool:
        return self.host == "replay"

    def for_store(self) -> dict[str, Any]:
        """The config as the store keeps it: a defaulted interpreter stays a default (the loading process's)."""
        exclude = None if "python" in self.model_fields_set or self.host not in THIS_MACHINE else {"python"}
        return self.model_dump(mode="json", exclude=exclude)

    @property
    def address(self) -> str:
        return "local" if self.is_local else f"{self.host}:{self.port}"


def _first_error(err: ValidationError, source: str) -> BadInput:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "file"
    if e["type"] == "extra_forbidden":
        return BadInput(f"{source}: unknown key {where!r}")
    if e["type"] == "missing":
        return BadInput(f"{source}: missing required key {where!r}")
    msg = str(e["msg"]).removeprefix("Value error, ")
    return BadInput(f"{source}: {msg}" if not e["loc"] else f"{source}: {where}: {msg}")


def _replay_paths(data: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """A replay board's table paths made absolute: relative ones are relative to the device file's folder."""
    replay = data.get("replay")
    if data.get("host") != "replay" or not isinstance(replay, dict):
        return data
    replay = dict(replay)
    for key in ("latency", "energy", "prefill"):
        value = replay.get(key)
        if isinstance(value, str) and value.strip():
            path = Path(os.path.expanduser(value))
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            replay[key] = str(path.resolve())
    return dict(data, replay=replay)


def parse_device(data: Any, source: str = "device file", base_dir: Path | None = None) -> DeviceConfig:
    """Validate a mapping as a device file; the first problem becomes one line.

    A replay board's tables are read and checked here, so a bad table stops a command before it writes anything."""
    if not isinstance(data, dict):
        raise BadInput(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    for key in data:
        if isinstance(key, str) and "password" in key.lower():
            raise BadInput(f"{source}: {key!r}: passwords are not accepted; use a key file or ssh-agent")
    try:
        cfg = DeviceConfig.model_validate(_replay_paths(data, base_dir))
    except ValidationError as err:
        raise _first_error(err, source) from None
    if cfg.replay is not None:
        from modnas.toolkit.data.replay_tables import load_tables

        load_tables(cfg)
    return cfg


def read_device_file(path: Path) -> DeviceConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BadInput(f"{path}: cannot read device file: {err.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: device file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise BadInput(f"{path}:{where} malformed YAML: {getattr(err, 'problem', err)}") from None
    return parse_device(data, str(path), base_dir=path.resolve().parent)


def load_device(ref: str, stored: dict[str, Any] | None = None) -> DeviceConfig:
    """A device from a YAML path, a device already in the store, or a file in device_configs/."""
    path = Path(os.path.expanduser(ref))
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise BadInput(f"{ref}: no such device file")
        return read_device_file(path)
    if stored is not None:
        return parse_device(stored, f"stored device {ref!r}")
    for suffix in (".yaml", ".yml"):
        candidate = DEVICE_CONFIG_DIR / f"{ref}{suffix}"
        if NAME_RE.match(ref) and candidate.exists():
            return read_device_file(candidate)
    raise BadInput(f"unknown device {ref!r}: give a device YAML file, a device in the store (`modnas devices`), "
                   f"or a name from device_configs/")


def device_ref(ref: str, store: Any) -> DeviceConfig:
    """``DEVICE`` as the commands take it: a device YAML file, a device in ``store`` (a ``Store``) with a board
    to reach, or the name of a file in device_configs/. A device known only from imported measurements has
    no board: its name is then looked up as a file."""
    stored = store.get_device(ref) if NAME_RE.match(ref) else None
    if stored is not None and set(stored) == {"name"}:
        stored = None
    return load_device(ref, stored)


def modnas_home() -> Path:
    return Path(os.path.expanduser(os.environ.get("MODNAS_HOME", "~/.modnas")))


def default_db() -> Path:
    return modnas_home() / "modnas.db"


def data_dir(value: str | Path | None) -> Path:
    """The measured tables' directory (laid out as ``shared/data``), checked to be one."""
    if not value:
        raise BadInput("give the measured tables with `data_dir` DIR (or set MODNAS_DATA)", param="data_dir")
    path = Path(os.path.expanduser(str(value)))
    if not path.is_dir():
        raise BadInput(f"`data_dir` {str(value)!r}: not a directory", param="data_dir")
    return path
