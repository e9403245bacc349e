"""The connection to a replay board: this machine, where the uploaded agent answers from tables in this process."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from modnas.profilers.board import agent
from modnas.profilers.board.agent import sha256_file
from modnas.profilers.connection import Completed, LocalConnection, check_argv
from modnas.profilers.pack import build_agent


class ReplayConnection(LocalConnection):
    """Like ``host: local`` (files are copied, helper scripts run as processes), except that running the
    uploaded agent runs it in this process against the board's tables: no interpreter start per measurement."""

    def __init__(self, name: str, board: Any) -> None:
        super().__init__(name)
        self.label = f"board {name} (replay)"
        self.board = board
        self._agents: dict[str, bool] = {}

    def _is_agent(self, path: str) -> bool:
        """Whether ``path`` is the agent this checkout packs (the file Board.prepare uploaded), by hash."""
        pack = build_agent()
        if os.path.basename(path) != pack.filename:
            return False
        if path not in self._agents:
            self._agents[path] = Path(path).is_file() and sha256_file(path) == pack.sha256
        return self._agents[path]

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> Completed:
        argv = check_argv(argv)
        if len(argv) >= 2 and self._is_agent(argv[1]):
            start = time.monotonic()
            rc, out, err = agent.serve(argv[2:], stdin or b"", self.board)
            return Completed(rc, out, err, time.monotonic() - start)
        return super().run(argv, timeout, stdin)
