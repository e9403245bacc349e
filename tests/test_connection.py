"""Connections: a real loopback sshd (paramiko) and this machine; quoting, host keys, timeouts, lost links."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from sshd_fixture import ed25519_pair, leftover_processes

from modnas.profilers.connection import (CommandTimeout, ConnectionLost, LocalConnection, SSHConnection,
                                         open_connection)
from modnas.toolkit.errors import BadInput, BoardError

ECHO_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def hostile_args(marker: Path) -> list[str]:
    """Arguments a shell would act on; each must arrive as the same literal string."""
    m = str(marker)
    return [f"; touch {m}", f"$(touch {m})", f"`touch {m}`", f"&& touch {m} #", f"| tee {m}", "'", '"', "*",
            "a b\tc", "\\n", "$HOME", "-rf", "", "~", f"\n touch {m}"]


@pytest.fixture()
def ssh(sshd_board, tmp_path):
    with open_connection(sshd_board.config(tmp_path / "w")) as conn:
        yield conn


@pytest.mark.parametrize("where", ["ssh", "local"])
def test_shell_metacharacters_arrive_as_literals(where: str, sshd_board, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    args = hostile_args(marker)
    cfg = sshd_board.config(tmp_path / "w", host="local" if where == "local" else sshd_board.host)
    with open_connection(cfg) as conn:
        assert isinstance(conn, LocalConnection if where == "local" else SSHConnection)
        done = conn.run([sys.executable, "-c", ECHO_ARGV, *args], timeout=30)
    assert done.rc == 0, done.stderr
    assert json.loads(done.stdout) == args
    assert not marker.exists()


def test_exit_status_stderr_and_stdin_over_ssh(ssh) -> None:
    done = ssh.run([sys.executable, "-c", "import sys; sys.stderr.write('bad things'); sys.exit(7)"], timeout=30)
    assert (done.rc, done.stderr, done.stdout) == (7, b"bad things", b"")
    payload = bytes(range(256)) * 2000  # more than one SSH window of binary data both ways
    code = "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1])"
    done = ssh.run([sys.executable, "-c", code], timeout=30, stdin=payload)
    assert done.rc == 0 and done.stdout == payload[::-1]
    done = ssh.run([sys.executable, "-c", "import sys; sys.stdout.write('x' * 300000); sys.stderr.write('y' * 300000)"],
                   timeout=30)
    assert len(done.stdout) == 300000 and len(done.stderr) == 300000
    assert ssh.run(["true"], timeout=30).rc == 0  # the same connection serves every command


def test_sftp_put_get_exists(ssh, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(70000))
    remote = str(tmp_path / "remote.bin")
    assert ssh.exists(remote) is False
    ssh.put(src, remote)
    assert ssh.exists(remote) is True
    assert [p.name for p in tmp_path.iterdir() if ".part-" in p.name] == []
    back = tmp_path / "back.bin"
    ssh.get(remote, back)
    assert back.read_bytes() == src.read_bytes()
    with pytest.raises(BoardError, match="cannot upload"):
        ssh.put(src, str(tmp_path / "no-such-dir" / "x.bin"))
    with pytest.raises(BadInput):
        ssh.put(src, "relative/path")
    with pytest.raises(BadInput):
        ssh.exists(str(tmp_path / ".." / "etc"))


def test_bad_argv_is_refused_before_sending(ssh) -> None:
    for argv in ([], ["echo", "a\x00b"], "echo hi", ["echo", 3]):
        with pytest.raises(BadInput):
            ssh.run(argv, timeout=5)  # type: ignore[arg-type]


def test_ssh_command_timeout_stops_the_command_and_keeps_the_link(ssh, tmp_path: Path) -> None:
    tag = f"sleeper-{tmp_path.name}"
    with pytest.raises(CommandTimeout, match="timed out after 0.5 s"):
        ssh.run([sys.executable, "-c", "import sys, time; time.sleep(3)", tag], timeout=0.5)
    assert ssh.run(["echo", "still here"], timeout=30).stdout == b"still here\n"
    # sshd honours the KILL signal request only for non-root logins; the short sleeper ends by itself
    assert leftover_processes(tag, within_s=15.0) == []


def test_local_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    tag = f"grandchild-{tmp_path.name}"
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
            f"{tag!r}]); time.sleep(60)")
    with LocalConnection("here") as conn:
        with pytest.raises(CommandTimeout):
            conn.run([sys.executable, "-c", code], timeout=1.0)
        assert leftover_processes(tag) == []
        assert conn.run(["sh", "-c", "exit 4"], timeout=10).rc == 4
        assert conn.run(["/no/such/program"], timeout=10).rc == 127


def _known_hosts_with(path: Path, port: int, public_line: str) -> Path:
    path.write_text(f"[127.0.0.1]:{port} {public_line}\n")
    return path


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_mismatched_host_key_is_always_refused(policy: str, sshd_board, tmp_path: Path) -> None:
    other = ed25519_pair(tmp_path / "other_host_key")
    known = _known_hosts_with(tmp_path / "known_hosts", sshd_board.port, other)
    before = known.read_text()
    cfg = sshd_board.config(tmp_path / "w", known_hosts=str(known), host_key_policy=policy)
    with pytest.raises(BoardError, match="MISMATCH") as err:
        open_connection(cfg)
    message = str(err.value)
    assert f"127.0.0.1:{sshd_board.port}" in message and "\n" not in message
    assert known.read_text() == before


def test_unknown_host_key_refused_when_strict(sshd_board, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    cfg = sshd_board.config(tmp_path / "w", known_hosts=str(known))
    with pytest.raises(BoardError, match="unknown host key") as err:
        open_connection(cfg)
    assert f"127.0.0.1:{sshd_board.port}" in str(err.value) and "ssh-keyscan" in str(err.value)
    assert known.read_text() == ""
    missing = sshd_board.config(tmp_path / "w", known_hosts=str(tmp_path / "absent"))
    with pytest.raises(BoardError, match="unknown host key"):
        open_connection(missing)
    assert not (tmp_path / "absent").exists()


def test_accept_new_records_the_key_then_strict_accepts_it(sshd_board, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    cfg = sshd_board.config(tmp_path / "w", known_hosts=str(known), host_key_policy="accept-new")
    with open_connection(cfg) as conn:
        assert conn.run(["true"], timeout=30).rc == 0
    assert known.read_text().split() == sshd_board.host_key_line.split()
    assert known.stat().st_mode & 0o077 == 0
    strict = sshd_board.config(tmp_path / "w", known_hosts=str(known))
    with open_connection(strict) as conn:
        assert conn.run(["true"], timeout=30).rc == 0
    assert len(known.read_text().splitlines()) == 1
    other = tmp_path / "other_known_hosts"
    other.write_text(f"# a comment\n[10.0.0.9]:22 {ed25519_pair(tmp_path / 'k9')}")  # no final newline
    with open_connection(sshd_board.config(tmp_path / "w", known_hosts=str(other), host_key_policy="accept-new")):
        pass
    lines = other.read_text().splitlines()
    assert lines[0] == "# a comment" and lines[1].startswith("[10.0.0.9]:22 ")  # existing entries kept intact
    assert lines[2].split() == sshd_board.host_key_line.split()


def test_corrupt_known_hosts_is_bad_input(sshd_board, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("[127.0.0.1]:22 ssh-ed25519 AAAA-not-base64\n")
    with pytest.raises(BadInput, match="known_hosts"):
        open_connection(sshd_board.config(tmp_path / "w", known_hosts=str(known)))


def test_wrong_client_key_and_closed_port(sshd_board, tmp_path: Path) -> None:
    ed25519_pair(tmp_path / "stranger")
    with pytest.raises(BoardError, match="authentication failed"):
        open_connection(sshd_board.config(tmp_path / "w", key_file=str(tmp_path / "stranger")))
    with pytest.raises(BadInput, match="key_file"):
        open_connection(sshd_board.config(tmp_path / "w", key_file=str(tmp_path / "missing")))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(BoardError, match="cannot connect"):
        open_connection(sshd_board.config(tmp_path / "w", port=closed))


def test_lost_connection_is_a_board_error(sshd_board, tmp_path: Path) -> None:
    conn = open_connection(sshd_board.config(tmp_path / "w", name="flaky"))
    try:
        assert conn.run(["true"], timeout=30).rc == 0
        for pid in sshd_board.session_pids():  # the board side of every open session dies
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(ConnectionLost, match=r"board flaky \(127\.0\.0\.1:\d+\): connection lost"):
            conn.run(["true"], timeout=30)
    finally:
        conn.close()


def test_a_board_that_stops_answering_between_commands_is_lost(sshd_board, tmp_path: Path) -> None:
    """The TCP link stays up (a cut network, a frozen board) but no channel opens: lost, not a command's fault."""
    def signal_all(pids: list[int], sig: int) -> list[int]:
        done = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                done.append(pid)
            except ProcessLookupError:  # a short-lived process of another session ended meanwhile
                pass
        return done

    conn = open_connection(sshd_board.config(tmp_path / "w", name="frozen"))
    stopped: list[int] = []
    try:
        assert conn.run(["true"], timeout=30).rc == 0
        stopped = signal_all(sshd_board.session_pids(), signal.SIGSTOP)
        assert stopped
        with pytest.raises(ConnectionLost, match=r"board frozen \(127\.0\.0\.1:\d+\): connection lost: no answer "
                                                 r"within 2 s to opening a command channel"):
            conn.run(["true"], timeout=2)
    finally:
        signal_all(stopped, signal.SIGCONT)
        conn.close()


def test_a_command_killed_by_a_signal_is_not_a_lost_link(ssh) -> None:
    done = ssh.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], timeout=30)
    assert done.rc != 0  # -1 (exit-signal, no status) or the shell's 137
    assert ssh.run(["echo", "ok"], timeout=30).stdout == b"ok\n"


def test_the_link_uses_tcp_nodelay_and_keepalive(ssh) -> None:
    import socket

    sock = ssh._transport.sock  # the socket we opened and handed to paramiko
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
