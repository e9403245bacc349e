"""ExecuTorch: `export --format executorch` (XNNPACK .pte, INT8 through PT2E) checked against PyTorch,
`runtime: executorch` on the loopback sshd board, and the one line a machine without the extra gets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modnas.toolkit.cli import main
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

TINY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
REF = 2  # the cheapest of the 10 references (NB201 index 55)

pytest.importorskip("executorch", reason="the executorch extra is not installed: pip install -e '.[executorch]'")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | list | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def reference() -> str:
    return get_space("nb201").reference_archs()[REF]


def test_without_the_extra_one_line_and_nothing_written(tmp_path: Path) -> None:
    """The extra made absent the way Python sees a missing package: export says how to install it."""
    out = tmp_path / "files"
    code = ("import sys; sys.modules['executorch'] = None\n"
            "from modnas.toolkit.cli import main\n"
            f"sys.exit(main(['export', {TINY!r}, '--format', 'onnx,executorch', '--out', {str(out)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MODNAS_HOME": str(tmp_path / "home")})
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 1 and done.stdout == ""
    assert len(lines) == 1 and "pip install 'modnas[executorch]'" in lines[0], done.stderr
    assert not out.exists()


def test_board_runtime_without_executorch_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from modnas.profilers.board.runtimes import available_runtimes, get_runtime

    ok, detail = get_runtime("executorch").available()
    assert ok and detail.startswith("1.5"), detail
    monkeypatch.setitem(sys.modules, "executorch", None)
    monkeypatch.setitem(sys.modules, "executorch.version", None)
    report = available_runtimes(["executorch"])["executorch"]
    assert report["available"] is False and "executorch cannot be imported" in report["detail"]


def test_device_files_take_runtime_executorch(tmp_path: Path, sshd_board, capsys, modnas_home: Path) -> None:
    from modnas.toolkit.config import load_device

    dev = sshd_board.device_yaml(tmp_path, name="loop-et-cfg", runtime="executorch")
    assert load_device(str(dev)).runtime == "executorch"
    bad = sshd_board.device_yaml(tmp_path, name="loop-bad", runtime="executorch-xnnpack")
    code, _, err = run(capsys, "doctor", str(bad))
    assert code == 2 and "runtime" in err and len(err.strip().splitlines()) == 1


def test_batch_norms_folded_away_without_changing_the_network() -> None:
    """INT8 goes through a network without batch-norm nodes (PT2E's convert is then fast): same outputs."""
    from modnas.exporters.executorch import fold_batch_norms
    from modnas.toolkit.workflow.artifacts import build_model

    space = get_space("nb201")
    model = build_model(space, space.reference_archs()[9])
    for module in model.modules():  # running statistics that are not the identity, so folding has work to do
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    folded = fold_batch_norms(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is left as it was
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert torch.max(torch.abs(got - want)) <= 1e-5 * max(1.0, float(want.abs().max()))


@pytest.mark.slow
def test_export_matches_pytorch_in_the_executorch_runtime(tmp_path: Path, capsys, modnas_home: Path) -> None:
    from executorch.runtime import Runtime

    from modnas.exporters.executorch import TOLERANCE
    from modnas.exporters.result import read_sidecar, sha256_file
    from modnas.toolkit.workflow.artifacts import build_model

    out = tmp_path / "files"
    code, doc, err = run(capsys, "export", TINY, "--format", "onnx,executorch", "--out", str(out), "--json")
    assert code == 0, err
    pte = Path(doc["executorch"])
    assert pte.suffix == ".pte" and pte.is_file()
    assert 0 <= doc["max_abs_diff"]["executorch"] <= TOLERANCE
    assert sorted(p.name for p in out.iterdir()) == sorted([pte.name, pte.name + ".json", Path(doc["onnx"]).name,
                                                           Path(doc["onnx"]).name + ".json"])  # no temp files
    meta = read_sidecar(pte)
    assert meta["backend"] == "xnnpack" and meta["precision"] == "fp32" and meta["input_shape"] == [1, 3, 32, 32]
    # run the file in ExecuTorch's own runtime, on inputs the export never saw
    method = Runtime.get().load_program(pte).load_method("forward")
    model = build_model(get_space("nb201"), TINY)
    x = torch.randn(4, 1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = np.stack([model(x[i]).numpy() for i in range(4)])
    got = np.stack([method.execute([x[i]])[0].numpy() for i in range(4)])
    assert np.max(np.abs(got - want)) <= TOLERANCE * max(1.0, float(np.max(np.abs(want))))
    assert len({float(v) for v in got[:, 0, 0]}) == 4  # four different answers: the input reached the network
    assert pte.read_bytes()[4:8] == b"ET12"  # ExecuTorch's flatbuffer file identifier
    assert sha256_file(pte) != sha256_file(doc["onnx"])


@pytest.mark.slow
def test_mismatch_is_refused_and_nothing_written(tmp_path: Path) -> None:
    from modnas.exporters.executorch import export_executorch
    from modnas.exporters.result import ExportMismatch
    from modnas.toolkit.workflow.artifacts import build_model

    with pytest.raises(ExportMismatch, match="ExecuTorch differs from PyTorch"):
        export_executorch(build_model(get_space("nb201"), TINY), (1, 3, 32, 32), tmp_path / "net.pte", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_reference_through_the_sshd_board(sshd_board, tmp_path: Path, capsys, modnas_home: Path) -> None:
    """`runtime: executorch` in the device file: doctor sees the runtime, profile measures the .pte on the board
    (SSH, the zipapp agent, its worker process), the store keeps it as an executorch measurement."""
    from modnas.exporters.result import read_sidecar, sha256_file

    dev = sshd_board.device_yaml(tmp_path, name="loop-et", runtime="executorch")
    code, doc, err = run(capsys, "doctor", str(dev), "--json")
    assert code == 0, err
    assert doc["runtimes"]["executorch"]["available"] is True
    assert doc["runtimes"]["executorch"]["detail"].startswith("1.5")
    archs = tmp_path / "ref.txt"
    archs.write_text(reference() + "\n")
    code, doc, err = run(capsys, "profile", str(dev), "--archs", str(archs), "--json", "--quiet")
    assert code == 0, err
    assert doc["failed"] == [] and len(doc["measured"]) == 1
    lat = doc["measured"][0]["latency_ms"]
    assert 0 < lat["median"] <= lat["p90"] and lat["n"] >= 10
    (row,) = Store(modnas_home / "modnas.db").measurement_rows("loop-et", "nb201")
    assert row["runtime"] == "executorch" and row["summary"]["runtime_version"].startswith("1.5")
    (pte,) = (modnas_home / "artifacts" / "nb201").glob("*.pte")  # named by its content key, like every artifact
    assert row["artifact_sha"] == sha256_file(pte) and len(pte.stem) == 24
    assert read_sidecar(pte)["arch"] == reference()
    assert not list((modnas_home / "artifacts" / "nb201").glob("*.onnx"))  # ExecuTorch needs no ONNX detour
    # the same command again measures nothing: same artifact, runtime and settings
    code, doc, _ = run(capsys, "profile", str(dev), "--archs", str(archs), "--json", "--quiet")
    assert code == 0 and doc["measured"] == [] and doc["skipped"] == [reference()]


@pytest.mark.slow
def test_precision_int8_board_measures_the_int8_program(sshd_board, tmp_path: Path, capsys,
                                                        modnas_home: Path) -> None:
    from modnas.exporters.result import read_sidecar

    dev = sshd_board.device_yaml(tmp_path, name="loop-et8", runtime="executorch", precision="int8")
    archs = tmp_path / "ref.txt"
    archs.write_text(reference() + "\n")
    code, doc, err = run(capsys, "profile", str(dev), "--archs", str(archs), "--json", "--quiet")
    assert code == 0, err
    assert doc["failed"] == [] and doc["measured"][0]["latency_ms"]["median"] > 0
    (row,) = Store(modnas_home / "modnas.db").measurement_rows("loop-et8", "nb201")
    assert row["runtime"] == "executorch" and row["settings_key"].endswith("-int8")
    (pte,) = (modnas_home / "artifacts" / "nb201").glob("*.pte")
    meta = read_sidecar(pte)
    assert meta["precision"] == "int8" and meta["calibration_images"] > 0


@pytest.fixture(scope="module")
def digits_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY trained on all the digits, exported with --quantize int8 to ONNX and ExecuTorch through the CLI."""
    torch.set_num_threads(1)
    from modnas.toolkit.workflow.training import train_arch

    ckpt = tmp_path_factory.mktemp("et-ckpt")
    train_arch(TINY, space_name="nb201", images="digits", out=ckpt, epochs=4, quiet=True)
    out = tmp_path_factory.mktemp("et-export") / "files"
    code = main(["export", TINY, "--weights", str(ckpt / "checkpoint.safetensors"), "--quantize", "int8",
                 "--format", "onnx,executorch", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    return out


@pytest.mark.slow
def test_int8_accuracy_on_digits_within_002_of_fp32(digits_export: Path) -> None:
    from modnas.exporters.result import read_sidecar
    from modnas.toolkit.workflow.accuracy import accuracy_path

    out = digits_export
    (fp32,) = [p for p in out.glob("*.pte") if not p.name.endswith("-int8.pte")]
    (int8,) = out.glob("*-int8.pte")
    rec32 = json.loads(accuracy_path(fp32).read_text())
    rec8 = json.loads(accuracy_path(int8).read_text())
    n = rec8["heldout_images"]
    assert rec32["format"] == "executorch" and rec8["format"] == "executorch_int8" and n >= 300
    assert rec32["accuracy"] >= 0.5  # trained: far above chance (0.1)
    assert abs(rec32["accuracy"] - rec32["pytorch_accuracy"]) <= 1 / n
    assert abs(rec8["accuracy"] - rec32["accuracy"]) <= 0.02
    # calibrated like the ONNX INT8 model: the same training images, the same number of them
    meta8, onnx8 = read_sidecar(int8), read_sidecar(next(out.glob("*-int8.onnx")))
    assert meta8["precision"] == "int8" and meta8["calibration"] == "MinMax"
    assert meta8["calibration_images"] == onnx8["calibration_images"] > 0
    assert meta8["calibration_source"] == onnx8["calibration_source"] == "checkpoint training split"
    assert int8.stat().st_size < fp32.stat().st_size  # int8 weights
