"""Pack `profilers/board/` into one deterministic zipapp (`agent.pyz`) for the board."""
from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

BOARD_DIR = Path(__file__).resolve().parent / "board"
PACKAGE = "modnas_board"  # the package name the board code has inside the zipapp
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAIN = (
    '"""Start the modnas board agent packed in this file."""\n'
    "import runpy\n\n"
    f'runpy.run_module("{PACKAGE}", run_name="__main__", alter_sys=False)\n'
)


@dataclass(frozen=True)
class AgentPack:
    """The zipapp's bytes, its sha256 and the file name the board keeps it under."""

    data: bytes
    sha256: str

    @property
    def filename(self) -> str:
        return f"agent-{self.sha256[:12]}.pyz"


def _sources(root: Path) -> list[tuple[str, bytes]]:
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or any(part.startswith(".") for part in rel.parts):
            continue
        files.append((f"{PACKAGE}/{rel.as_posix()}", path.read_bytes()))
    return sorted(files)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 3
    return info


def pack_dir(root: Path) -> AgentPack:
    """Zip the board package at `root`: fixed timestamps and modes, sorted entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_entry("__main__.py"), _MAIN.encode())
        for name, data in _sources(root):
            zf.writestr(_entry(name), data, compresslevel=9)
    data = buf.getvalue()
    return AgentPack(data, hashlib.sha256(data).hexdigest())


@functools.lru_cache(maxsize=1)
def build_agent() -> AgentPack:
    """The agent zipapp for this checkout, built once per process."""
    return pack_dir(BOARD_DIR)
