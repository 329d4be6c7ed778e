"""Errors of the rules language: compile-time diagnostics with the source line underlined,
and the one run-time error a compiled rule may raise."""

from __future__ import annotations

from dataclasses import dataclass

from pkgedge.errors import PkgedgeError

__all__ = ["Diagnostic", "RulesError", "RulesRuntimeError", "Span", "TableError"]


@dataclass(frozen=True, slots=True)
class Span:
    """Where a piece of source is: 1-based line and column; the end column is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One error: where, what, and the offending source line."""

    name: str  # the configuration's name (a file name, or "<rules>")
    span: Span
    message: str
    source_line: str

    def __str__(self) -> str:
        s = self.span
        line = self.source_line.expandtabs(1)
        start = max(s.column - 1, 0)
        end = s.end_column - 1 if s.end_line == s.line else len(line)
        end = max(min(end, len(line)), start + 1)
        underline = " " * start + "^" + "~" * (end - start - 1)
        return (
            f"{self.name}:{s.line}:{s.column}: error: {self.message}\n    {line}\n    {underline}"
        )


class RulesError(PkgedgeError, ValueError):
    """A configuration that does not compile. ``str()`` shows every diagnostic, each with its
    line, column, message and the source line underlined; ``line``/``column``/``message`` are
    those of the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("RulesError needs at least one diagnostic")
        self.diagnostics = diagnostics
        first = diagnostics[0]
        self.line = first.span.line
        self.column = first.span.column
        self.message = first.message
        super().__init__("\n".join(str(d) for d in diagnostics))


class RulesRuntimeError(PkgedgeError, RuntimeError):
    """A rule failed while running (a string too long, a header value with a line break...).
    The only exception a compiled rule raises; ``line`` is the rule's line (0 if unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class TableError(PkgedgeError, ValueError):
    """A live table replacement that does not fit the table (unknown name, wrong kind, bad
    network, non-string entries)."""
