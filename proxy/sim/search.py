"""The subset of the engine's search language the simulated engine understands.

`name=host*`, `id=a or id=b`, `status=up and cluster=Default`, `memory>4096`,
`host=host1 sortby name desc page 2`.  Semantics follow the engine (docs/ENGINE_API.md
§5): AND binds tighter than OR, conditions side by side are ANDed, `*` is a wildcard, text
is compared case-insensitively unless `case_sensitive=true`, and an entity whose field is
unset (a down VM's host) matches no condition at all, not even `!=`.

The other list parameters are read here too: `max` (limit), `case_sensitive`, `follow`.
"""

import re
from dataclasses import dataclass, field


class SearchError(ValueError):
    """The search text is malformed; the engine answers 400 with a fault."""


@dataclass(frozen=True)
class Field:
    kind: str  # "id" (exact), "text" (wildcards), "enum" (one of `values`), "int", "code"
    #            (an int taking only = and !=, as the engine's event `type`)
    get: object  # entity dict -> value or None
    values: frozenset = frozenset()


@dataclass
class Query:
    groups: list = field(default_factory=list)  # OR of AND-groups of predicates
    sortby: str | None = None
    descending: bool = False
    page: int | None = None

    def matches(self, entity):
        return not self.groups or any(all(p(entity) for p in group) for group in self.groups)

    def predicate(self):
        """matches(), with the common one-condition search as a direct call."""
        if len(self.groups) == 1 and len(self.groups[0]) == 1:
            return self.groups[0][0]
        return self.matches


_TOKEN = re.compile(r"""\s*(?:
    (?P<field>[A-Za-z_][\w.]*)\s*(?P<op>!=|<=|>=|=|<|>)\s*(?P<value>"[^"]*"|[^\s"]+)
  | (?P<word>[^\s=<>!"]+)
)""", re.X)


def _normal(status):
    # The engine's search spells multi-word states without separators (nonresponsive).
    return status.replace("_", "").lower()


def _predicate(fields, name, op, value, case_sensitive):
    spec = fields.get(name.lower())
    if spec is None:
        raise SearchError(f"unknown search field {name!r} (known: {', '.join(sorted(fields))})")
    get = spec.get
    if spec.kind in ("int", "code"):
        if op not in (("=", "!=") if spec.kind == "code" else ("=", "!=", "<", ">", "<=", ">=")):
            raise SearchError(f"{name}{op}{value}: {name} only takes = and !="
                              if spec.kind == "code" else f"{name}{op}{value}: unsupported operator")
        try:
            n = int(value)
        except ValueError:
            raise SearchError(f"{name}{op}{value}: {name} takes a whole number") from None
        compare = {"=": int.__eq__, "!=": int.__ne__, "<": int.__lt__, ">": int.__gt__,
                   "<=": int.__le__, ">=": int.__ge__}[op]
        return lambda e: (x := get(e)) is not None and compare(x, n)
    if op not in ("=", "!="):
        raise SearchError(f"{name}{op}{value}: {name} only takes = and !=")
    pattern = re.compile(".*".join(re.escape(part) for part in value.split("*")),
                         0 if case_sensitive and spec.kind == "text" else re.I)
    # Each kind gets the cheapest test: searches run over tens of thousands of VMs.
    if spec.kind == "id":
        wanted = value.lower()
        test = wanted.__eq__
    elif spec.kind == "enum":
        matching = frozenset(v for v in spec.values if pattern.fullmatch(_normal(v)))
        if not matching and "*" not in value:
            raise SearchError(f"{name}={value}: not a valid {name} "
                              f"(one of {', '.join(sorted(spec.values))})")
        if "_" in value:  # the API spelling (non_responsive) is accepted too
            matching |= {v for v in spec.values if v == value.lower()}
        test = matching.__contains__
    elif "*" in value:
        test = lambda x: pattern.fullmatch(x) is not None  # noqa: E731
    elif case_sensitive:
        test = value.__eq__
    else:
        wanted = value.casefold()
        test = lambda x: x.casefold() == wanted  # noqa: E731
    if op == "!=":
        return lambda e: (x := get(e)) is not None and not test(x)
    return lambda e: (x := get(e)) is not None and test(x)


def parse(text, fields, *, case_sensitive=False):
    """A Query for `text` over `fields` (name -> Field); raises SearchError when malformed."""
    query = Query()
    group, expect_condition, pos = [], False, 0
    text = text.strip()
    tokens = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SearchError(f"unexpected text at position {pos}: {text[pos:pos + 20]!r}")
        tokens.append(m)
        pos = m.end()
    i = 0
    while i < len(tokens):
        m = tokens[i]
        word = (m["word"] or "").lower()
        if m["field"]:
            if query.sortby is not None or query.page is not None:
                raise SearchError(f"condition {m.group().strip()!r} after sortby/page")
            value = m["value"][1:-1] if m["value"].startswith('"') else m["value"]
            group.append(_predicate(fields, m["field"], m["op"], value, case_sensitive))
            expect_condition = False
        elif word in ("and", "or"):
            if not group or expect_condition:
                raise SearchError(f"{word!r} must stand between two conditions")
            if word == "or":
                query.groups.append(group)
                group = []
            expect_condition = True
        elif word == "sortby":
            if i + 1 >= len(tokens) or (tokens[i + 1]["word"] or "").lower() not in fields:
                raise SearchError(f"sortby needs a field (one of {', '.join(sorted(fields))})")
            i += 1
            query.sortby = tokens[i]["word"].lower()
            if i + 1 < len(tokens) and (tokens[i + 1]["word"] or "").lower() in ("asc", "desc"):
                i += 1
                query.descending = tokens[i]["word"].lower() == "desc"
        elif word == "page":
            if i + 1 >= len(tokens) or not (tokens[i + 1]["word"] or "").isdigit():
                raise SearchError("page needs a page number")
            i += 1
            query.page = max(1, int(tokens[i]["word"]))
        else:
            raise SearchError(f"expected a condition such as name=value, got {m.group().strip()!r}")
        i += 1
    if expect_condition:
        raise SearchError("the search ends with 'and' or 'or'")
    if group:
        query.groups.append(group)
    return query


def apply(query, entities, fields, limit=None):
    """The entities the query selects, sorted and paged as asked, at most `limit` of them."""
    found = list(filter(query.predicate(), entities))
    if query.sortby:
        get = fields[query.sortby].get
        present = [e for e in found if get(e) is not None]
        present.sort(key=get, reverse=query.descending)
        found = present + [e for e in found if get(e) is None]
    if query.page is not None and limit is not None:
        found = found[(query.page - 1) * limit:]
    return found if limit is None else found[:limit]


# --- the other list parameters -------------------------------------------------------------

def limit(query):
    """The `max` parameter: a count, or None for no limit (absent or negative)."""
    value = query.get("max")
    if value is None:
        return None
    if not re.fullmatch(r"-?\d+", value.strip()):
        raise ValueError(f"max must be a whole number, got {value!r}")
    return int(value) if int(value) >= 0 else None  # the engine treats -1 as no limit


def case_sensitive(query):
    """Whether `case_sensitive` asks for it (true or empty); off by default (docs/ENGINE_API.md §5)."""
    return "case_sensitive" in query and query["case_sensitive"].lower() in ("", "true")


def follow(query, what, allowed):
    """The link names `follow=a,b` asks for; one outside `allowed` is a ValueError (400)."""
    wanted = {f.strip() for f in query.get("follow", "").split(",")} - {""}
    if wanted - allowed:
        raise ValueError(f"follow={','.join(sorted(wanted - allowed))} is not supported "
                         f"for {what} by the simulated engine")
    return wanted
