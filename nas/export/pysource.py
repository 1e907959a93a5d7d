"""Small Python-source helpers for the code generator: expressions, line breaking, safe names and text.

Expressions are trees of :class:`Call` and :class:`Seq` over atoms (already rendered strings);
:func:`render` lays a statement out on one line when it fits in :data:`LINE` characters, else
packs a call's atomic arguments under its opening parenthesis (the repository's style), else
puts one argument per line.
"""

from __future__ import annotations

import json
import keyword
import math
import re
import textwrap
from dataclasses import dataclass
from typing import Any

LINE = 120


@dataclass(frozen=True)
class Call:
    """``func(*args, **kwargs)``."""

    func: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[tuple[str, Expr], ...] = ()

    def items(self) -> list[tuple[str, Expr]]:
        return [("", a) for a in self.args] + [(f"{k}=", v) for k, v in self.kwargs]


@dataclass(frozen=True)
class Seq:
    """A list literal (``kind="list"``) or a sum ``a + b + ...`` (``kind="sum"``)."""

    items: tuple[Expr, ...]
    kind: str = "list"


Expr = str | Call | Seq


def lit(value: Any) -> str:
    """Python literal for a bool, None, int, finite float, str, or a tuple of them; ValueError otherwise."""
    if isinstance(value, tuple):
        return "(" + ", ".join(lit(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise ValueError(f"cannot write {value!r} as a literal")


def flat(e: Expr) -> str:
    """``e`` on one line."""
    if isinstance(e, str):
        return e
    if isinstance(e, Call):
        return f"{e.func}({', '.join(prefix + flat(v) for prefix, v in e.items())})"
    if e.kind == "sum":
        return " + ".join(flat(t) for t in e.items)
    return f"[{', '.join(flat(t) for t in e.items)}]"


def _fill(e: Call, indent: int, prefix: str, suffix: str) -> list[str] | None:
    """Atomic arguments packed after ``func(`` and aligned under it; None if that does not fit."""
    items = e.items()
    if not items or not all(isinstance(v, str) for _, v in items):
        return None
    col = indent + len(prefix) + len(e.func) + 1
    if col > LINE // 2:
        return None
    lines: list[str] = []
    current = " " * indent + prefix + e.func + "("
    for i, (name, value) in enumerate(items):
        piece = f"{name}{value}" + ("," if i < len(items) - 1 else ")" + suffix)
        if i > 0 and len(current) + 1 + len(piece) > LINE:
            lines.append(current)
            current = " " * col + piece
        else:
            current += (" " if i > 0 else "") + piece
    lines.append(current)
    return lines if all(len(line) <= LINE for line in lines) else None


def render(e: Expr, indent: int, prefix: str = "", suffix: str = "") -> list[str]:
    """Lines of ``prefix + e + suffix`` at ``indent`` spaces, broken to stay within :data:`LINE`."""
    pad = " " * indent
    one_line = pad + prefix + flat(e) + suffix
    if isinstance(e, str) or len(one_line) <= LINE:
        return [one_line]
    if isinstance(e, Call):
        filled = _fill(e, indent, prefix, suffix)
        if filled is not None:
            return filled
        opening, closing, items, sep = e.func + "(", ")", e.items(), ","
    elif e.kind == "sum":
        opening, closing, sep = "(", ")", ""
        items = [("" if i == 0 else "+ ", t) for i, t in enumerate(e.items)]
    else:
        opening, closing, items, sep = "[", "]", [("", t) for t in e.items], ","
    lines = [pad + prefix + opening]
    for item_prefix, item in items:
        lines += render(item, indent + 4, item_prefix, sep)
    lines.append(pad + closing + suffix)
    return lines


def pack(items: list[str], indent: int, width: int = LINE) -> list[str]:
    """``items`` joined by ``, `` (each followed by a comma) on as few lines of ``width`` as fit."""
    lines: list[str] = []
    current = ""
    for item in items:
        piece = item + ","
        if current and indent + len(current) + 1 + len(piece) > width:
            lines.append(" " * indent + current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    return [*lines, " " * indent + current] if current else lines


def identifier(raw: str, taken: set[str], reserved: frozenset[str] | set[str], fallback: str = "m") -> str:
    """A new ASCII identifier from ``raw`` (non-word characters -> ``_``), not in ``taken``/``reserved``,
    not a keyword (a trailing ``_`` is added until it is free); it is added to ``taken``."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", raw) or fallback
    if name[0].isdigit():
        name = fallback + name
    while name in taken or name in reserved or keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    taken.add(name)
    return name


def printable(text: str) -> str:
    """``text`` with non-printable characters (tabs, escapes, ...) written as escape sequences."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def wrap(line: str, width: int) -> list[str]:
    """``line`` wrapped at spaces to ``width`` (continuations indented 4 more than the line itself)."""
    line = line.rstrip()
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()))
    return textwrap.wrap(line, width, subsequent_indent=indent + "    ", break_long_words=True,
                         break_on_hyphens=False) or [line[:width]]


def _escape(line: str) -> str:
    """``line`` as the body of a triple-double-quoted (non-raw) string literal."""
    line = line.replace("\\", "\\\\")
    if '"' in line:
        line = line.replace('"', '\\"')
    return line


def _chunks(text: str, width: int) -> list[str]:
    """Escaped ``text`` cut into pieces of at most ``width`` characters, never inside an escape."""
    out = []
    while len(text) > width:
        cut = width
        while cut > 1 and (len(text[:cut]) - len(text[:cut].rstrip("\\"))) % 2:
            cut -= 1
        out.append(text[:cut])
        text = text[cut:]
    return [*out, text]


def docstring(lines: list[str], indent: int = 0) -> list[str]:
    """Lines of a triple-quoted docstring holding ``lines`` (any text: escaped, wrapped) at ``indent``."""
    pad = " " * indent
    width = LINE - indent - 6
    body: list[str] = []
    for line in lines:
        for piece in wrap(printable(line), width):
            body += _chunks(_escape(piece), width)
    while body and not body[-1].strip():
        body.pop()
    body = body or [""]
    if len(body) == 1:
        return [f'{pad}"""{body[0]}"""']
    return [f'{pad}"""{body[0]}', *[(pad + b).rstrip() for b in body[1:]], f'{pad}"""']
