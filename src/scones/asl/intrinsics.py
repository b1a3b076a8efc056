"""States.* intrinsic functions: parsed once at load time, evaluated per call."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .paths import JsonPath, PathSyntaxError


class IntrinsicSyntaxError(ValueError):
    pass


class IntrinsicError(ValueError):
    """An intrinsic function was given arguments it cannot handle (runtime)."""


@dataclass(frozen=True)
class _Lit:
    value: Any
    # For string literals: the raw body with escapes still in place, for States.Format.
    raw: str | None = None


@dataclass(frozen=True)
class _Path:
    path: JsonPath


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]
    text: str


def is_intrinsic(text: str) -> bool:
    return isinstance(text, str) and text.lstrip().startswith("States.")


def parse(text: str) -> Call:
    p = _Parser(text)
    call = p.call()
    p.ws()
    if p.i != len(p.s):
        raise IntrinsicSyntaxError(f"unexpected text after intrinsic function: {p.s[p.i :]!r}")
    _check_arity(call)
    return call


class _Parser:
    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def call(self) -> Call:
        self.ws()
        start = self.i
        j = self.i
        while j < len(self.s) and (self.s[j].isalnum() or self.s[j] in "._"):
            j += 1
        name = self.s[self.i : j]
        if not name.startswith("States."):
            raise IntrinsicSyntaxError(f"expected a States.* function at {self.s[start:]!r}")
        if name not in FUNCTIONS:
            raise IntrinsicSyntaxError(f"unknown intrinsic function {name!r}")
        self.i = j
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] != "(":
            raise IntrinsicSyntaxError(f"expected '(' after {name}")
        self.i += 1
        args: list[Any] = []
        self.ws()
        if self.i < len(self.s) and self.s[self.i] == ")":
            self.i += 1
            return Call(name, (), self.s[start : self.i])
        while True:
            args.append(self.arg())
            self.ws()
            if self.i >= len(self.s):
                raise IntrinsicSyntaxError(f"unclosed argument list for {name}")
            c = self.s[self.i]
            self.i += 1
            if c == ")":
                return Call(name, tuple(args), self.s[start : self.i])
            if c != ",":
                raise IntrinsicSyntaxError(f"expected ',' or ')' in {name}, got {c!r}")

    def arg(self) -> Any:
        self.ws()
        s, i = self.s, self.i
        if i >= len(s):
            raise IntrinsicSyntaxError("missing argument")
        c = s[i]
        if c == "'":
            return self.string()
        if c == "$":
            j = i
            depth = 0
            quote = ""
            while j < len(s):
                ch = s[j]
                if quote:
                    if ch == quote:
                        quote = ""
                elif ch in "'\"" and depth > 0:
                    quote = ch
                elif ch in "[(":
                    depth += 1
                elif ch in "])":
                    if depth == 0:
                        break
                    depth -= 1
                elif ch == "," and depth == 0:
                    break
                j += 1
            text = s[i:j].strip()
            self.i = j
            try:
                return _Path(JsonPath(text))
            except PathSyntaxError as e:
                raise IntrinsicSyntaxError(str(e)) from None
        if s.startswith("States.", i):
            return self.call()
        j = i
        while j < len(s) and s[j] not in ",)" and not s[j].isspace():
            j += 1
        tok = s[i:j]
        self.i = j
        if tok == "true":
            return _Lit(True)
        if tok == "false":
            return _Lit(False)
        if tok == "null":
            return _Lit(None)
        try:
            return _Lit(int(tok))
        except ValueError:
            pass
        try:
            return _Lit(float(tok))
        except ValueError:
            raise IntrinsicSyntaxError(f"invalid argument {tok!r}") from None

    def string(self) -> _Lit:
        s = self.s
        i = self.i + 1
        out: list[str] = []
        raw: list[str] = []
        while i < len(s):
            c = s[i]
            if c == "\\" and i + 1 < len(s):
                escaped = s[i + 1]
                out.append(escaped)
                raw.append(c + escaped)
                i += 2
                continue
            if c == "'":
                self.i = i + 1
                return _Lit("".join(out), "".join(raw))
            out.append(c)
            raw.append(c)
            i += 1
        raise IntrinsicSyntaxError("unterminated string literal")


def paths_in(call: Call) -> list[JsonPath]:
    out: list[JsonPath] = []
    for a in call.args:
        if isinstance(a, _Path):
            out.append(a.path)
        elif isinstance(a, Call):
            out.extend(paths_in(a))
    return out


Resolver = Callable[[JsonPath], Any]


def evaluate(call: Call, resolve: Resolver) -> Any:
    args = []
    for a in call.args:
        if isinstance(a, _Lit):
            args.append(a.value)
        elif isinstance(a, _Path):
            args.append(resolve(a.path))
        else:
            args.append(evaluate(a, resolve))
    if call.name == "States.Format":
        first = call.args[0] if call.args else None
        raw = first.raw if isinstance(first, _Lit) and first.raw is not None else None
        return _format(args, raw)
    return FUNCTIONS[call.name](*args)


# --- the functions ---


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _java_str(v: Any) -> str:
    """How AWS renders a value inside States.Format (Java toString of the JSON value)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return _num_text(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_java_str(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_java_str(x) for x in v) + "]"
    return str(v)


def _num_text(v: float) -> str:
    if v == int(v) and abs(v) < 1e16:
        return repr(v)
    return repr(v)


def _format(args: list[Any], raw: str | None) -> str:
    if not args or not isinstance(args[0], str):
        raise IntrinsicError("States.Format expects a string template as its first argument")
    template = raw if raw is not None else args[0]
    values = args[1:]
    out: list[str] = []
    n = 0
    i = 0
    while i < len(template):
        c = template[i]
        if c == "\\" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 2
            continue
        if template.startswith("{}", i):
            if n >= len(values):
                raise IntrinsicError("States.Format has more '{}' placeholders than arguments")
            out.append(_java_str(values[n]))
            n += 1
            i += 2
            continue
        out.append(c)
        i += 1
    if n != len(values):
        raise IntrinsicError(f"States.Format has {n} placeholders but {len(values)} arguments")
    return "".join(out)


def _string_to_json(s: Any) -> Any:
    if not isinstance(s, str):
        raise IntrinsicError(f"States.StringToJson expects a string, got {json.dumps(s)}")
    if not s.strip():
        return None
    try:
        v = json.loads(s)
    except ValueError:
        raise IntrinsicError(f"States.StringToJson could not parse {s!r} as JSON") from None
    if isinstance(v, float) and v == 0 and s.strip().startswith("-0") and "." not in s:
        return 0
    return v


def _json_to_string(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _array(*args: Any) -> list[Any]:
    return list(args)


def _array_partition(arr: Any, size: Any) -> list[Any]:
    if not isinstance(arr, list):
        raise IntrinsicError("States.ArrayPartition expects an array as its first argument")
    if not _is_num(size) or int(size) != size or size <= 0:
        raise IntrinsicError("States.ArrayPartition expects a positive integer chunk size")
    n = int(size)
    return [arr[i : i + n] for i in range(0, len(arr), n)]


def _array_contains(arr: Any, value: Any) -> bool:
    if not isinstance(arr, list):
        raise IntrinsicError("States.ArrayContains expects an array as its first argument")
    return any(_json_equal(x, value) for x in arr)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_num(a) and _is_num(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _array_range(start: Any, end: Any, step: Any) -> list[int]:
    for name, v in (("start", start), ("end", end), ("step", step)):
        if not _is_num(v) or int(v) != v:
            raise IntrinsicError(
                f"States.ArrayRange expects an integer {name}, got {json.dumps(v)}"
            )
    start, end, step = int(start), int(end), int(step)
    if step == 0:
        raise IntrinsicError("States.ArrayRange step cannot be 0")
    out = list(range(start, end + (1 if step > 0 else -1), step))
    if len(out) > 1000:
        raise IntrinsicError("States.ArrayRange cannot produce more than 1000 items")
    return out


def _array_get_item(arr: Any, index: Any) -> Any:
    if not isinstance(arr, list):
        raise IntrinsicError("States.ArrayGetItem expects an array as its first argument")
    if not _is_num(index) or int(index) != index or not 0 <= int(index) < len(arr):
        raise IntrinsicError(f"States.ArrayGetItem index {json.dumps(index)} is out of range")
    return arr[int(index)]


def _array_length(arr: Any) -> int:
    if not isinstance(arr, list):
        raise IntrinsicError("States.ArrayLength expects an array")
    return len(arr)


def _array_unique(arr: Any) -> list[Any]:
    if not isinstance(arr, list):
        raise IntrinsicError("States.ArrayUnique expects an array")
    out: list[Any] = []
    for x in arr:
        if not any(_json_equal(x, y) for y in out):
            out.append(x)
    return out


def _base64_encode(s: Any) -> str:
    if not isinstance(s, str):
        raise IntrinsicError("States.Base64Encode expects a string")
    if len(s) > 10000:
        raise IntrinsicError("States.Base64Encode input exceeds 10000 characters")
    return base64.b64encode(s.encode("utf-8")).decode("ascii")


def _base64_decode(s: Any) -> str:
    if not isinstance(s, str):
        raise IntrinsicError("States.Base64Decode expects a string")
    if len(s) > 10000:
        raise IntrinsicError("States.Base64Decode input exceeds 10000 characters")
    try:
        return base64.b64decode(s.encode("ascii"), validate=False).decode("utf-8")
    except (ValueError, UnicodeError):
        raise IntrinsicError(f"States.Base64Decode could not decode {s!r}") from None


_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _hash(data: Any, algorithm: Any) -> str:
    if algorithm not in _HASHES:
        raise IntrinsicError(
            f"States.Hash algorithm {json.dumps(algorithm)} is not one of {', '.join(_HASHES)}"
        )
    text = data if isinstance(data, str) else _json_to_string(data)
    if len(text) > 10000:
        raise IntrinsicError("States.Hash input exceeds 10000 characters")
    return hashlib.new(_HASHES[algorithm], text.encode("utf-8")).hexdigest()


def _json_merge(a: Any, b: Any, deep: Any) -> dict[str, Any]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise IntrinsicError("States.JsonMerge expects two JSON objects")
    if deep is not False:
        # AWS supports only shallow merging.
        raise IntrinsicError("States.JsonMerge supports only shallow merge (third argument false)")
    out = dict(a)
    out.update(b)
    return out


def _java_round(v: float) -> int:
    # Java Math.round: floor(x + 0.5), which AWS applies to non-integer arguments.
    return math.floor(v + 0.5)


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    if not _is_num(start) or not _is_num(end):
        raise IntrinsicError("States.MathRandom expects numeric start and end")
    lo, hi = _java_round(start), _java_round(end)
    rng = random.Random(_java_round(seed)) if seed is not None else random
    if hi <= lo:
        return lo
    return rng.randrange(lo, hi)


def _math_add(a: Any, b: Any) -> int:
    if not _is_num(a) or not _is_num(b):
        raise IntrinsicError(
            f"States.MathAdd expects two numbers, got {json.dumps(a)} and {json.dumps(b)}"
        )
    return _java_round(a) + _java_round(b)


def _string_split(s: Any, delims: Any) -> list[str]:
    if not isinstance(s, str) or not isinstance(delims, str):
        raise IntrinsicError("States.StringSplit expects two strings")
    if not delims:
        return [s] if s else []
    out: list[str] = []
    cur: list[str] = []
    for ch in s:
        if ch in delims:
            if cur:
                out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def _uuid() -> str:
    return str(uuid.uuid4())


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.Format": lambda *a: _format(list(a), None),
    "States.StringToJson": _string_to_json,
    "States.JsonToString": _json_to_string,
    "States.Array": _array,
    "States.ArrayPartition": _array_partition,
    "States.ArrayContains": _array_contains,
    "States.ArrayRange": _array_range,
    "States.ArrayGetItem": _array_get_item,
    "States.ArrayLength": _array_length,
    "States.ArrayUnique": _array_unique,
    "States.Base64Encode": _base64_encode,
    "States.Base64Decode": _base64_decode,
    "States.Hash": _hash,
    "States.JsonMerge": _json_merge,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _string_split,
    "States.UUID": _uuid,
}

_ARITY: dict[str, tuple[int, int | None]] = {
    "States.Format": (1, None),
    "States.StringToJson": (1, 1),
    "States.JsonToString": (1, 1),
    "States.Array": (0, None),
    "States.ArrayPartition": (2, 2),
    "States.ArrayContains": (2, 2),
    "States.ArrayRange": (3, 3),
    "States.ArrayGetItem": (2, 2),
    "States.ArrayLength": (1, 1),
    "States.ArrayUnique": (1, 1),
    "States.Base64Encode": (1, 1),
    "States.Base64Decode": (1, 1),
    "States.Hash": (2, 2),
    "States.JsonMerge": (3, 3),
    "States.MathRandom": (2, 3),
    "States.MathAdd": (2, 2),
    "States.StringSplit": (2, 2),
    "States.UUID": (0, 0),
}


def _check_arity(call: Call) -> None:
    lo, hi = _ARITY[call.name]
    n = len(call.args)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
        raise IntrinsicSyntaxError(f"{call.name} takes {want} arguments, got {n}")
    for a in call.args:
        if isinstance(a, Call):
            _check_arity(a)
