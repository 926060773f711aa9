"""Which lines a log query keeps: the filters of a `LogQuery`, checked and compiled once.

`check_query` is the one place that bounds a query (the API's admission calls it too); errors
name the field and the problem. `compile_filter` turns the line filters into one function of a
line's text, and the words the full-text index narrows on:

- `grep`: an RE2 expression searched in the line (as the router's regexps: linear time).
- `text`: words and "quoted phrases", all of which the line must contain. A word is a run of
  letters and digits, compared without case, as the index's tokenizer (SQLite FTS5 unicode61)
  splits them: `user_id` is the phrase "user id", `timeout` does not match `timeouts`.
- `where`: fields of lines that are JSON objects, parsed at query time (`level=error`,
  `status!=200`, `msg~time.?out`; `http.status` reaches into nested objects, or names a key
  with dots). A value is compared as text: strings as they are, numbers as JSON writes them,
  `true`/`false`/`null`. A missing field is unequal to everything (`!=` keeps the line,
  `=` and `~` do not). A line that is not a JSON object never matches a where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kade.logs.record import MAX_TAIL, STREAMS, LogQuery
from kade.regexps import Search, compile_pattern, compile_regexp

MAX_PATTERN = 1024  # characters of a grep or a where's value
MAX_TEXT = 1024  # characters of a full-text query
MAX_TERMS = 16  # words and phrases of a full-text query
MAX_WHERE = 16  # field conditions
_WORD = re.compile(r"[^\W_]+")  # FTS5 unicode61: letters and digits; everything else separates
_TERM = re.compile(r'"((?:[^"]|"")*)"|(\S+)')
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_0-9][A-Za-z0-9_-]*)*")
_MISSING = object()


def words(text: str) -> list[str]:
    """The words of `text` as the full-text index sees them."""
    return _WORD.findall(text.lower())


def text_terms(text: str) -> list[tuple[str, ...]]:
    """`text` as terms, each the words of a word or of a quoted phrase; ValueError naming
    `text` if it has none or too many."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"text: is {len(text)} characters long, at most {MAX_TEXT} are accepted")
    terms: list[tuple[str, ...]] = []
    for m in _TERM.finditer(text):
        raw = m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)
        found = tuple(words(raw))
        if found:
            terms.append(found)
    if not terms:
        raise ValueError(f"text: {text!r} has no word to search for (letters or digits)")
    if len(terms) > MAX_TERMS:
        raise ValueError(f"text: {len(terms)} words and phrases, at most {MAX_TERMS}")
    return terms


def check_query(q: LogQuery) -> None:
    """ValueError naming the first field of `q` that is out of bounds."""
    if (q.app is None) == (q.task is None):
        raise ValueError("app, task: give exactly one of them")
    if not q.streams or any(s not in STREAMS for s in q.streams):
        raise ValueError(f"streams: must be some of {', '.join(STREAMS)}")
    if q.tail is not None and not 0 <= q.tail <= MAX_TAIL:
        raise ValueError(f"tail: must be 0 to {MAX_TAIL} lines")
    if not 0 <= q.limit <= MAX_TAIL:
        raise ValueError(f"limit: must be 0 to {MAX_TAIL} lines")
    compile_filter(q)


@dataclass(frozen=True)
class LineFilter:
    """`keep(line)`: whether a line passes grep, text and where. `index_words`: words every
    kept line contains, for the full-text index to narrow on (empty: no text filter).
    `find(text)`: of the lines joined in `text` (a chunk), the indexes of those that may be
    kept, found by searching the whole text (a few searches instead of one per line); None
    when every line must be checked with `keep`. `recheck`: what a found line must still
    pass (None: what `find` found is kept)."""

    keep: Callable[[str], bool]
    index_words: tuple[str, ...]
    everything: bool  # no line filter at all
    find: Callable[[str], list[int]] | None = None
    recheck: Callable[[str], bool] | None = None

    def fts_match(self) -> str:
        """The FTS5 MATCH of `index_words`: all of them, each quoted (none of FTS5's syntax)."""
        return " AND ".join(f'"{w}"' for w in self.index_words)


def compile_filter(q: LogQuery) -> LineFilter:
    checks: list[Callable[[str], bool]] = []  # every filter, for a line alone
    finders: list[Callable[[str], list[int]]] = []
    rechecks: list[Callable[[str], bool]] = []  # what the chosen finder leaves to check
    index: list[str] = []
    grep_check: Callable[[str], bool] | None = None
    grep_finder = None
    if q.grep is not None:
        if len(q.grep) > MAX_PATTERN:
            raise ValueError(f"grep: is {len(q.grep)} characters long, at most {MAX_PATTERN}")
        try:
            search = compile_regexp(q.grep)
            # the same pattern over a chunk's lines at once: ^ and $ at each line
            if not _NOT_MULTILINE.search(q.grep):
                grep_finder = _bytes_finder(compile_pattern(("(?m)" + q.grep).encode()))
        except ValueError as e:
            raise ValueError(f"grep: {e}") from None
        grep_check = lambda line: search(line) is not None  # noqa: E731
        checks.append(grep_check)
    if q.text is not None:
        terms = text_terms(q.text)
        index += dict.fromkeys(w for t in terms for w in t)
        contains = [_term_check(t) for t in terms]
        checks.append(lambda line: all(c(line) for c in contains))
        # every term's lines, found in the whole text: exact for words; a phrase's words
        # might be found across a newline, so its lines are checked alone
        finders.append(_all_of([_term_finder(t) for t in terms]))
        rechecks += [c for t, c in zip(terms, contains, strict=True) if len(t) > 1]
        if grep_check is not None:
            rechecks.append(grep_check)
    elif grep_finder is not None and grep_check is not None:
        finders.append(grep_finder)
        rechecks.append(grep_check)  # a match may have run across lines: each is checked
    if q.where:
        where = _where(q.where)
        checks.append(where)
        plain = [v for _, op, v in q.where if op == "=" and _VERBATIM.fullmatch(v)]
        if plain and not finders:  # a JSON line whose field equals it holds it as it is
            value = max(plain, key=len)
            finders.append(_finder(lambda text, pos: _Found(text.find(value, pos))))
            if grep_check is not None:
                rechecks.append(grep_check)
        rechecks.append(where)
    if not checks:
        return LineFilter(lambda line: True, (), True)
    keep = checks[0] if len(checks) == 1 else (lambda line: all(c(line) for c in checks))
    if not finders:
        return LineFilter(keep, tuple(index), False)
    recheck = (None if not rechecks else rechecks[0] if len(rechecks) == 1
               else (lambda line: all(c(line) for c in rechecks)))
    return LineFilter(keep, tuple(index), False, finders[0], recheck)


def _all_of(finders: list[Callable[[str], list[int]]]) -> Callable[[str], list[int]]:
    if len(finders) == 1:
        return finders[0]

    def find(text: str) -> list[int]:
        found = finders[0](text)
        for f in finders[1:]:
            if not found:
                break
            also = set(f(text))
            found = [i for i in found if i in also]
        return found

    return find


def _term_check(term: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether one line holds the word or phrase (see `_term_finder`)."""
    search = _term_regex(term).search

    def check(line: str) -> bool:
        low = line.lower()
        pos = 0
        while m := search(low, pos):
            start = m.start()
            if not (start and low[start - 1].isalnum()):
                return True
            pos = start + 1
        return False

    return check


def _term_regex(term: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"[\W_]+".join(re.escape(w) for w in term) + r"(?![^\W_])")


def _finder(search: Callable[[str, int], Any]) -> Callable[[str], list[int]]:
    """Indexes of the lines of `text` in which a match of `search` starts. After a match the
    search goes on at the next line, not after the match: a match that ran across a newline
    must not hide one that starts on the next line."""
    def find(text: str) -> list[int]:
        out: list[int] = []
        pos = line = 0
        while m := search(text, pos):
            start = m.start()
            line += text.count("\n", pos, start)
            out.append(line)
            end = text.find("\n", start)
            if end < 0:
                break
            pos, line = end + 1, line + 1
        return out

    return find


def _bytes_finder(pattern: Any) -> Callable[[str], list[int]]:
    """`_finder` of an RE2 pattern compiled from UTF-8: the text is encoded once (RE2 would
    encode it again at each search from a position)."""
    search = pattern.search

    def find(text: str) -> list[int]:
        raw = text.encode()
        out: list[int] = []
        pos = line = 0
        while m := search(raw, pos):
            start = m.start()
            line += raw.count(b"\n", pos, start)
            out.append(line)
            end = raw.find(b"\n", start)
            if end < 0:
                break
            pos, line = end + 1, line + 1
        return out

    return find


# values a JSON encoder writes as they are (no escapes: no quote, backslash, slash, control
# or non-ASCII character)
_VERBATIM = re.compile(r"[ !#-.0-\[\]-~]+")


@dataclass(frozen=True)
class _Found:
    at: int

    def start(self) -> int:
        return self.at

    def __bool__(self) -> bool:
        return self.at >= 0


# what makes a pattern mean something else across several lines than on one
_NOT_MULTILINE = re.compile(r"\\[Az]|\(\?[a-zA-Z]*-")


def _term_finder(term: tuple[str, ...]) -> Callable[[str], list[int]]:
    """`_finder` of a word or phrase as the index's tokenizer sees it: its words, whole, in
    this order, separated by anything that is not a letter or digit, in any case. Fast: the
    text lowered once (its newlines stay where they are) and a pattern with no lookbehind
    and no case folding (twenty times faster); the character before a match is checked
    here."""
    search = _term_regex(term).search

    def find(text: str) -> list[int]:
        low = text.lower()
        out: list[int] = []
        pos = line = 0
        while m := search(low, pos):
            start = m.start()
            line += low.count("\n", pos, start)
            if start and low[start - 1].isalnum():  # inside a longer word
                pos = start + 1
                continue
            out.append(line)
            end = low.find("\n", start)
            if end < 0:
                break
            pos, line = end + 1, line + 1
        return out

    return find


def _where(conditions: tuple[tuple[str, str, str], ...]) -> Callable[[str], bool]:
    if len(conditions) > MAX_WHERE:
        raise ValueError(f"where: {len(conditions)} conditions, at most {MAX_WHERE}")
    tests: list[tuple[str, Callable[[object], bool]]] = []
    for field, op, value in conditions:
        test: Callable[[object], bool]
        if not _FIELD.fullmatch(field):
            raise ValueError(f"where: {field!r} is not a field name (letters, digits, _ and -, "
                             "nested with dots)")
        if len(value) > MAX_PATTERN:
            raise ValueError(f"where: {field}: the value is {len(value)} characters long, "
                             f"at most {MAX_PATTERN}")
        if op == "=":
            test = _equal(value)
        elif op == "!=":
            equal = _equal(value)
            test = _negate(equal)
        elif op == "~":
            try:
                test = _matches(compile_regexp(value))
            except ValueError as e:
                raise ValueError(f"where: {field}: {e}") from None
        else:
            raise ValueError(f"where: {field}: the operator must be =, != or ~")
        tests.append((field, test))

    def keep(line: str) -> bool:
        if not line.lstrip().startswith("{"):
            return False
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        return all(test(_field(obj, name)) for name, test in tests)

    return keep


def _equal(value: str) -> Callable[[object], bool]:
    return lambda v: v is not _MISSING and _text(v) == value


def _negate(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: not test(v)


def _matches(search: Search) -> Callable[[object], bool]:
    return lambda v: v is not _MISSING and search(_text(v)) is not None


def _field(obj: dict[str, object], name: str) -> object:
    if name in obj:
        return obj[name]
    cur: object = obj
    for part in name.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
