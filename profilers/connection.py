"""Connections to a board: one SSH connection (paramiko) reused for every command, or this machine."""
from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from modnas.profilers.errors import BadInput, BoardError

HOST_KEY_POLICIES = ("strict", "accept-new")
_READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Completed:
    """What a finished command left: exit status, output and how long it took on this side."""

    rc: int  # -1 when the command ended without an exit status (killed by a signal)
    stdout: bytes
    stderr: bytes
    seconds: float


class CommandTimeout(BoardError):
    """A command ran past its timeout; it was stopped (channel closed or process group killed)."""


class ConnectionLost(BoardError):
    """The link to the board went away (socket closed, EOF, transport died)."""


class CommandAborted(BoardError):
    """The command was stopped from another thread (``abort``): the campaign is being interrupted."""


STOP_GRACE_S = 1.0  # an interrupted command gets this long after SIGTERM to clean up (the agent kills its worker)


@runtime_checkable
class Connection(Protocol):
    """What the rest of the toolkit may ask of a board link."""

    name: str

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> Completed: ...

    def put(self, local_path: str | Path, remote_path: str) -> None: ...

    def get(self, remote_path: str, local_path: str | Path) -> None: ...

    def exists(self, remote_path: str) -> bool: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Connection": ...

    def __exit__(self, *exc: object) -> None: ...


def check_argv(argv: list[str]) -> list[str]:
    """A non-empty list of strings without NUL bytes, or BadInput."""
    if not isinstance(argv, (list, tuple)) or not argv:
        raise BadInput("a board command must be a non-empty list of strings")
    for arg in argv:
        if not isinstance(arg, str) or "\x00" in arg:
            raise BadInput(f"bad argument for a board command: {arg!r}")
    return list(argv)


def check_remote_path(path: str) -> str:
    """An absolute POSIX path without control characters or '..' parts, or BadInput."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadInput(f"remote path must be absolute: {path!r}")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in path):
        raise BadInput(f"remote path has control characters: {path!r}")
    if ".." in path.split("/"):
        raise BadInput(f"remote path must not contain '..': {path!r}")
    return path


class _Base:
    """Context-manager plumbing shared by both connections."""

    name: str

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalConnection(_Base):
    """Runs commands on this machine (`host: local`); each in its own process group."""

    def __init__(self, name: str = "local") -> None:
        self.name = name
        self.label = f"board {name} (local)"
        self._running: set[subprocess.Popen] = set()
        self._aborted = False

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> Completed:
        argv = check_argv(argv)
        start = time.monotonic()
        if self._aborted:
            raise CommandAborted(f"{self.label}: stopped")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return Completed(127, b"", f"cannot start {argv[0]}: {exc}".encode(), time.monotonic() - start)
        self._running.add(proc)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            raise CommandTimeout(f"{self.label}: command timed out after {timeout:g} s: {argv[0]}") from None
        finally:
            self._running.discard(proc)
            if proc.poll() is None:  # interrupted (Ctrl-C, SIGTERM): the command and its group end with us
                _stop_group(proc)
        if self._aborted:
            raise CommandAborted(f"{self.label}: stopped during {argv[0]}")
        return Completed(proc.returncode, out, err, time.monotonic() - start)

    def abort(self) -> None:
        """From another thread: stop the running command (its process group) and refuse further ones."""
        self._aborted = True
        for proc in list(self._running):
            _stop_group(proc)

    def put(self, local_path: str | Path, remote_path: str) -> None:
        target = Path(check_remote_path(remote_path))
        tmp = target.with_name(f".{target.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BoardError(f"{self.label}: cannot copy {local_path} to {remote_path}: {exc}") from None

    def get(self, remote_path: str, local_path: str | Path) -> None:
        try:
            shutil.copyfile(check_remote_path(remote_path), local_path)
        except OSError as exc:
            raise BoardError(f"{self.label}: cannot copy {remote_path}: {exc}") from None

    def exists(self, remote_path: str) -> bool:
        return os.path.exists(check_remote_path(remote_path))

    def close(self) -> None:
        return None


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the command's process group (the agent then kills its worker and cleans up), SIGKILL what is left."""
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL (D state)
        pass


class _AcceptNewPolicy:
    """paramiko missing-key policy: add an unknown host key to known_hosts and save it."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(self.known_hosts, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    line = "\n" + line  # never glue our entry onto an unterminated last line
            fh.write(line.encode())


class _StrictPolicy:
    """paramiko missing-key policy: refuse, saying how to add the key."""

    def __init__(self, label: str, known_hosts: Path, host: str, port: int) -> None:
        self.label, self.known_hosts, self.host, self.port = label, known_hosts, host, port

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        scan = shlex.join(["ssh-keyscan", "-p", str(self.port), self.host])
        raise BoardError(
            f"{self.label}: unknown host key ({key.get_name()}); verify it, then add it with "
            f"`{scan} >> {self.known_hosts}` or set host_key_policy: accept-new"
        )


class SSHConnection(_Base):
    """One paramiko connection per board, made over our own TCP_NODELAY socket, reused for all commands."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 22,
        user: str | None = None,
        key_file: str | Path | None = None,
        known_hosts: str | Path = "~/.ssh/known_hosts",
        host_key_policy: str = "strict",
        connect_timeout: float = 10.0,
    ) -> None:
        import paramiko  # imported here: importing the toolkit stays cheap

        if host_key_policy not in HOST_KEY_POLICIES:
            raise BadInput(f"host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}: {host_key_policy!r}")
        self.name, self.host, self.port = name, host, int(port)
        self.label = f"board {name} ({host}:{self.port})"
        self._sftp: Any = None
        known = Path(os.path.expanduser(str(known_hosts)))
        client = paramiko.SSHClient()
        if known.exists():
            try:
                client.load_host_keys(str(known))
            except Exception as exc:  # paramiko raises InvalidHostKey (a bare Exception) for a corrupt line
                raise BadInput(f"cannot read known_hosts file {known}: {_one_line(exc)}") from None
        if host_key_policy == "strict":
            client.set_missing_host_key_policy(_StrictPolicy(self.label, known, host, self.port))
        else:
            client.set_missing_host_key_policy(_AcceptNewPolicy(known))
        key_path = Path(os.path.expanduser(str(key_file))) if key_file else None
        if key_path is not None and not key_path.is_file():
            raise BadInput(f"key_file not found: {key_path}")
        sock = self._open_socket(connect_timeout)
        try:
            client.connect(
                hostname=host,
                port=self.port,
                username=user,
                key_filename=str(key_path) if key_path else None,
                look_for_keys=key_path is None,
                allow_agent=key_path is None,
                sock=sock,
                timeout=connect_timeout,
                banner_timeout=connect_timeout,
                auth_timeout=connect_timeout,
                channel_timeout=connect_timeout,
            )
        except BoardError:
            client.close()
            sock.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            sock.close()
            entry = host if self.port == 22 else f"[{host}]:{self.port}"
            raise BoardError(
                f"{self.label}: HOST KEY MISMATCH ({exc.key.get_name()}): the board's key differs from "
                f"the one in {known}; if the board was re-installed, remove the old entry with "
                f"`{shlex.join(['ssh-keygen', '-R', entry, '-f', str(known)])}`"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            sock.close()
            raise BoardError(f"{self.label}: authentication failed for user {user!r}: {exc}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            sock.close()
            raise BoardError(f"{self.label}: cannot connect: {exc or type(exc).__name__}") from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        self._client = client
        self._transport = transport
        self._channels: set[Any] = set()
        self._aborted = False

    def _open_socket(self, timeout: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise BoardError(f"{self.label}: cannot connect: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle + delayed-ACK stalls per command
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # a board that vanishes is noticed mid-command
        for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3),
                              ("TCP_USER_TIMEOUT", 60_000)):  # unacked data (our 15 s keepalives) past 60 s: lost
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        sock.settimeout(None)  # paramiko's transport thread does its own polling
        return sock

    def _lost(self, why: object) -> ConnectionLost:
        return ConnectionLost(f"{self.label}: connection lost: {why}")

    def _check_alive(self) -> None:
        if self._transport is None or not self._transport.is_active():
            raise self._lost("the SSH transport is closed")

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> Completed:
        """Run argv (quoted with shlex.join) on the board; CommandTimeout past `timeout` seconds."""
        import paramiko

        command = shlex.join(check_argv(argv))
        start = time.monotonic()
        deadline = start + timeout
        if self._aborted:
            raise CommandAborted(f"{self.label}: stopped")
        self._check_alive()
        open_timeout = min(timeout, 30.0)
        try:
            chan = self._transport.open_session(timeout=open_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if time.monotonic() - start >= open_timeout:  # the link is up but the board's sshd does not answer
                raise self._lost(f"no answer within {open_timeout:g} s to opening a command channel") from None
            raise self._link_error(exc, "cannot open a command channel") from None
        self._channels.add(chan)
        try:
            chan.exec_command(command)
            if stdin:
                chan.settimeout(max(deadline - time.monotonic(), 0.001))
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = self._collect(chan, deadline, argv[0], timeout)
            rc = chan.recv_exit_status() if chan.status_event.is_set() else -1
        except socket.timeout:
            _send_kill(chan)
            chan.close()
            raise CommandTimeout(f"{self.label}: command timed out after {timeout:g} s: {argv[0]}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            chan.close()
            if self._aborted:
                raise CommandAborted(f"{self.label}: stopped during {argv[0]}") from None
            raise self._link_error(exc, f"command {argv[0]} failed") from None
        except BaseException:  # interrupted here (Ctrl-C, SIGTERM): the command on the board ends too
            _stop_channel(chan)
            raise
        finally:
            self._channels.discard(chan)
            if not chan.closed:
                chan.close()
        if self._aborted:
            raise CommandAborted(f"{self.label}: stopped during {argv[0]}")
        if rc == -1:  # no exit status: the link died, or the command was killed by a signal (rc stays -1)
            error = self._link_error(EOFError("the command's channel closed without an exit status"), "")
            if isinstance(error, ConnectionLost):
                raise error
        return Completed(rc, out, err, time.monotonic() - start)

    def _collect(self, chan: Any, deadline: float, what: str, timeout: float) -> tuple[bytes, bytes]:
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            while chan.recv_ready():
                out.append(chan.recv(_READ_CHUNK))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(_READ_CHUNK))
            if self._aborted:
                raise CommandAborted(f"{self.label}: stopped during {what}")
            if chan.closed or chan.eof_received:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _send_kill(chan)
                chan.close()
                raise CommandTimeout(f"{self.label}: command timed out after {timeout:g} s: {what}")
            if not self._transport.is_active():
                raise self._lost("the SSH transport closed during a command")
            select.select([chan], [], [], min(remaining, 1.0))
        while chan.recv_ready():
            out.append(chan.recv(_READ_CHUNK))
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(_READ_CHUNK))
        remaining = deadline - time.monotonic()
        if not chan.status_event.wait(max(remaining, 0.0)):
            _send_kill(chan)
            chan.close()
            raise CommandTimeout(f"{self.label}: command timed out after {timeout:g} s: {what}")
        return b"".join(out), b"".join(err)

    def _sftp_client(self, timeout: float) -> Any:
        import paramiko

        self._check_alive()
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._link_error(exc, "cannot start SFTP") from None
        self._sftp.get_channel().settimeout(timeout)
        return self._sftp

    def _link_error(self, exc: BaseException, what: str) -> BoardError:
        """ConnectionLost when the link died under a call, else a BoardError saying what failed."""
        deadline = time.monotonic() + 2.0
        while self._transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)  # give the transport thread a moment to see a closed socket
        if not self._transport.is_active():
            return self._lost(_one_line(exc))
        return BoardError(f"{self.label}: {what}: {_one_line(exc)}")

    def _sftp_error(self, exc: BaseException, what: str) -> BoardError:
        """Like _link_error for SFTP calls; status replies (no such file, permission) fail fast."""
        import paramiko

        if isinstance(exc, (paramiko.SSHException, EOFError, TimeoutError, ConnectionError)):
            sftp, self._sftp = self._sftp, None  # a broken SFTP channel is reopened on the next call
            error = self._link_error(exc, what)
            if sftp is not None and not isinstance(error, ConnectionLost):
                sftp.close()
            return error
        return BoardError(f"{self.label}: {what}: {_one_line(exc)}")

    def put(self, local_path: str | Path, remote_path: str, timeout: float = 300.0) -> None:
        """Upload atomically: to a temporary name beside the target, then rename."""
        remote_path = check_remote_path(remote_path)
        head, _, tail = remote_path.rpartition("/")
        tmp = f"{head}/.{tail}.part-{uuid.uuid4().hex[:8]}"
        sftp = self._sftp_client(timeout)
        try:
            sftp.put(str(local_path), tmp, confirm=True)
            sftp.posix_rename(tmp, remote_path)
        except Exception as exc:
            error = self._sftp_error(exc, f"cannot upload {local_path} to {remote_path}")
            if not isinstance(error, ConnectionLost) and self._sftp is not None:
                _quiet_remove(self._sftp, tmp)
            raise error from None

    def get(self, remote_path: str, local_path: str | Path, timeout: float = 300.0) -> None:
        sftp = self._sftp_client(timeout)
        try:
            sftp.get(check_remote_path(remote_path), str(local_path))
        except BadInput:
            raise
        except Exception as exc:
            raise self._sftp_error(exc, f"cannot download {remote_path}") from None

    def exists(self, remote_path: str, timeout: float = 30.0) -> bool:
        sftp = self._sftp_client(timeout)
        try:
            sftp.stat(check_remote_path(remote_path))
        except FileNotFoundError:
            return False
        except BadInput:
            raise
        except Exception as exc:
            raise self._sftp_error(exc, f"cannot stat {remote_path}") from None
        return True

    def abort(self) -> None:
        """From another thread: stop the running commands on the board and refuse further ones."""
        self._aborted = True
        for chan in list(self._channels):
            _stop_channel(chan)

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._client.close()


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _send_kill(chan: Any, name: str = "KILL") -> None:
    """Ask sshd to signal the command (RFC 4254 "signal" request, KILL by default); best effort, servers may
    ignore it."""
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message

    try:
        msg = Message()
        msg.add_byte(cMSG_CHANNEL_REQUEST)
        msg.add_int(chan.remote_chanid)
        msg.add_string("signal")
        msg.add_boolean(False)
        msg.add_string(name)
        chan.transport._send_user_message(msg)
    except Exception:  # the channel or link is already gone: nothing left to signal
        pass


def _stop_channel(chan: Any) -> None:
    """End a command over SSH: SIGTERM it (the agent kills its worker and cleans up), then close the channel
    (an agent whose reply channel is gone stops its worker too, should sshd not pass signals on)."""
    if chan.closed:
        return
    _send_kill(chan, "TERM")
    try:
        chan.close()
    except Exception:  # the link is already gone
        pass


def _quiet_remove(sftp: Any, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, EOFError):
        pass


def open_connection(cfg: Any, connect_timeout: float | None = None) -> Connection:
    """A connection for a device config (any object with name, host, port, user, key_file, known_hosts, ...);
    ``host: local`` or an SSH host (replay boards are built by the toolkit from their tables)."""
    name = str(cfg.name)
    if cfg.host == "local":
        return LocalConnection(name)
    if cfg.host == "replay":  # its tables are read with the search space's canonical forms, above this layer
        raise BadInput(f"device {name} is a replay board: open it with modnas.toolkit.workflow.profiling.connect")
    timeout = connect_timeout if connect_timeout is not None else float(getattr(cfg, "connect_timeout", 10.0))
    return SSHConnection(
        name=name,
        host=str(cfg.host),
        port=int(getattr(cfg, "port", 22) or 22),
        user=getattr(cfg, "user", None),
        key_file=getattr(cfg, "key_file", None),
        known_hosts=getattr(cfg, "known_hosts", None) or "~/.ssh/known_hosts",
        host_key_policy=getattr(cfg, "host_key_policy", None) or "strict",
        connect_timeout=timeout,
    )


__all__ = [
    "Completed",
    "CommandTimeout",
    "Connection",
    "CommandAborted",
    "ConnectionLost",
    "LocalConnection",
    "SSHConnection",
    "open_connection",
    "check_argv",
    "check_remote_path",
]
