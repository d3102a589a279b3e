"""Azure Pipelines expressions: the language inside ``${{ }}``, ``$[ ]`` and ``condition:``.

Pure: a parser and an evaluator over plain Python values. Literals (``'text'``, numbers, ``true``,
``false``, ``null``), named values with member access (``parameters.weights``,
``variables['Build.BuildId']``, ``stageDependencies.A.B.outputs['step.var']``) and the documented
functions (``eq``, ``and``, ``format``, ...). Status functions (``succeeded()``, ``failed()``, ...)
are supplied by the runner, because only it knows what ran. Names and keys compare
case-insensitively, as they do in Azure Pipelines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbook.errors import ConfigError


class ExpressionError(ConfigError):
    """An expression that does not parse or cannot be evaluated."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(f"expression {expression!r}", "", message)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
      | (?P<name>[A-Za-z_][\w\-]*)
      | (?P<punct>[()\[\],.])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(text, f"unexpected character at {pos + 1}: {text[pos:]!r:.20}")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return out


# Parsed nodes: ("lit", value) | ("name", str) | ("member", node, key node) | ("call", name, args)
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (text is not None and tok.text != text):
            want = repr(text) if text else "more input"
            got = repr(tok.text) if tok else "the end"
            raise ExpressionError(self.text, f"expected {want}, found {got}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise ExpressionError(
                self.text, f"unexpected {self.take().text!r} after the expression"
            )
        return node

    def expr(self) -> Node:
        tok = self.take()
        node: Node
        if tok.kind == "string":
            node = ("lit", tok.text[1:-1].replace("''", "'"))
        elif tok.kind == "number":
            node = ("lit", float(tok.text) if "." in tok.text else int(tok.text))
        elif tok.kind == "name":
            low = tok.text.lower()
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                self.take("(")
                args: list[Node] = []
                if self.peek() is not None and self.peek().text != ")":  # type: ignore[union-attr]
                    args.append(self.expr())
                    while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                        self.take(",")
                        args.append(self.expr())
                self.take(")")
                node = ("call", low, args)
            elif low in ("true", "false"):
                node = ("lit", low == "true")
            elif low == "null":
                node = ("lit", None)
            else:
                node = ("name", tok.text)
        elif tok.text == "(":
            node = self.expr()
            self.take(")")
        else:
            raise ExpressionError(self.text, f"unexpected {tok.text!r}")
        while (nxt := self.peek()) is not None and nxt.text in (".", "["):
            if nxt.text == ".":
                self.take(".")
                key = self.take()
                if key.kind not in ("name", "number"):
                    raise ExpressionError(
                        self.text, f"expected a property name, found {key.text!r}"
                    )
                node = ("member", node, ("lit", key.text))
            else:
                self.take("[")
                index = self.expr()
                self.take("]")
                node = ("member", node, index)
        return node


def parse(text: str) -> Node:
    """Parse one expression (without its ``${{ }}`` or ``$[ ]`` delimiters)."""
    return _Parser(text.strip()).parse()


# --- conversions, as the Azure Pipelines expression docs define them ---------------------------


def truthy(value: Any) -> bool:
    """Falsy: null, false, 0, empty string, empty collection; everything else is true."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | dict | tuple):
        return len(value) > 0
    return True


def to_text(value: Any) -> str:
    """A value put into a string: ``True``, ``10``, ``0.5``, JSON for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, default=str)


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if value is None:
        return 0.0
    if isinstance(value, str):
        try:
            return float(value.strip()) if value.strip() else 0.0
        except ValueError:
            return None
    return None


def _compare(left: Any, right: Any) -> int | None:
    """-1/0/1 after converting ``right`` to the type of ``left``; None when not comparable."""
    if isinstance(left, bool):
        lb, rb = left, truthy(right)
        return (lb > rb) - (lb < rb)
    if isinstance(left, int | float):
        rn = _to_number(right)
        if rn is None:
            return None
        return (left > rn) - (left < rn)
    if isinstance(left, str):
        ls, rs = left.casefold(), to_text(right).casefold()
        return (ls > rs) - (ls < rs)
    if left is None:
        return 0 if right is None or right == "" else None
    return 0 if left == right else None


def equals(left: Any, right: Any) -> bool:
    """``eq``: case-insensitive for strings; ``right`` converted to the type of ``left``."""
    return _compare(left, right) == 0


def lookup(container: Any, key: Any) -> Any:
    """Member access: mapping keys case-insensitively, list indexes; missing gives null."""
    if isinstance(container, Mapping):
        if key in container:
            return container[key]
        folded = to_text(key).casefold()
        for k, v in container.items():
            if str(k).casefold() == folded:
                return v
        return None
    if isinstance(container, Sequence) and not isinstance(container, str):
        n = _to_number(key)
        if n is not None and n.is_integer() and 0 <= int(n) < len(container):
            return container[int(n)]
    return None


def _format(fmt: Any, *args: Any) -> str:
    def sub(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return to_text(args[i]) if i < len(args) else m.group(0)

    return re.sub(r"\{(\d+)\}", sub, to_text(fmt))


def _contains(haystack: Any, needle: Any) -> bool:
    return to_text(needle).casefold() in to_text(haystack).casefold()


def _contains_value(collection: Any, needle: Any) -> bool:
    values = collection.values() if isinstance(collection, Mapping) else collection
    return any(equals(v, needle) for v in values or [])


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | list | dict | tuple) else 0


class _ConversionError(ValueError):
    """``gt``/``ge``/``lt``/``le``: the right value does not convert to the left's type."""


def _ordered(pred: Callable[[int], bool]) -> Callable[[Any, Any], bool]:
    """An ordering function: it errors when the right value does not convert (expressions#gt)."""

    def fn(a: Any, b: Any) -> bool:
        c = _compare(a, b)
        if c is None:
            raise _ConversionError(f"cannot compare {to_text(a)!r} with {to_text(b)!r}")
        return pred(c)

    return fn


BUILTINS: dict[str, Callable[..., Any]] = {
    "not": lambda a: not truthy(a),
    "xor": lambda a, b: truthy(a) != truthy(b),
    "eq": equals,
    "ne": lambda a, b: not equals(a, b),
    "gt": _ordered(lambda c: c > 0),
    "ge": _ordered(lambda c: c >= 0),
    "lt": _ordered(lambda c: c < 0),
    "le": _ordered(lambda c: c <= 0),
    "in": lambda a, *rest: any(equals(a, r) for r in rest),
    "notin": lambda a, *rest: not any(equals(a, r) for r in rest),
    "contains": _contains,
    "containsvalue": _contains_value,
    "startswith": lambda a, b: to_text(a).casefold().startswith(to_text(b).casefold()),
    "endswith": lambda a, b: to_text(a).casefold().endswith(to_text(b).casefold()),
    "format": _format,
    "join": lambda sep, items: to_text(sep).join(to_text(i) for i in (items or [])),
    "length": _length,
    "lower": lambda a: to_text(a).lower(),
    "upper": lambda a: to_text(a).upper(),
    "replace": lambda a, old, new: to_text(a).replace(to_text(old), to_text(new)),
    "split": lambda a, sep: to_text(a).split(to_text(sep)),
    "trim": lambda a: to_text(a).strip(),
    "coalesce": lambda *args: next((a for a in args if a not in (None, "")), None),
    "converttojson": lambda a: json.dumps(a, indent=2, default=str),
}

#: Functions whose arguments are evaluated lazily (short-circuit).
_LAZY = {"and", "or", "iif"}


class Evaluator:
    """Evaluate parsed expressions against named values and extra functions (status checks)."""

    def __init__(
        self,
        names: Mapping[str, Any],
        functions: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.names = names
        self.functions = {**BUILTINS, **{k.lower(): v for k, v in (functions or {}).items()}}

    def evaluate(self, text: str) -> Any:
        """Parse and evaluate one expression."""
        return self._eval(parse(text), text)

    def _eval(self, node: Node, text: str) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "name":
            name = node[1]
            folded = {k.casefold(): k for k in self.names}
            if name.casefold() not in folded:
                known = ", ".join(sorted(self.names)) or "none"
                raise ExpressionError(text, f"unrecognized value {name!r} (known: {known})")
            return self.names[folded[name.casefold()]]
        if kind == "member":
            return lookup(self._eval(node[1], text), self._eval(node[2], text))
        name, args = node[1], node[2]
        if name in _LAZY:
            return self._lazy(name, args, text)
        fn = self.functions.get(name)
        if fn is None:
            raise ExpressionError(text, f"unknown function {name}()")
        values = [self._eval(a, text) for a in args]
        try:
            return fn(*values)
        except TypeError as e:
            raise ExpressionError(text, f"wrong arguments for {name}(): {e}") from None
        except _ConversionError as e:
            raise ExpressionError(text, f"{name}(): {e}") from None

    def _lazy(self, name: str, args: list[Node], text: str) -> Any:
        if name == "iif":
            if len(args) != 3:
                raise ExpressionError(text, "iif() takes 3 arguments")
            return self._eval(args[1] if truthy(self._eval(args[0], text)) else args[2], text)
        if len(args) < 2:
            raise ExpressionError(text, f"{name}() takes at least 2 arguments")
        if name == "and":
            return all(truthy(self._eval(a, text)) for a in args)
        return any(truthy(self._eval(a, text)) for a in args)


def find_expressions(text: str, opener: str = "${{", closer: str = "}}") -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of each ``${{ ... }}`` in ``text``; quotes inside are respected."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (start := text.find(opener, pos)) != -1:
        i = start + len(opener)
        quoted = False
        while i < len(text):
            if text[i] == "'":
                quoted = not quoted
            elif not quoted and text.startswith(closer, i):
                break
            i += 1
        if i >= len(text):
            raise ExpressionError(text, f"{opener} is not closed by {closer}")
        spans.append((start, i + len(closer)))
        pos = i + len(closer)
    return spans
