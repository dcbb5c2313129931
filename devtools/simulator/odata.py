"""The subset of OData the Defender alerts API accepts: `$filter` and `$orderby`; the same
`$filter` grammar over another entity's properties (Graph's alerts_v2 and incidents) by a
`Schema`.

Grammar (keywords case-sensitive, as in OData):
    expr    := and ('or' and)*
    and     := unary ('and' unary)*
    unary   := 'not' unary | '(' expr ')' | compare
    compare := property op literal
    op      := eq | ne | gt | ge | lt | le
    literal := datetime (unquoted ISO 8601, up to 7 fractional digits) | 'string' | number
               | null | true | false
Time properties take any operator and a datetime; the others take eq/ne and a string or
number. Anything else is a 400 with the position, as OData reports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devtools.simulator.clock import parse_ticks

TIME_FIELDS = ("alertCreationTime", "lastUpdateTime", "firstEventTime", "lastEventTime",
               "resolvedTime")
ENUM_FIELDS = ("status", "severity", "classification", "determination")
TEXT_FIELDS = ("category", "detectionSource", "assignedTo", "id")
NUMBER_FIELDS = ("incidentId", "investigationId")
OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")


@dataclass(frozen=True)
class Schema:
    """What an entity lets `$filter` name: times, enums (with their members, or None for
    any value), strings and numbers."""

    entity: str
    times: tuple[str, ...]
    enums: dict[str, tuple[str, ...] | None]
    texts: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.times + tuple(self.enums) + self.texts + self.numbers


DEFENDER = Schema("microsoft.windowsDefenderATP.api.PublicAlert", TIME_FIELDS,
                  dict.fromkeys(ENUM_FIELDS), TEXT_FIELDS, NUMBER_FIELDS)

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)

Predicate = Callable[[Any], bool]


class ODataError(ValueError):
    """A query option Defender would refuse with 400."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[Token]:
    found, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ODataError(f"Syntax error: character '{text[pos]}' is not valid at "
                             f"position {pos} in '{text}'.")
        if m.lastgroup != "ws":
            found.append(Token(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    return found


class _Parser:
    def __init__(self, text: str, schema: Schema) -> None:
        self.text, self.tokens, self.i = text, _tokens(text), 0
        self.schema = schema

    def _peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self, what: str) -> Token:
        token = self._peek()
        if token is None:
            raise ODataError(f"Syntax error at position {len(self.text)} in '{self.text}': "
                             f"expected {what}.")
        self.i += 1
        return token

    def _fail(self, token: Token, message: str) -> ODataError:
        return ODataError(f"Syntax error at position {token.pos} in '{self.text}': {message}")

    def parse(self) -> Predicate:
        if not self.tokens:
            raise ODataError("The $filter query option is empty.")
        predicate = self._or()
        extra = self._peek()
        if extra is not None:
            raise self._fail(extra, f"unexpected '{extra.text}'.")
        return predicate

    def _or(self) -> Predicate:
        parts = [self._and()]
        while (t := self._peek()) and t.kind == "word" and t.text == "or":
            self.i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda a, ps=tuple(parts): any(p(a) for p in ps))

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while (t := self._peek()) and t.kind == "word" and t.text == "and":
            self.i += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda a, ps=tuple(parts): all(p(a) for p in ps))

    def _unary(self) -> Predicate:
        token = self._next("an expression")
        if token.kind == "word" and token.text == "not":
            inner = self._unary()
            return lambda a: not inner(a)
        if token.kind == "lparen":
            inner = self._or()
            close = self._next("')'")
            if close.kind != "rparen":
                raise self._fail(close, "')' expected.")
            return inner
        if token.kind != "word":
            raise self._fail(token, f"a property name was expected, not '{token.text}'.")
        return self._compare(token)

    def _compare(self, prop: Token) -> Predicate:
        name, schema = prop.text, self.schema
        if name not in schema.names:
            raise ODataError(f"Could not find a property named '{name}' on type "
                             f"'{schema.entity}', or it cannot be used in $filter.")
        op = self._next("a comparison operator")
        if op.kind != "word" or op.text not in OPERATORS:
            raise self._fail(op, f"operator expected after '{name}', found '{op.text}'.")
        literal = self._next("a value")
        if name in schema.times:
            return self._time_compare(name, op.text, literal)
        if op.text not in ("eq", "ne"):
            raise self._fail(op, f"'{op.text}' cannot be applied to '{name}'.")
        value = self._scalar(name, literal)
        if name in schema.enums and isinstance(value, str):
            members = schema.enums[name]
            if members is not None and value.lower() not in {m.lower() for m in members}:
                raise self._fail(literal, f"the string '{value}' is not a valid enumeration "
                                          f"type constant for '{name}'.")
            value = value.lower()

            def get(a: Any, n: str = name) -> Any:
                v = a.raw.get(n)
                return v.lower() if isinstance(v, str) else v
        else:
            def get(a: Any, n: str = name) -> Any:
                return a.raw.get(n)
        if op.text == "eq":
            return lambda a: get(a) == value
        return lambda a: get(a) != value

    def _scalar(self, name: str, literal: Token) -> Any:
        if literal.kind == "word" and literal.text == "null":
            return None
        if name in self.schema.numbers:
            if literal.kind != "number":
                raise self._fail(literal, f"'{name}' takes a number.")
            return int(float(literal.text))
        if literal.kind != "string":
            raise self._fail(literal, f"'{name}' takes a quoted string.")
        return literal.text[1:-1].replace("''", "'")

    def _time_compare(self, name: str, op: str, literal: Token) -> Predicate:
        if literal.kind == "word" and literal.text == "null" and op in ("eq", "ne"):
            return (lambda a: a.ticks.get(name) is None) if op == "eq" else (
                lambda a: a.ticks.get(name) is not None)
        if literal.kind != "datetime":
            raise self._fail(literal, f"'{name}' takes a datetime such as "
                                      "2019-11-22T00:00:00Z.")
        text = literal.text
        if text.count(":") == 1 or (text.count(":") == 2 and text[-6] in "+-"):
            raise self._fail(literal, "datetimes need seconds.")
        frac = re.search(r"\.(\d+)", text)
        if frac and len(frac.group(1)) > 7:
            raise self._fail(literal, "datetimes take at most 7 fractional digits.")
        try:
            bound = parse_ticks(text)
        except ValueError as exc:
            raise self._fail(literal, str(exc)) from None
        compare = {
            "eq": lambda v: v == bound, "ne": lambda v: v != bound,
            "gt": lambda v: v > bound, "ge": lambda v: v >= bound,
            "lt": lambda v: v < bound, "le": lambda v: v <= bound,
        }[op]
        if op == "ne":
            return lambda a: (v := a.ticks.get(name)) is None or compare(v)
        return lambda a: (v := a.ticks.get(name)) is not None and compare(v)


def parse_filter(text: str, schema: Schema = DEFENDER) -> Predicate:
    """`$filter` text to a predicate over stored records (`.raw` dict, `.ticks` per time)."""
    return _Parser(text, schema).parse()


def parse_orderby(text: str) -> list[tuple[str, bool]]:
    """`$orderby` text to [(time property, descending)]."""
    keys = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or words[0] not in TIME_FIELDS or (
                len(words) == 2 and words[1] not in ("asc", "desc")):
            raise ODataError(f"The $orderby clause '{part.strip()}' is not valid: order by "
                             f"one of {', '.join(TIME_FIELDS)}, asc or desc.")
        keys.append((words[0], len(words) == 2 and words[1] == "desc"))
    return keys


def integer_option(text: str | None, name: str, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ODataError(f"Invalid value '{text}' for {name} query option.") from None
    if value < 0:
        raise ODataError(f"Invalid value '{text}' for {name}: it must be >= 0.")
    return value
