"""Text for the gpt space: where it comes from, its vocabulary, the held-out split and batches.

``--text`` is a file, a directory (its ``*.txt`` files, sorted by path, joined with a newline where
one does not end in one) or ``shakespeare``: ``<data dir>/text/tinyshakespeare/input.txt``, the data
directory given by the caller or ``$MODNAS_DATA``. Text is UTF-8; an empty file, a NUL byte or bytes
that are not UTF-8 are refused in one line.

Tokens are characters. The vocabulary is the corpus's distinct characters, sorted (ids
``0 .. n-1``), followed, with ``byte_fallback`` (the default), by 256 byte tokens (ids ``n .. n+255``):
a character outside the vocabulary (in a prompt, say) is written as the byte tokens of its UTF-8
encoding, and decoding turns a run of byte tokens back into characters (invalid sequences become
U+FFFD). The training text itself never needs them: every one of its characters is in the vocabulary.
The vocabulary is stored as JSON (:meth:`Vocabulary.to_json`) with runs and checkpoints.

The last 10 % of the tokens are held out (nanoGPT's split of Tiny Shakespeare).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from modnas.toolkit.errors import BadInput

SHAKESPEARE = "shakespeare"
SHAKESPEARE_PATH = Path("text") / "tinyshakespeare" / "input.txt"
HELDOUT_FRACTION = 0.1
HELDOUT_TEXT = "heldout.txt.gz"  # a gpt search run's copy of its text's held-out split (the losses of its exports)
BYTE_TOKENS = 256


def data_dir_of(data_dir: str | Path | None) -> Path:
    """The data directory given, else ``$MODNAS_DATA``; neither is one line of bad input."""
    if data_dir is None:
        data_dir = os.environ.get("MODNAS_DATA") or None
    if data_dir is None:
        raise BadInput("--text shakespeare needs the data directory: give --data DIR or set MODNAS_DATA")
    return Path(data_dir)


def resolve_text(spec: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    """The files ``--text`` names, in reading order."""
    if str(spec) == SHAKESPEARE:
        path = data_dir_of(data_dir) / SHAKESPEARE_PATH
        if not path.is_file():
            raise BadInput(f"--text shakespeare: {path} not found (is the data directory right?)")
        return [path]
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise BadInput(f"--text {spec}: the directory holds no .txt files")
        return files
    raise BadInput(f"--text {spec}: no such file or directory (or say 'shakespeare')")


def _read_one(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise BadInput(f"{path}: binary data, not text (it has NUL bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None


@dataclass(frozen=True)
class Corpus:
    """The text, where it came from and a digest that tells one text from another."""

    text: str
    source: str
    files: tuple[str, ...] = field(default=())

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def read_text(spec: str | Path, data_dir: str | Path | None = None) -> Corpus:
    """The corpus ``--text`` names; empty or binary text is one line of bad input."""
    files = resolve_text(spec, data_dir)
    parts: list[str] = []
    for path in files:
        text = _read_one(path)
        if parts and parts[-1] and not parts[-1].endswith("\n"):
            parts.append("\n")
        parts.append(text)
    text = "".join(parts)
    if not text.strip():
        raise BadInput(f"--text {spec}: the text is empty")
    source = SHAKESPEARE if str(spec) == SHAKESPEARE else str(Path(spec).expanduser().resolve())
    return Corpus(text, source, tuple(str(p) for p in files))


class Vocabulary:
    """Characters (sorted, ids from 0) and, with ``byte_fallback``, 256 byte tokens after them."""

    def __init__(self, chars: str, byte_fallback: bool = True) -> None:
        if len(set(chars)) != len(chars):
            raise BadInput("a vocabulary lists each character once")
        self.chars = chars
        self.byte_fallback = byte_fallback
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str, byte_fallback: bool = True) -> "Vocabulary":
        return cls("".join(sorted(set(text))), byte_fallback)

    @property
    def size(self) -> int:
        return len(self.chars) + (BYTE_TOKENS if self.byte_fallback else 0)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self.chars, self.byte_fallback) == (other.chars, other.byte_fallback)

    def __hash__(self) -> int:
        return hash((self.chars, self.byte_fallback))

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (int64) of ``text``; characters outside the vocabulary as their UTF-8 bytes."""
        ids = self._ids
        out: list[int] = []
        base = len(self.chars)
        for c in text:
            i = ids.get(c)
            if i is not None:
                out.append(i)
            elif self.byte_fallback:
                out.extend(base + b for b in c.encode("utf-8"))
            else:
                raise BadInput(f"character {c!r} is outside the vocabulary (and it has no byte tokens)")
        return torch.tensor(out, dtype=torch.long)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The text of token ids; runs of byte tokens are decoded as UTF-8."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        base, size = len(self.chars), self.size
        out: list[str] = []
        pending = bytearray()
        for i in values:
            i = int(i)
            if not 0 <= i < size:
                raise BadInput(f"token id {i} is outside the vocabulary of {size}")
            if i >= base:
                pending.append(i - base)
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            out.append(self.chars[i])
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "chars", "chars": self.chars, "byte_fallback": self.byte_fallback}

    @classmethod
    def from_json(cls, doc: Any) -> "Vocabulary":
        if not isinstance(doc, dict) or doc.get("kind") != "chars" or not isinstance(doc.get("chars"), str):
            raise BadInput("not a gpt vocabulary (expected {'kind': 'chars', 'chars': ..., 'byte_fallback': ...})")
        return cls(doc["chars"], bool(doc.get("byte_fallback", True)))

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode("utf-8")).hexdigest()


def split_heldout(tokens: torch.Tensor, fraction: float = HELDOUT_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``1 - fraction`` of the tokens for training, the rest held out."""
    cut = int(len(tokens) * (1.0 - fraction))
    return tokens[:cut], tokens[cut:]


def check_length(tokens: torch.Tensor, context: int, what: str) -> None:
    """Bad input when ``tokens`` cannot fill one window of ``context`` plus its next-token target."""
    if len(tokens) < context + 1:
        raise BadInput(f"the {what} text has {len(tokens)} tokens, too few for context {context} "
                       f"(needs at least {context + 1}); give more text or a shorter --context")


def random_batch(tokens: torch.Tensor, context: int, batch: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` windows at random offsets: inputs ``[batch, context]`` and next-token targets."""
    starts = torch.randint(len(tokens) - context, (batch,), generator=generator)
    index = starts[:, None] + torch.arange(context)[None, :]
    return tokens[index], tokens[index + 1]


def eval_windows(tokens: torch.Tensor, context: int, max_windows: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows over the tokens (every position once; evenly spaced ones when more
    than ``max_windows``): inputs ``[n, context]`` and targets."""
    n = (len(tokens) - 1) // context
    starts = torch.arange(n) * context
    if max_windows is not None and n > max_windows:
        starts = starts[torch.linspace(0, n - 1, max_windows).round().long()]
    index = starts[:, None] + torch.arange(context)[None, :]
    return tokens[index], tokens[index + 1]


__all__ = ["BYTE_TOKENS", "Corpus", "HELDOUT_FRACTION", "SHAKESPEARE", "SHAKESPEARE_PATH", "Vocabulary",
           "check_length", "data_dir_of", "eval_windows", "random_batch", "read_text", "resolve_text",
           "split_heldout"]
