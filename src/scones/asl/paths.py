"""JSONPath (the subset Step Functions accepts) and reference paths, compiled once.

A path is parsed at load time into a tuple of steps. Definite paths (only names and
indexes) evaluate to one value and fail when it is missing; indefinite paths (wildcards,
slices, unions, filters, deep scan) evaluate to a list of matches, possibly empty —
the behaviour AWS inherits from Jayway JsonPath.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

ROOT_INPUT = "$"
ROOT_CONTEXT = "$$"

# Step kinds.
_KEY = 0  # arg: str
_INDEX = 1  # arg: int
_WILD = 2  # arg: None
_SLICE = 3  # arg: (start, stop, step)
_UNION = 4  # arg: tuple of str|int
_FILTER = 5  # arg: predicate
_DEEP = 6  # arg: str name or None for '*'
_FUNC = 7  # arg: function name (length(), ...)

_MISSING = object()


class PathSyntaxError(ValueError):
    """The text is not a valid path; raised at load time."""


class PathNotFound(LookupError):
    """A definite path names something absent from the data."""

    def __init__(self, path: JsonPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


_VAR_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class JsonPath:
    """A compiled path. `root` is "$" (state input), "$$" (context) or a variable name."""

    __slots__ = ("definite", "keys", "root", "steps", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise PathSyntaxError(f"path must be a string, got {text!r}")
        self.text = text
        s = text.strip()
        if s.startswith("$$"):
            self.root = ROOT_CONTEXT
            rest = s[2:]
        elif s == "$" or s.startswith("$.") or s.startswith("$["):
            self.root = ROOT_INPUT
            rest = s[1:]
        else:
            m = _VAR_RE.match(s)
            if not m:
                raise PathSyntaxError(f"path {text!r} must start with '$'")
            self.root = m.group(1)
            rest = s[m.end() :]
        self.steps = tuple(_parse_steps(rest, text))
        self.definite = all(k in (_KEY, _INDEX, _FUNC) for k, _ in self.steps)
        # Fast path: a definite path of names only.
        self.keys = (
            tuple(a for _, a in self.steps) if all(k == _KEY for k, _ in self.steps) else None
        )

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"

    @property
    def is_variable(self) -> bool:
        return self.root not in (ROOT_INPUT, ROOT_CONTEXT)

    @property
    def is_reference(self) -> bool:
        """Reference paths (ResultPath) may only hold names and indexes."""
        return all(k in (_KEY, _INDEX) for k, _ in self.steps)

    def normalized(self, upto: int | None = None) -> str:
        """Jayway's bracket notation, e.g. $['a'][0], as AWS quotes it in causes."""
        out = ["$"]
        for kind, arg in self.steps[: upto if upto is not None else len(self.steps)]:
            if kind == _KEY:
                out.append(f"['{arg}']")
            elif kind == _INDEX:
                out.append(f"[{arg}]")
            elif kind == _WILD:
                out.append("[*]")
            else:
                out.append("[?]")
        return "".join(out)

    def get(self, data: Any) -> Any:
        """Evaluate against `data` (already the chosen root). Raises PathNotFound."""
        keys = self.keys
        if keys is not None:
            cur = data
            last = len(keys) - 1
            for i, k in enumerate(keys):
                if type(cur) is dict:
                    child = cur.get(k, _MISSING)
                    if child is not _MISSING:
                        cur = child
                        continue
                self._raise_missing(cur, i, last)
            return cur
        if self.definite:
            return self._get_definite(data)
        out: list[Any] = []
        self._collect(data, 0, out)
        return out

    def _raise_missing(self, cur: Any, i: int, last: int) -> None:
        if i == last:
            raise PathNotFound(self, f"No results for path: {self.normalized()}")
        raise PathNotFound(self, f"Missing property in path {self.normalized(i + 1)}")

    def _get_definite(self, data: Any) -> Any:
        cur = data
        last = len(self.steps) - 1
        for i, (kind, arg) in enumerate(self.steps):
            if kind == _KEY:
                if type(cur) is dict and arg in cur:
                    cur = cur[arg]
                    continue
                self._raise_missing(cur, i, last)
            elif kind == _INDEX:
                if type(cur) is list and -len(cur) <= arg < len(cur):
                    cur = cur[arg]
                    continue
                self._raise_missing(cur, i, last)
            else:  # _FUNC
                cur = _apply_function(arg, cur, self)
        return cur

    def _collect(self, cur: Any, i: int, out: list[Any]) -> None:
        steps = self.steps
        if i == len(steps):
            out.append(cur)
            return
        kind, arg = steps[i]
        next_step = i + 1
        if kind == _KEY:
            if type(cur) is dict and arg in cur:
                self._collect(cur[arg], next_step, out)
        elif kind == _INDEX:
            if type(cur) is list and -len(cur) <= arg < len(cur):
                self._collect(cur[arg], next_step, out)
        elif kind == _WILD:
            if type(cur) is dict:
                for v in cur.values():
                    self._collect(v, next_step, out)
            elif type(cur) is list:
                for v in cur:
                    self._collect(v, next_step, out)
        elif kind == _SLICE:
            if type(cur) is list:
                start, stop, step = arg
                for v in cur[slice(start, stop, step)]:
                    self._collect(v, next_step, out)
        elif kind == _UNION:
            for a in arg:
                if isinstance(a, int):
                    if type(cur) is list and -len(cur) <= a < len(cur):
                        self._collect(cur[a], next_step, out)
                elif type(cur) is dict and a in cur:
                    self._collect(cur[a], next_step, out)
        elif kind == _FILTER:
            items = cur if type(cur) is list else list(cur.values()) if type(cur) is dict else []
            for v in items:
                if arg(v):
                    self._collect(v, next_step, out)
        elif kind == _DEEP:
            for v in _descend(cur):
                if arg is None:
                    # '..*' matches every descendant value.
                    pass
                elif type(v) is dict and arg in v:
                    self._collect(v[arg], next_step, out)
                    continue
                else:
                    continue
                self._collect(v, next_step, out)
        elif kind == _FUNC:
            # A function after an indefinite prefix applies to the collected list.
            out.append(_apply_function(arg, cur, self))


def _descend(value: Any) -> Any:
    """The value and all its descendants, depth-first."""
    yield value
    if type(value) is dict:
        for v in value.values():
            yield from _descend(v)
    elif type(value) is list:
        for v in value:
            yield from _descend(v)


def _apply_function(name: str, value: Any, path: JsonPath) -> Any:
    if name == "length":
        if isinstance(value, (list, dict, str)):
            return len(value)
    elif name in ("min", "max", "avg", "sum") and isinstance(value, list):
        nums = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums:
            if name == "min":
                return min(nums)
            if name == "max":
                return max(nums)
            if name == "sum":
                return sum(nums)
            return sum(nums) / len(nums)
    raise PathNotFound(path, f"Function {name}() cannot be applied in path {path.text}")


_NAME_STOP = ".[ "


def _parse_steps(rest: str, text: str) -> list[tuple[int, Any]]:
    steps: list[tuple[int, Any]] = []
    i, n = 0, len(rest)
    while i < n:
        c = rest[i]
        if rest.startswith("..", i):
            i += 2
            if i < n and rest[i] == "*":
                steps.append((_DEEP, None))
                i += 1
            elif i < n and rest[i] == "[":
                steps.append((_DEEP, None))
            else:
                j = i
                while j < n and rest[j] not in _NAME_STOP:
                    j += 1
                if j == i:
                    raise PathSyntaxError(f"path {text!r}: empty name after '..'")
                steps.append((_DEEP, rest[i:j]))
                i = j
        elif c == ".":
            i += 1
            if i < n and rest[i] == "*":
                steps.append((_WILD, None))
                i += 1
                continue
            j = i
            while j < n and rest[j] not in _NAME_STOP:
                j += 1
            name = rest[i:j]
            if not name:
                raise PathSyntaxError(f"path {text!r}: empty name at offset {i}")
            if name.endswith("()") and j == n:
                steps.append((_FUNC, name[:-2]))
            else:
                steps.append((_KEY, name))
            i = j
        elif c == "[":
            j = _find_bracket_end(rest, i, text)
            steps.append(_parse_bracket(rest[i + 1 : j].strip(), text))
            i = j + 1
        else:
            raise PathSyntaxError(f"path {text!r}: unexpected {c!r} at offset {i}")
    return steps


def _find_bracket_end(s: str, i: int, text: str) -> int:
    depth = 0
    quote = ""
    j = i
    while j < len(s):
        ch = s[j]
        if quote:
            if ch == "\\":
                j += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth == 0 and ch == "]":
                return j
        j += 1
    raise PathSyntaxError(f"path {text!r}: unclosed '['")


_INT_RE = re.compile(r"^-?\d+$")
_SLICE_RE = re.compile(r"^(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(-?\d*))?$")


def _parse_bracket(body: str, text: str) -> tuple[int, Any]:
    if body == "*":
        return (_WILD, None)
    if body.startswith("?"):
        expr = body[1:].strip()
        if not (expr.startswith("(") and expr.endswith(")")):
            raise PathSyntaxError(f"path {text!r}: filter must be ?(...)")
        return (_FILTER, _compile_filter(expr[1:-1], text))
    if _INT_RE.match(body):
        return (_INDEX, int(body))
    m = _SLICE_RE.match(body)
    if m:
        a, b, c = (int(x) if x else None for x in m.groups())
        if c == 0:
            raise PathSyntaxError(f"path {text!r}: slice step cannot be 0")
        return (_SLICE, (a, b, c))
    parts = _split_top(body, ",")
    items: list[Any] = []
    for p in parts:
        p = p.strip()
        if len(p) >= 2 and p[0] == p[-1] and p[0] in "'\"":
            items.append(_unquote(p))
        elif _INT_RE.match(p):
            items.append(int(p))
        else:
            raise PathSyntaxError(f"path {text!r}: bad subscript [{body}]")
    if len(items) == 1:
        return (_KEY, items[0]) if isinstance(items[0], str) else (_INDEX, items[0])
    return (_UNION, tuple(items))


# Escapes in a quoted name or filter string, as Java's (and so AWS's JsonPath) reads them.
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def _unescape_match(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if len(escaped) == 5:  # \uXXXX
        return chr(int(escaped[1:], 16))
    # \' \" \\ stand for themselves; so does any other escaped character.
    return _ESCAPES.get(escaped, escaped)


def _unquote(quoted: str) -> str:
    """The text of a quoted literal ('...' or "..."), its escape sequences resolved."""
    return _ESCAPE_RE.sub(_unescape_match, quoted[1:-1])


def _split_top(s: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    escaped = False
    for ch in s:
        if escaped:
            escaped = False
        elif quote:
            if ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


# --- filter expressions: ?(@.a == 1 && @.b), comparisons, =~ regex, ! ---

_FTOKEN = re.compile(
    r"""\s*(?:
      (?P<op>==|!=|<=|>=|<|>|=~|&&|\|\||!|\(|\))
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<regex>/(?:[^/\\]|\\.)*/[a-z]*)
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<kw>true|false|null)\b
    | (?P<path>[@$](?:\.\.?[^\s=!<>&|()\[\].]+|\.\*|\[[^\]]*\])*(?:\.length\(\))?)
    )""",
    re.X,
)


def _compile_filter(expr: str, text: str) -> Callable[[Any], bool]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _FTOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise PathSyntaxError(f"path {text!r}: cannot parse filter {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        val = m.group(kind)  # type: ignore[arg-type]
        if kind == "str":
            tokens.append(("lit", _unquote(val)))
        elif kind == "num":
            tokens.append(("lit", float(val) if any(c in val for c in ".eE") else int(val)))
        elif kind == "kw":
            tokens.append(("lit", {"true": True, "false": False, "null": None}[val]))
        elif kind == "regex":
            body, _, flags = val[1:].rpartition("/")
            tokens.append(("lit", re.compile(body, re.I if "i" in flags else 0)))
        elif kind == "path":
            p = JsonPath("$" + val[1:])
            tokens.append(("path", (val[0], p)))
        else:
            tokens.append(("op", val))
    parser = _FilterParser(tokens, text)
    fn = parser.parse_or()
    if parser.i != len(tokens):
        raise PathSyntaxError(f"path {text!r}: trailing tokens in filter {expr!r}")
    return lambda item: bool(fn(item))


class _FilterParser:
    def __init__(self, tokens: list[tuple[str, Any]], text: str) -> None:
        self.t = tokens
        self.i = 0
        self.text = text

    def _peek(self) -> tuple[str, Any] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def parse_or(self) -> Callable[[Any], Any]:
        left = self.parse_and()
        while self._peek() == ("op", "||"):
            self.i += 1
            right = self.parse_and()
            left = (lambda a, b: lambda x: a(x) or b(x))(left, right)
        return left

    def parse_and(self) -> Callable[[Any], Any]:
        left = self.parse_unary()
        while self._peek() == ("op", "&&"):
            self.i += 1
            right = self.parse_unary()
            left = (lambda a, b: lambda x: a(x) and b(x))(left, right)
        return left

    def parse_unary(self) -> Callable[[Any], Any]:
        if self._peek() == ("op", "!"):
            self.i += 1
            inner = self.parse_unary()
            return lambda x: not inner(x)
        return self.parse_cmp()

    def parse_cmp(self) -> Callable[[Any], Any]:
        left = self.parse_atom()
        tok = self._peek()
        if tok and tok[0] == "op" and tok[1] in ("==", "!=", "<", "<=", ">", ">=", "=~"):
            self.i += 1
            right = self.parse_atom()
            op = tok[1]
            return lambda x: _compare(op, left(x), right(x))
        # A bare path tests existence.
        return lambda x: left(x) is not _MISSING and left(x) is not False

    def parse_atom(self) -> Callable[[Any], Any]:
        tok = self._peek()
        if tok is None:
            raise PathSyntaxError(f"path {self.text!r}: incomplete filter")
        self.i += 1
        if tok == ("op", "("):
            inner = self.parse_or()
            if self._peek() != ("op", ")"):
                raise PathSyntaxError(f"path {self.text!r}: missing ')' in filter")
            self.i += 1
            return inner
        if tok[0] == "lit":
            v = tok[1]
            return lambda x: v
        if tok[0] == "path":
            anchor, p = tok[1]
            if anchor == "$":
                # '$' inside a filter would need the document root; treat it as missing.
                return lambda x: _MISSING

            def ev(x: Any, p: JsonPath = p) -> Any:
                try:
                    return p.get(x)
                except PathNotFound:
                    return _MISSING

            return ev
        raise PathSyntaxError(f"path {self.text!r}: unexpected {tok[1]!r} in filter")


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return op == "!=" and not (a is _MISSING and b is _MISSING)
    if op == "=~":
        return isinstance(a, str) and isinstance(b, re.Pattern) and b.fullmatch(a) is not None
    num_a = isinstance(a, (int, float)) and not isinstance(a, bool)
    num_b = isinstance(b, (int, float)) and not isinstance(b, bool)
    if op == "==":
        return a == b if (num_a and num_b) or type(a) is type(b) else False
    if op == "!=":
        return not (a == b if (num_a and num_b) or type(a) is type(b) else False)
    if (num_a and num_b) or (isinstance(a, str) and isinstance(b, str)):
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
    return False


# --- writing through a reference path (ResultPath) ---


class PathWriteError(ValueError):
    pass


def set_path(data: Any, path: JsonPath, value: Any) -> Any:
    """Return a copy of `data` with `value` placed at the reference path.

    Copies only the containers along the path, so the caller's input is never mutated.
    Missing objects along the way are created, as AWS does for ResultPath.
    """
    steps = path.steps
    if not steps:
        return value
    return _set(data, steps, 0, value, path)


def _set(cur: Any, steps: tuple, i: int, value: Any, path: JsonPath) -> Any:
    kind, arg = steps[i]
    last = i == len(steps) - 1
    if kind == _KEY:
        if cur is _MISSING:
            cur = {}
        if type(cur) is not dict:
            raise PathWriteError(f'Unable to apply step "{arg}" to input {_short(cur)}')
        new = dict(cur)
        new[arg] = value if last else _set(cur.get(arg, _MISSING), steps, i + 1, value, path)
        return new
    if kind == _INDEX:
        if type(cur) is not list or not (-len(cur) <= arg < len(cur)):
            raise PathWriteError(f'Unable to apply step "[{arg}]" to input {_short(cur)}')
        new_l = list(cur)
        new_l[arg] = value if last else _set(cur[arg], steps, i + 1, value, path)
        return new_l
    raise PathWriteError(f"path {path.text!r} is not a reference path")


def _short(v: Any) -> str:
    import json

    if v is _MISSING:
        return "null"
    return json.dumps(v, separators=(",", ":"))
