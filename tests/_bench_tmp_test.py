import socket, statistics, time, subprocess, sys, json
from profilers.connection import open_connection
def test_bench(sshd_board, tmp_path):
    cfg = sshd_board.config(tmp_path/"w")
    setups = []
    for _ in range(5):
        t = time.monotonic(); c = open_connection(cfg); setups.append(time.monotonic() - t); c.close()
    c = open_connection(cfg)
    c.run(["true"], timeout=10)
    nodelay = [c.run(["true"], timeout=10).seconds for _ in range(20)]
    py = [c.run([sys.executable, "-c", "pass"], timeout=10).seconds for _ in range(10)]
    c._transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    nagle = [c.run(["true"], timeout=10).seconds for _ in range(20)]
    c.close()
    rc = []
    for _ in range(10):
        t = time.monotonic(); subprocess.run(["bash", "-c", "source /root/.bashrc; true"]); rc.append(time.monotonic() - t)
    out = dict(setup_ms=statistics.median(setups)*1e3, true_nodelay_ms=statistics.median(nodelay)*1e3,
               true_nagle_ms=statistics.median(nagle)*1e3, python_pass_ms=statistics.median(py)*1e3,
               bashrc_ms=statistics.median(rc)*1e3)
    print("BENCH", json.dumps(out))
