"""Just enough Cosmos SQL lexing to scope queries to a partition and spot gateway-only limits.

Two jobs:

* :func:`scope_to_partition` rewrites ``SELECT ... FROM c [JOIN ...] [WHERE e] [ORDER BY ...]``
  into ``... WHERE (<alias>["pk"] = @param) AND (e) ...``: the test server ignores the
  ``x-ms-documentdb-partitionkey`` header on queries, so the partition filter is put into the
  query itself (the server then also pages and aggregates correctly within the partition).
  :func:`scope_to_keys` does the same with ``ARRAY_CONTAINS(@keys, <alias>["pk"])`` for a
  query addressed to one simulated partition-key range.
* :func:`cross_partition_blocker` names the construct (ORDER BY, TOP, OFFSET, LIMIT, DISTINCT,
  GROUP BY or an aggregate) that stops the Cosmos gateway from serving a cross-partition query
  without a client-side query plan (400, substatus 1004). Constructs inside a parenthesised
  subquery (``ARRAY(SELECT ...)``, ``EXISTS(SELECT ...)``) run per document and are allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "PK_PARAM",
    "PK_VALUES_PARAM",
    "QueryRewriteError",
    "cross_partition_blocker",
    "scope_to_keys",
    "scope_to_partition",
]

PK_PARAM = "@duroCompatPk"
PK_VALUES_PARAM = "@duroCompatPks"

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<str>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")
  | (?P<param>@[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<open>[(\[{])
  | (?P<close>[)\]}])
  | (?P<op>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_AGGREGATES = frozenset({"COUNT", "SUM", "MIN", "MAX", "AVG"})
_CLAUSE_AFTER_WHERE = frozenset({"GROUP", "ORDER", "OFFSET", "LIMIT"})
_NOT_ALIAS = frozenset({"WHERE", "JOIN", "GROUP", "ORDER", "OFFSET", "LIMIT", "IN"})


class QueryRewriteError(ValueError):
    """The query has a shape this small rewriter does not understand."""


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int
    depth: int  # bracket depth
    in_subquery: bool  # inside a parenthesised group that starts with SELECT
    after_dot: bool  # a property name (``c.top``), never a keyword

    @property
    def upper(self) -> str:
        """The keyword this token spells, or "" for anything that cannot be a keyword."""
        return self.text.upper() if self.kind == "ident" and not self.after_dot else ""


def _tokens(sql: str) -> list[_Tok]:
    out: list[_Tok] = []
    stack: list[bool] = []  # per open bracket: is it a subquery?
    pending_open = False
    prev_text = ""
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "op"
        if kind == "ws":
            continue
        text = m.group()
        after_dot, prev_text = prev_text == ".", text
        if pending_open:
            # First token after '(' decides whether the group is a subquery.
            stack[-1] = stack[-1] or (kind == "ident" and text.upper() == "SELECT")
            pending_open = False
        if kind == "open":
            out.append(_Tok(kind, text, m.start(), m.end(), len(stack), any(stack), after_dot))
            stack.append(False)
            pending_open = text == "("
            continue
        if kind == "close":
            if not stack:
                raise QueryRewriteError(f"unbalanced {text!r} at {m.start()}")
            stack.pop()
            out.append(_Tok(kind, text, m.start(), m.end(), len(stack), any(stack), after_dot))
            continue
        out.append(_Tok(kind, text, m.start(), m.end(), len(stack), any(stack), after_dot))
    if stack:
        raise QueryRewriteError("unbalanced brackets")
    return out


def _top(tokens: list[_Tok]) -> list[tuple[int, _Tok]]:
    return [(i, t) for i, t in enumerate(tokens) if t.depth == 0]


def cross_partition_blocker(sql: str) -> str | None:
    """The construct that makes a cross-partition query need a query plan, or ``None``."""
    try:
        tokens = _tokens(sql)
    except QueryRewriteError:
        return None  # let the server report the syntax error
    for i, tok in enumerate(tokens):
        word = tok.upper
        if tok.in_subquery or not word:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if word in {"TOP", "DISTINCT", "OFFSET", "LIMIT"} and tok.depth == 0:
            return word
        if word in {"ORDER", "GROUP"} and tok.depth == 0 and nxt and nxt.upper == "BY":
            return f"{word} BY"
        if word in _AGGREGATES and nxt is not None and nxt.text == "(":
            return f"aggregate {word}"
    return None


def _path_expr(alias: str, pk_path: str) -> str:
    parts = [p for p in pk_path.strip("/").split("/") if p]
    if not parts:
        raise QueryRewriteError(f"bad partition key path {pk_path!r}")
    return alias + "".join(f"[{json.dumps(p)}]" for p in parts)


def scope_to_partition(sql: str, pk_path: str, param: str = PK_PARAM) -> str:
    """Add ``<alias><pk_path> = <param>`` to the query's top-level WHERE clause."""
    return _add_condition(sql, lambda alias: f"{_path_expr(alias, pk_path)} = {param}")


def scope_to_keys(sql: str, pk_path: str, param: str = PK_VALUES_PARAM) -> str:
    """Add ``ARRAY_CONTAINS(<param>, <alias><pk_path>)`` to the top-level WHERE clause: the
    query then sees only the documents whose partition key is in the array ``param`` (the
    keys of one simulated partition-key range)."""
    return _add_condition(
        sql, lambda alias: f"ARRAY_CONTAINS({param}, {_path_expr(alias, pk_path)})"
    )


def _add_condition(sql: str, condition_for: Callable[[str], str]) -> str:
    tokens = _tokens(sql)
    top = _top(tokens)
    from_pos = next((k for k, (_, t) in enumerate(top) if t.upper == "FROM"), None)
    if from_pos is None or from_pos + 1 >= len(top):
        raise QueryRewriteError("no top-level FROM clause")
    source = top[from_pos + 1][1]
    if not source.upper:
        raise QueryRewriteError("FROM must name the container")
    alias = source.text
    rest = top[from_pos + 2 :]
    if rest and rest[0][1].upper == "IN":
        raise QueryRewriteError("FROM <x> IN <array> is not supported by the compat rewriter")
    if rest and rest[0][1].upper == "AS":
        rest = rest[1:]
        if not rest:
            raise QueryRewriteError("AS without alias")
        alias = rest[0][1].text
    elif rest and rest[0][1].upper and rest[0][1].upper not in _NOT_ALIAS:
        alias = rest[0][1].text
    condition = condition_for(alias)
    after_from = [t for _, t in top[from_pos + 1 :]]
    where = next((t for t in after_from if t.upper == "WHERE"), None)
    if where is not None:
        after_where = [t for t in after_from if t.start > where.start]
        stop = next((t for t in after_where if t.upper in _CLAUSE_AFTER_WHERE), None)
        end = stop.start if stop is not None else len(sql)
        body = sql[where.end : end].strip()
        tail = sql[end:]
        return f"{sql[: where.end]} ({condition}) AND ({body}) {tail}".rstrip()
    stop = next((t for t in after_from if t.upper in _CLAUSE_AFTER_WHERE), None)
    end = stop.start if stop is not None else len(sql)
    return f"{sql[:end].rstrip()} WHERE {condition} {sql[end:]}".rstrip()
