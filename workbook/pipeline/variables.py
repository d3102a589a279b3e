"""Runtime variables: scopes, ``$(name)`` macros, environment mapping and logging commands.

Azure Pipelines semantics: names are case-insensitive; a macro whose variable is not defined is
left as it is (so shell ``$(command)`` survives); every non-secret variable reaches a step's
environment upper-cased with ``.`` and spaces turned into ``_``; a step talks back through
``##vso[area.event key=value;...]message`` lines on its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_MACRO = re.compile(r"\$\(([A-Za-z_][\w.\-]*)\)")
COMMAND_PREFIX = "##vso["
#: The agent's escapes for command properties and data (src/Agent.Sdk/CommandStringConvertor.cs
#: in microsoft/azure-pipelines-agent); ``%AZP25`` is its escaped percent sign.
_ESCAPES = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%AZP25", "%"))
MAX_MACRO_DEPTH = 10


@dataclass
class Variable:
    """One variable's value and flags."""

    name: str
    value: str
    secret: bool = False
    readonly: bool = False


class Variables:
    """A scope of variables over an optional parent scope (pipeline → stage → job)."""

    def __init__(self, parent: Variables | None = None) -> None:
        self.parent = parent
        self._vars: dict[str, Variable] = {}

    def child(self) -> Variables:
        return Variables(self)

    def set(self, name: str, value: Any, *, secret: bool = False, readonly: bool = False) -> None:
        """Define or replace a variable in this scope."""
        text = "" if value is None else str(value)
        self._vars[name.casefold()] = Variable(name, text, secret, readonly)

    def lookup(self, name: str) -> Variable | None:
        var = self._vars.get(name.casefold())
        if var is None and self.parent is not None:
            return self.parent.lookup(name)
        return var

    def get(self, name: str, default: str | None = None) -> str | None:
        """The variable's value with macros expanded, or ``default``."""
        var = self.lookup(name)
        return default if var is None else self.expand(var.value)

    def all(self) -> dict[str, Variable]:
        """Every visible variable, inner scopes winning, keyed by folded name."""
        out = self.parent.all() if self.parent is not None else {}
        out.update(self._vars)
        return out

    def expand(self, text: str, _depth: int = 0) -> str:
        """Replace ``$(name)`` for defined variables (recursively); leave the rest as written."""
        if _depth > MAX_MACRO_DEPTH or "$(" not in text:
            return text

        def sub(m: re.Match[str]) -> str:
            var = self.lookup(m.group(1))
            return m.group(0) if var is None else self.expand(var.value, _depth + 1)

        return _MACRO.sub(sub, text)

    def as_mapping(self) -> dict[str, str]:
        """Values for ``variables['name']`` in expressions."""
        return {v.name: self.expand(v.value) for v in self.all().values()}

    def environment(self) -> dict[str, str]:
        """Non-secret variables as a step sees them: ``Build.BuildId`` → ``BUILD_BUILDID``."""
        return {env_name(v.name): self.expand(v.value) for v in self.all().values() if not v.secret}

    def secrets(self) -> list[str]:
        return [v.value for v in self.all().values() if v.secret and v.value]


def env_name(name: str) -> str:
    """The environment variable name Azure Pipelines gives a pipeline variable."""
    return re.sub(r"[.\s]", "_", name).upper()


def mask(text: str, secrets: list[str]) -> str:
    """Replace every secret value by ``***``, as the agent does in logs."""
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def _unescape(text: str) -> str:
    for code, char in _ESCAPES:
        text = text.replace(code, char)
    return text


@dataclass
class Command:
    """A logging command such as ``##vso[task.setvariable variable=x;isOutput=true]value``."""

    area: str
    event: str
    properties: dict[str, str]
    message: str

    @property
    def name(self) -> str:
        return f"{self.area}.{self.event}".lower()

    def flag(self, key: str) -> bool:
        return self.properties.get(key.lower(), "").strip().lower() == "true"


def parse_command(line: str) -> Command | None:
    """The logging command on one output line, or None.

    As the agent parses it (``Command.TryParse`` in
    src/Microsoft.VisualStudio.Services.Agent/Command.cs): ``##vso[`` anywhere on the line, the
    command info up to the first ``]``, ``area.event`` then ``;``-separated ``key=value``
    properties (keys case-insensitive, not trimmed), the rest of the line is the data.
    """
    line = line.rstrip("\r\n")
    start = line.find(COMMAND_PREFIX)
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    info = line[start + len(COMMAND_PREFIX) : end]
    name, _, rest = info.partition(" ")
    parts = [p for p in name.split(".") if p]
    if len(parts) != 2:
        return None
    props: dict[str, str] = {}
    for part in (p for p in rest.split(";") if p) if rest else ():
        key, sep, value = part.partition("=")
        if sep and key and value:
            props[key.lower()] = _unescape(value)
    return Command(parts[0], parts[1], props, _unescape(line[end + 1 :]))
