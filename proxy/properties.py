"""A policy unit's parameters, declared once: the engine's parameter map and the parser.

    from proxy import properties

    PARAMS = properties.Parameters(
        minimum_host_memoryMB=properties.Whole(500, unit="MB"),
        safe_selection=properties.Flag(True),
    )

    class host_memory_balance:
        properties_validation = PARAMS.validation  # "minimum_host_memoryMB=[0-9]*;safe_selection=True|False"

        def do_balance(self, hosts, args):
            p = PARAMS.parse(args)  # p.minimum_host_memoryMB == 500, p.safe_selection is True
            ...

Each kind gives the regex the engine validates a value with (Java String.matches, so the
whole string) and parses exactly the values that regex accepts, so the engine's check and
the unit's never disagree (Flag alone also takes other letter cases).  An absent, empty or
blank value means "not set" and gives the default: the engine sends the keys of every unit
in the policy, and a regex such as `[0-9]*` lets an admin save an empty value.
"""

import dataclasses
import re
import types

# docs/ENGINE_PROTOCOL.md §5: what the engine accepts as a key.
_KEY = re.compile(r"[a-zA-Z0-9_]+")
# Choice options go into the regex as they are, so they hold no regex syntax and no ';'.
_OPTION = re.compile(r"[a-zA-Z0-9_-]+")


def _digits(count, more=False):
    """A regex for `count` digits, or with `more`, `count` or more."""
    if more:
        return {0: "[0-9]*", 1: "[0-9]+"}.get(count, f"[0-9]{{{count},}}")
    return {0: "", 1: "[0-9]"}.get(count, f"[0-9]{{{count}}}")


def _between(low, high):
    """Regex alternatives matching the digit strings from `low` to `high`, of one length."""
    if low == high:
        return [low]
    same = next(i for i, (a, b) in enumerate(zip(low, high)) if a != b)
    head, low, high = low[:same], low[same:], high[same:]
    rest = len(low) - 1
    first, last = int(low[0]), int(high[0])
    lower, upper = [], []
    if low[1:] != "0" * rest:  # low's leading digit only covers its part of the range
        lower = [low[0] + alt for alt in _between(low[1:], "9" * rest)]
        first += 1
    if high[1:] != "9" * rest:
        upper = [high[0] + alt for alt in _between("0" * rest, high[1:])]
        last -= 1
    middle = []
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        middle = [digit + _digits(rest)]
    return [head + alt for alt in lower + middle + upper]


def _numerals(minimum, maximum):
    """A regex matching exactly the numerals (no leading zeros) of minimum..maximum.

    `maximum` None means no upper bound.
    """
    length = len(str(minimum))
    top = maximum if maximum is not None else 10 ** length - 1
    alternatives = []
    for digits in range(length, len(str(top)) + 1):
        smallest = 10 ** (digits - 1) if digits > 1 else 0
        alternatives += _between(str(max(minimum, smallest)), str(min(top, 10 ** digits - 1)))
    if maximum is None:
        if minimum == 10 ** (length - 1):  # 1, 10, 100…: one alternative says it all
            return "[1-9]" + _digits(length - 1, more=True)
        alternatives.append("[1-9]" + _digits(length, more=True))  # the longer numerals
    return "|".join(alternatives)


@dataclasses.dataclass(frozen=True)
class Whole:
    """A whole number from `minimum` to `maximum` (None: no upper bound), in `unit`.

    With minimum 0 and no maximum the regex is `[0-9]*`: any digits, leading zeros
    included.  Any other range gives the engine's own form, which spells out the range and
    refuses leading zeros, e.g. `^([5-9][0-9])$` for 50 to 99.  `default` may lie outside
    the range (the engine's "0 = off" defaults do).
    """

    default: int
    unit: str = ""
    minimum: int = 0
    maximum: int | None = None

    def __post_init__(self):
        top = self.minimum if self.maximum is None else self.maximum
        if not (isinstance(self.minimum, int) and isinstance(top, int) and 0 <= self.minimum <= top):
            raise ValueError(f"Whole needs whole numbers 0 <= minimum <= maximum, "
                             f"got {self.minimum!r}..{self.maximum!r}")

    @property
    def regex(self):
        if self.minimum == 0 and self.maximum is None:
            return "[0-9]*"  # the shipped units' form: empty is allowed and means the default
        return f"^({_numerals(self.minimum, self.maximum)})$"

    @property
    def expected(self):
        what = f"a whole number of {self.unit}" if self.unit else "a whole number"
        if self.maximum is not None:
            return f"{what} from {self.minimum} to {self.maximum}"
        return f"{what}, at least {self.minimum}" if self.minimum else what

    def value(self, text):
        """The number `text` spells if the regex accepts it, else None."""
        # The regex is the one check, so the proxy accepts what the engine does, no more.
        return int(text) if re.fullmatch(self.regex, text) else None


@dataclasses.dataclass(frozen=True)
class Flag:
    """True or False, in any letter case (the engine's regex, `True|False`, takes only those two).

    bool('False') is True, which is how the original memory balancer lost its aggressive mode.
    """

    default: bool
    regex = "True|False"
    expected = "True or False"

    def value(self, text):
        """True or False as `text` spells it, else None."""
        return {"true": True, "false": False}.get(text.lower())


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `options` (letters, digits, `_`, `-`), spelled exactly; the value is that string."""

    default: str
    options: tuple

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(self.options))
        bad = [o for o in self.options if not isinstance(o, str) or not _OPTION.fullmatch(o)]
        if not self.options or bad:
            raise ValueError(f"Choice needs options of letters, digits, _ and - only, got {self.options!r}")

    @property
    def regex(self):
        return "|".join(self.options)

    @property
    def expected(self):
        return "one of " + ", ".join(self.options)

    def value(self, text):
        """`text` if it is one of the options, else None."""
        return text if text in self.options else None


class Parameters:
    """A unit's parameters, each a kind (Whole, Flag, Choice) under its key, in order."""

    def __init__(self, **kinds):
        bad = [key for key in kinds if not _KEY.fullmatch(key)]
        if bad:  # Python names may hold non-ASCII letters; the engine's keys may not
            raise ValueError(f"parameter keys may hold only ASCII letters, digits and _: {bad}")
        self.kinds = types.MappingProxyType(kinds)
        #: The engine's parameter map, `key=regex;key=regex`: the unit's properties_validation.
        self.validation = ";".join(f"{key}={kind.regex}" for key, kind in kinds.items())

    def parse(self, args):
        """A namespace with one typed value per declared key.

        `args` is the engine's property map (strings; it may be None and holds other units'
        keys too, which are ignored).  An absent, empty or blank value gives the default;
        any other value the kind refuses raises ValueError naming the key, what it must be
        and what came.
        """
        values = {}
        for key, kind in self.kinds.items():
            raw = (args or {}).get(key)  # the engine passes the balance map without a null check
            text = "" if raw is None else str(raw)
            if not text.strip():
                values[key] = kind.default
                continue
            value = kind.value(text)
            if value is None:
                raise ValueError(f"{key} must be {kind.expected}, got {text!r}")
            values[key] = value
        return types.SimpleNamespace(**values)
