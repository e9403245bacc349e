"""Security: host keys, no passwords, no injection through any field, private work directories,
and no unsafe loading anywhere in the package sources."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from sshd_fixture import QUICK_MEASUREMENT, ed25519_pair
from modnas.toolkit.cli import main
from modnas.toolkit.errors import BadInput, BoardError
from modnas.toolkit.store import Store

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "profilers", "exporters")
ARCH = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|"


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | list | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- no unsafe loading or shells in the sources ------------------------------------------------------
def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _code_lines(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        code = line.split("#", 1)[0]
        if code.strip():
            out.append((number, code))
    return out


UNSAFE = [
    (re.compile(r"\bpickle\.loads?\("), "pickle loading"),
    (re.compile(r"\b(cPickle|dill|joblib)\.load"), "pickle-like loading"),
    (re.compile(r"\bshell\s*=\s*True"), "shell=True"),
    (re.compile(r"\bAutoAddPolicy\b"), "paramiko AutoAddPolicy"),
    (re.compile(r"\bWarningPolicy\b"), "paramiko WarningPolicy"),
    (re.compile(r"\bos\.(system|popen)\("), "os.system/os.popen"),
    (re.compile(r"\bnp\.load\([^)]*allow_pickle\s*=\s*True"), "numpy allow_pickle"),
]


def test_no_unsafe_loading_or_shell_in_the_package() -> None:
    sources = _sources()
    assert len(sources) > 20
    found = []
    for path in sources:
        lines = _code_lines(path)
        text = "\n".join(code for _, code in lines)
        for number, code in lines:
            for pattern, what in UNSAFE:
                if pattern.search(code):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}")
            if re.search(r"\byaml\.load\(", code) and "SafeLoader" not in code:
                found.append(f"{path.relative_to(ROOT)}:{number}: yaml.load without SafeLoader")
            if re.search(r"\byaml\.(unsafe_load|full_load)\(", code):
                found.append(f"{path.relative_to(ROOT)}:{number}: unsafe yaml loading")
        for match in re.finditer(r"\btorch\.load\(", text):  # the call may span lines: read to its ')'
            depth, end = 0, match.end() - 1
            while end < len(text):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            call = text[match.start():end + 1]
            if not re.search(r"weights_only\s*=\s*True", call):
                found.append(f"{path.relative_to(ROOT)}: torch.load without weights_only=True: {call[:80]!r}")
    assert found == []


# -- host keys -------------------------------------------------------------------------------------------
def _arch_file(tmp_path: Path) -> Path:
    path = tmp_path / "one.txt"
    path.write_text(ARCH + "\n")
    return path


def test_strict_is_the_default(sshd_board, tmp_path) -> None:
    from modnas.toolkit.config import parse_device

    cfg = parse_device({"name": "d", "host": "10.0.0.1"})
    assert cfg.host_key_policy == "strict"


def test_host_key_mismatch_refused_even_with_accept_new(sshd_board, modnas_home, tmp_path, capsys) -> None:
    other = ed25519_pair(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts_wrong"
    known.write_text(f"[127.0.0.1]:{sshd_board.port} {other}\n")
    before = known.read_text()
    for policy in ("strict", "accept-new"):
        dev = sshd_board.device_yaml(tmp_path, name=f"mitm-{policy}", known_hosts=str(known),
                                     host_key_policy=policy)
        code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(_arch_file(tmp_path)), "--json")
        line = one_line(err)
        assert code == 3 and doc is None
        assert f"mitm-{policy}" in line and "HOST KEY MISMATCH" in line and "ssh-keygen" in line
        assert known.read_text() == before
        code, doc, err = run_cli(capsys, "doctor", str(dev), "--json")
        assert code == 3 and "HOST KEY MISMATCH" in one_line(err)
    assert Store(modnas_home / "modnas.db").values("mitm-strict", "nb201") == {}


def test_accept_new_only_when_asked(sshd_board, modnas_home, tmp_path, capsys) -> None:
    known = tmp_path / "known_hosts_new"
    dev = sshd_board.device_yaml(tmp_path, name="tofu", known_hosts=str(known), host_key_policy="accept-new")
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(_arch_file(tmp_path)), "--json", "--quiet")
    assert code == 0, err
    assert len(doc["measured"]) == 1
    (entry,) = known.read_text().splitlines()
    assert entry.startswith(f"[127.0.0.1]:{sshd_board.port} ssh-ed25519 ")
    assert (known.stat().st_mode & 0o777) == 0o600
    # the same file, now strict, works; the key was pinned
    dev = sshd_board.device_yaml(tmp_path, name="tofu", known_hosts=str(known), host_key_policy="strict")
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(_arch_file(tmp_path)), "--json", "--quiet")
    assert code == 0, err
    assert doc["skipped"] == [ARCH]


def test_password_fields_are_refused(tmp_path, modnas_home, capsys) -> None:
    for key in ("password", "ssh_password", "Password"):
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump({"name": "pw", "host": "127.0.0.1", key: "hunter2"}))
        code, doc, err = run_cli(capsys, "doctor", str(path))
        line = one_line(err)
        assert code == 2 and key in line and "password" in line.lower() and "hunter2" not in line


# -- injection -------------------------------------------------------------------------------------------
def _payloads(marker: Path) -> list[str]:
    return [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"| touch {marker}",
            f"&& touch {marker} #", f"'; touch {marker}; '", f"\ntouch {marker}"]


def test_injection_through_cli_fields_runs_nothing(sshd_board, modnas_home, tmp_path, capsys) -> None:
    marker = tmp_path / "PWNED"
    base = {k: v for k, v in vars(sshd_board.config(tmp_path / "inj-work")).items()}
    for payload in _payloads(marker):
        # the architecture line
        archs = tmp_path / "archs.txt"
        archs.write_text(ARCH[:-1] + payload + "|\n")
        dev = sshd_board.device_yaml(tmp_path, name="inj")
        code, _, err = run_cli(capsys, "profile", str(dev), "--archs", str(archs), "--json")
        assert code == 2 and "archs.txt:" in one_line(err)
        # name, workdir, python and user in the device file
        for field, value in (("name", "inj" + payload), ("workdir", str(tmp_path) + "/w" + payload),
                             ("python", sys.executable + payload), ("user", "root" + payload),
                             ("host", "127.0.0.1" + payload)):
            doc = dict(base, **{field: value})
            path = tmp_path / "inj.yaml"
            path.write_text(yaml.safe_dump(doc))
            code, _, err = run_cli(capsys, "profile", str(path), "--archs", str(_arch_file(tmp_path)), "--json")
            assert code == 2 and field in one_line(err), (field, err)
        # the device given by name
        code, _, err = run_cli(capsys, "profile", "inj" + payload, "--json")
        assert code == 2 and one_line(err)
        code, _, err = run_cli(capsys, "predict", "--device", "inj" + payload, "--archs", "refs", "--json")
        assert code == 2 and "device name" in one_line(err)
    assert not marker.exists()


def test_injection_past_validation_is_quoted_on_the_board(sshd_board, tmp_path) -> None:
    """Code that builds a Board from any config object: the remote command is quoted argument by argument."""
    from modnas.profilers.campaign import Board

    marker = tmp_path / "PWNED2"
    for payload in _payloads(marker):
        if "\n" in payload:
            continue  # control characters in a remote path are refused before anything runs
        workdir = tmp_path / ("w" + payload.replace("/", "_"))
        cfg = sshd_board.config(workdir)
        with Board(cfg) as board:
            board.prepare()  # a directory with that literal name; no shell ever read it
        assert workdir.is_dir() and (workdir.stat().st_mode & 0o777) == 0o700
        cfg = sshd_board.config(tmp_path / "wp", python=sys.executable + payload)
        with Board(cfg) as board, pytest.raises(BoardError):
            board.prepare()  # no interpreter by that name: refused
        with pytest.raises(BadInput):
            Board(sshd_board.config(str(tmp_path / "x") + "\n" + payload))
    assert not marker.exists()


# -- the work directory ---------------------------------------------------------------------------------
def test_work_directory_is_private(sshd_board, modnas_home, tmp_path, capsys) -> None:
    work = tmp_path / "private-work"
    dev = sshd_board.device_yaml(tmp_path, name="priv", workdir=str(work))
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(_arch_file(tmp_path)), "--json", "--quiet")
    assert code == 0, err
    assert (work.stat().st_mode & 0o777) == 0o700
    assert ((work / "artifacts").stat().st_mode & 0o777) == 0o700
    # a work directory other users can write to is refused: they could swap the agent or an artifact
    shared = tmp_path / "shared-work"
    shared.mkdir()
    shared.chmod(0o777)
    dev = sshd_board.device_yaml(tmp_path, name="priv2", workdir=str(shared))
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(_arch_file(tmp_path)), "--json")
    line = one_line(err)
    assert code == 3 and "priv2" in line and "writable by other users" in line
    assert not list(shared.glob("*.pyz")) and not (shared / "artifacts" / "x").exists()


def test_job_settings_from_the_host_are_checked_before_anything_runs(tmp_path) -> None:
    from modnas.profilers.campaign import MeasureJob

    good = {"artifact": tmp_path / "m.onnx", "sha256": "a" * 64, "runtime": "onnxruntime", "threads": 1,
            "input_shape": [1, 3, 8, 8], "measurement": QUICK_MEASUREMENT}
    for field, value in (("runtime", "onnxruntime; touch x"), ("sha256", "a" * 63 + ";"), ("threads", 0),
                         ("input_shape", [1, -3]), ("artifact", tmp_path / "m.onnx;rm -rf x")):
        with pytest.raises(BadInput):
            MeasureJob(**dict(good, **{field: value}))


def test_no_secret_reaches_the_store(sshd_board, modnas_home, tmp_path, capsys) -> None:
    """The device row keeps the key file's path, never the key."""
    dev = sshd_board.device_yaml(tmp_path, name="keys")
    code, _, err = run_cli(capsys, "profile", str(dev), "--archs", str(_arch_file(tmp_path)), "--json", "--quiet")
    assert code == 0, err
    key_text = Path(sshd_board.key_file).read_text()
    blob = (modnas_home / "modnas.db").read_bytes()
    body = key_text.split("-----")[2].strip().splitlines()[0]
    assert body.encode() not in blob
    stored = Store(modnas_home / "modnas.db").get_device("keys")
    assert stored["key_file"] == str(sshd_board.key_file) and not any("pass" in k for k in stored)
