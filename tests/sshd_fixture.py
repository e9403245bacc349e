"""Board test helpers: a private sshd on loopback (the `sshd_board` fixture) and tiny ONNX models."""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import yaml

SSHD = "/usr/sbin/sshd"
QUICK_MEASUREMENT = {"warmup_s": 0.05, "min_runs": 5, "min_time_s": 0.05, "repeats": 2, "cooldown_s": 0.0}

_SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
AddressFamily inet
HostKey {root}/host_ed25519
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 50
LogLevel ERROR
Subsystem sftp internal-sftp
"""


def ed25519_pair(private_path: Path) -> str:
    """Write a fresh unencrypted OpenSSH ed25519 private key; return its public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _banner(port: int, proc: subprocess.Popen, wait_s: float = 10.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class SSHDBoard:
    """A loopback sshd that plays a board; every test connects to it with its own key and known_hosts."""

    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    python: str
    pid: int
    root: Path
    host_key_line: str

    def config(self, workdir: Path | str, **overrides: Any) -> SimpleNamespace:
        """An object with a device config's attributes (for code that takes any such object)."""
        fields = {
            "name": "loopback",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.key_file),
            "known_hosts": str(self.known_hosts),
            "host_key_policy": "strict",
            "python": self.python,
            "workdir": str(workdir),
            "runtime": "onnxruntime",
            "threads": 1,
            "measurement": dict(QUICK_MEASUREMENT, timeout_s=60.0),
            "energy": {"sensor": "none"},
        }
        fields.update(overrides)
        return SimpleNamespace(**fields)

    def device_yaml(self, tmp_path: Path, **overrides: Any) -> Path:
        """Write a device YAML file for this board (keys as in the public interface); its path."""
        doc = vars(self.config(tmp_path / "board-workdir"))
        doc.update(overrides)
        path = tmp_path / f"{doc['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def session_pids(self) -> list[int]:
        """Processes under this sshd (its per-connection sessions and what they run), deepest first."""
        import psutil

        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p.pid for p in reversed(children)]


@contextmanager
def loopback_sshd(root: Path) -> Iterator[SSHDBoard]:
    """A private `/usr/sbin/sshd` on a free loopback port under ``root``, stopped by PID on exit."""
    root.mkdir(parents=True, exist_ok=True)
    host_public = ed25519_pair(root / "host_ed25519")
    client_public = ed25519_pair(root / "client_ed25519")
    (root / "authorized_keys").write_text(client_public + "\n")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    log_path = root / "sshd.log"
    proc = None
    for _ in range(3):
        port = _free_port()
        (root / "sshd_config").write_text(_SSHD_CONFIG.format(port=port, root=root))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [SSHD, "-D", "-f", str(root / "sshd_config"), "-e"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        if _banner(port, proc):
            break
        _stop(proc)
        proc = None
    if proc is None:
        raise RuntimeError(f"sshd did not start: {log_path.read_text()[-500:]}")
    host_key_line = f"[127.0.0.1]:{port} {host_public}"
    (root / "known_hosts").write_text(host_key_line + "\n")
    board = SSHDBoard(
        host="127.0.0.1",
        port=port,
        user=getpass.getuser(),
        key_file=root / "client_ed25519",
        known_hosts=root / "known_hosts",
        python=sys.executable,
        pid=proc.pid,
        root=root,
        host_key_line=host_key_line,
    )
    try:
        yield board
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def sshd_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHDBoard]:
    """The loopback sshd board shared by the whole test session."""
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    with loopback_sshd(tmp_path_factory.mktemp("sshd")) as board:
        yield board


def leftover_processes(text: str, within_s: float = 10.0) -> list[str]:
    """Command lines of processes mentioning `text` still alive after up to `within_s` seconds."""
    import psutil

    deadline = time.monotonic() + within_s
    while True:
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if text in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid}: {cmdline[:200]}")
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _tiny_net(channels: int, depth: int) -> Any:
    import torch

    layers: list[Any] = [torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.ReLU()]
    for _ in range(depth - 1):
        layers += [torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU()]
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, 10)]
    return torch.nn.Sequential(*layers).eval()


def tiny_onnx(path: Path, channels: int = 8, depth: int = 1, size: int = 16) -> tuple[Path, list[int]]:
    """Export a tiny conv net to one ONNX file (opset 17, no side files); (path, input shape)."""
    import torch

    torch.manual_seed(channels * 31 + depth)
    shape = [1, 3, size, size]
    model = _tiny_net(channels, depth)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is the single-file one
        torch.onnx.export(model, (torch.randn(*shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    return path, shape
