"""A renderer for the subset of Helm's Go templates that deploy/helm/tiergate uses.

Helm itself cannot be installed here (no Go toolchain, no binary in a package registry), so the
chart's tests render it with this: actions `{{ }}` with `{{-`/`-}}` trimming, comments, `define` /
`include`, `if` / `else` / `end`, pipelines with parentheses, and the functions below with Helm's
semantics. Anything else raises `TemplateError`, so the chart cannot silently drift outside what is
checked. When `helm` is on PATH the tests also run the real `helm template`.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path
from typing import Any

import yaml


class TemplateError(Exception):
    pass


_NOTHING = object()  # "no piped value" (a piped nil is a value)
ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def _tokens(source: str) -> list[tuple[str, str]]:
    """('text', s) and ('action', s) with Go's whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    for match in ACTION.finditer(source):
        text = source[pos : match.start()]
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        out.append(("text", text))
        out.append(("action", match.group(2)))
        pos = match.end()
        if match.group(3):
            rest = source[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    out.append(("text", source[pos:]))
    return out


def _parse(tokens: list[tuple[str, str]], i: int = 0, stop: tuple[str, ...] = ()) -> tuple[list, int, str]:
    """Nodes until one of `stop` ('end', 'else'); returns (nodes, next index, the stop keyword)."""
    nodes: list = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        if value.startswith("/*"):
            continue
        word = value.split(None, 1)[0] if value else ""
        if word in stop:
            return nodes, i, word
        if word == "define":
            name = shlex.split(value)[1]
            body, i, _ = _parse(tokens, i, ("end",))
            nodes.append(("define", name, body))
        elif word == "if":
            then, i, ended = _parse(tokens, i, ("end", "else"))
            otherwise: list = []
            if ended == "else":
                otherwise, i, _ = _parse(tokens, i, ("end",))
            nodes.append(("if", value[2:].strip(), then, otherwise))
        elif word in ("range", "with", "else", "end", "block", "template"):
            raise TemplateError(f"unsupported action {{{{ {value} }}}}")
        else:
            nodes.append(("expr", value))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
    return nodes, i, ""


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(n: int, text: str) -> str:
    return "\n".join((" " * n + line) if line else line for line in str(text).split("\n"))


def _quote(value: Any) -> str:
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _required(message: str, value: Any) -> Any:
    if not _truthy(value):
        raise TemplateError(message)
    return value


def _printf(fmt: str, *args: Any) -> str:
    return re.sub(r"%[sdv]", "{}", fmt).format(*args)


class Renderer:
    def __init__(self, chart_dir: Path) -> None:
        self.chart_dir = chart_dir
        self.chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
        self.defaults = yaml.safe_load((chart_dir / "values.yaml").read_text())
        self.templates = {
            p.name: _parse(_tokens(p.read_text()))[0] for p in sorted((chart_dir / "templates").iterdir())
        }
        self.defines: dict[str, list] = {}
        for nodes in self.templates.values():
            for node in nodes:
                if node[0] == "define":
                    self.defines[node[1]] = node[2]
        self.functions = {
            "include": lambda name, ctx: self._render(self.defines[name], ctx),
            "toYaml": _to_yaml,
            "nindent": lambda n, s: "\n" + _indent(n, s),
            "indent": _indent,
            "quote": _quote,
            "default": lambda default, value=None: value if _truthy(value) else default,
            "required": _required,
            "printf": _printf,
            "trunc": lambda n, s: str(s)[:n],
            "trimSuffix": lambda suffix, s: str(s).removesuffix(suffix),
            "contains": lambda needle, hay: needle in str(hay),
            "sha256sum": lambda s: hashlib.sha256(str(s).encode()).hexdigest(),
            "not": lambda v: not _truthy(v),
            "and": lambda a, b: b if _truthy(a) else a,
            "or": lambda a, b: a if _truthy(a) else b,
        }

    def render(
        self, values: dict | None = None, release: str = "tiergate", namespace: str = "default"
    ) -> dict[str, str]:
        ctx = {
            "Values": _merge(self.defaults, values or {}),
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
            "Chart": {
                "Name": self.chart["name"],
                "Version": self.chart["version"],
                "AppVersion": self.chart["appVersion"],
            },
        }
        out = {}
        for name, nodes in self.templates.items():
            if not name.startswith("_"):
                out[name] = self._render(nodes, ctx)
        return out

    def manifests(self, values: dict | None = None, release: str = "tiergate") -> list[dict]:
        documents = []
        for text in self.render(values, release).values():
            documents.extend(d for d in yaml.safe_load_all(text) if d)
        return documents

    def _render(self, nodes: list, ctx: dict) -> str:
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "expr":
                value = self._pipeline(node[1], ctx)
                out.append(
                    "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
                )
            elif node[0] == "if":
                branch = node[2] if _truthy(self._pipeline(node[1], ctx)) else node[3]
                out.append(self._render(branch, ctx))
        return "".join(out)

    # --- pipelines ----------------------------------------------------------------------------

    def _pipeline(self, source: str, ctx: dict) -> Any:
        items = _lex(source)
        value, pos = self._pipe(items, 0, ctx)
        if pos != len(items):
            raise TemplateError(f"cannot parse {source!r}")
        return value

    def _pipe(self, items: list[str], pos: int, ctx: dict) -> tuple[Any, int]:
        value, pos = self._command(items, pos, ctx, _NOTHING)
        while pos < len(items) and items[pos] == "|":
            value, pos = self._command(items, pos + 1, ctx, value)
        return value, pos

    def _command(self, items: list[str], pos: int, ctx: dict, piped: Any) -> tuple[Any, int]:
        head = items[pos]
        if head in self.functions:
            args, pos = [], pos + 1
            while pos < len(items) and items[pos] not in ("|", ")"):
                arg, pos = self._operand(items, pos, ctx)
                args.append(arg)
            if piped is not _NOTHING:
                args.append(piped)
            return self.functions[head](*args), pos
        if piped is not _NOTHING:
            raise TemplateError(f"cannot pipe into {head!r}")
        return self._operand(items, pos, ctx)

    def _operand(self, items: list[str], pos: int, ctx: dict) -> tuple[Any, int]:
        item = items[pos]
        if item == "(":
            value, pos = self._pipe(items, pos + 1, ctx)
            if items[pos] != ")":
                raise TemplateError("unbalanced parentheses")
            return value, pos + 1
        if item == ".":
            return ctx, pos + 1
        if item.startswith("."):
            value: Any = ctx
            for part in item[1:].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value, pos + 1
        if item.startswith('"'):
            return item[1:-1].replace('\\"', '"'), pos + 1
        if re.fullmatch(r"-?\d+", item):
            return int(item), pos + 1
        if item in ("true", "false"):
            return item == "true", pos + 1
        raise TemplateError(f"unsupported operand {item!r}")


def _lex(source: str) -> list[str]:
    return re.findall(r'"(?:\\.|[^"\\])*"|[()|]|[^\s()|]+', source)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return merged
