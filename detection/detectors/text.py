"""Text surfaces: normalise obfuscated text and match it against term and pattern lists (pure, no database).

`normalise` undoes the usual tricks (lookalike letters, fullwidth and styled letters, leetspeak,
spaced-out letters, invisible characters, stretched letters, a few emoji) while keeping a map from
every normalised character back to the original text, so that a hit can be highlighted in what the
user actually typed. Matching runs on two views of the text: one with digits kept (so "13 yo" stays
an age) and one with leetspeak folded inside words (so "s3nd p1cs" reads "send pics").
Admin-written patterns run on RE2, in time linear in the text whatever the pattern (no ReDoS).
"""

import logging
import re
import time
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import re2

log = logging.getLogger(__name__)

MAX_CHARS = 10_000        # only the start of a text is matched: bios and names are short, abuse is not
MAX_PATTERN_CHARS = 300
MAX_HITS_PER_TERM = 20
MAX_HITS = 200

WORD, SUBSTRING, PATTERN = "word", "substring", "pattern"

# Lookalike letters -> Latin, written from Unicode's confusables.txt (UTS #39 security mechanisms,
# https://www.unicode.org/Public/security/latest/confusables.txt): the Cyrillic, Greek, Armenian and
# IPA/small-capital entries whose prototype is a single Latin letter. Fullwidth, mathematical,
# circled, superscript and Roman-numeral letters need no entry: NFKD already maps them.
CONFUSABLES = {
    "a": "аАαΑɑ⍺ᴀ",
    "b": "вВьЬβΒʙƄ",
    "c": "сСϲϹᴄ",
    "d": "ԁꓒᴅ",
    "e": "еЕεΕϵҽ℮ᴇ",
    "f": "ꜰϝ",
    "g": "ɡɢց",
    "h": "һнНΗʜ",
    "i": "іІιΙıɩɪ",
    "j": "јЈϳᴊ",
    "k": "кКκΚᴋ",
    "l": "ӏǀʟ",
    "m": "мМΜᴍ",
    "n": "пηΝոɴ",
    "o": "оОοΟσօᴏ",
    "p": "рРρΡ⍴ᴘ",
    "q": "ԛԚ",
    "r": "гʀ",
    "s": "ѕЅꜱ",
    "t": "тТτΤᴛ",
    "u": "υսᴜ",
    "v": "νѵᴠ",
    "w": "ԝԜѡωᴡ",
    "x": "хХχΧ×",
    "y": "уУүҮγΥʏ",
    "z": "Ζζᴢ",
}
_CONFUSABLE = {char: latin for latin, chars in CONFUSABLES.items() for char in chars}

# Enclosed letters that NFKD leaves alone: squared, negative circled, negative squared, regional indicators.
_ENCLOSED_RANGES = (0x1F130, 0x1F150, 0x1F170, 0x1F1E6)

# A small, sober set of emoji that stand for words in grooming and solicitation talk.
EMOJI_WORDS = {
    "🔞": "18+",
    "📸": "pics", "📷": "pics", "🖼": "pics",
    "📹": "video", "🎥": "video", "📼": "video",
    "🤫": "secret", "🤐": "secret", "🙊": "secret",
    "👶": "baby", "🧒": "child", "👧": "girl", "👦": "boy",
    "👻": "snapchat",
    "💰": "money", "💵": "money", "💸": "money",
    "🎁": "gift",
    "🔒": "private",
    "📩": "dm", "📥": "dm",
}

BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Characters that render blank but are letters or symbols, so format-stripping alone misses them.
INVISIBLE_AS_SPACE = set("\u3164\u115f\u1160\u2800\uffa0")
APOSTROPHES = set("'’‘ʼ`´′")
LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
        "@": "a", "$": "s", "!": "i", "|": "i"}
SEPARATORS = set(" .-*·•/~,+:")


@dataclass(frozen=True)
class View:
    """One normalised reading of the text; starts[i]:ends[i] is character i's source in the original."""

    text: str
    starts: tuple
    ends: tuple

    def original_span(self, start, end):
        return self.starts[start], self.ends[end - 1]


@dataclass(frozen=True)
class Normalised:
    original: str
    digits: View          # digits kept: ages, counts, "18+"
    folded: View          # leetspeak folded inside words
    tricks: frozenset     # obfuscation seen: bidi_override, invisible, lookalikes, leetspeak, spacing, stretching
    truncated: bool = False

    @property
    def text(self):
        return self.folded.text

    @property
    def views(self):
        return (self.digits, self.folded)


@lru_cache(maxsize=8192)
def _map_char(char):
    """What one original character becomes (possibly several characters, possibly none), and the trick it shows."""
    if char in EMOJI_WORDS:
        return f" {EMOJI_WORDS[char]} ", ""
    if char in BIDI_CONTROLS:
        return "", "bidi_override"
    if char in INVISIBLE_AS_SPACE:
        return " ", "invisible"
    if char in APOSTROPHES:
        return "", ""
    code = ord(char)
    for base in _ENCLOSED_RANGES:
        if base <= code < base + 26:
            return chr(ord("a") + code - base), ""
    category = unicodedata.category(char)
    if category == "Cf":
        return "", "invisible"      # zero-width joiners and spaces, soft hyphen, tags
    if char.isspace() or char == "_":
        return " ", ""
    if category in ("Cc", "Cs", "Co"):
        return "", ""               # NUL and other controls, unpaired surrogates, private use
    out, trick = [], ""
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.category(part) in ("Mn", "Me") or 0x1F3FB <= ord(part) <= 0x1F3FF:
            continue                # accents, Zalgo marks, keycaps, variation selectors, skin tones
        for folded in _CONFUSABLE.get(part, part).casefold():
            latin = _CONFUSABLE.get(folded, folded)
            if latin != folded or (part in _CONFUSABLE):
                # Small capitals are always a disguise; Cyrillic or Greek letters only amid Latin ones.
                trick = "lookalikes" if unicodedata.name(part, "").startswith("LATIN") else "script_lookalikes"
            out.append(" " if latin.isspace() else latin)
    return "".join(out), trick


def _is_wordish(char):
    return char.isalnum() or char in LEET


def _join_spaced_letters(chars, starts, ends, tricks):
    """"s e n d", "s.e.n.d", "s-e-n-d": three or more lone letters with the same separator become one word."""
    n = len(chars)
    # "!" and "|" end sentences more often than they stand for letters: they only join a letter before one.
    wordish = [c.isalnum() or (c in LEET and c not in "!|") or (c in "!|" and i + 1 < n and chars[i + 1].isalnum())
               for i, c in enumerate(chars)]
    lone = [wordish[i] and (i == 0 or not wordish[i - 1]) and (i == n - 1 or not wordish[i + 1]) for i in range(n)]
    drop = set()
    i = 0
    while i < n:
        if not lone[i]:
            i += 1
            continue
        chain, gap = [i], None
        j = i + 1
        while j < n:
            k = j
            while k < n and chars[k] in SEPARATORS and k - j < 3:
                k += 1
            if k == j or k >= n or not lone[k]:
                break
            this_gap = "".join(chars[j:k])
            if gap is not None and this_gap != gap:
                break
            gap = this_gap
            chain.append(k)
            j = k + 1
        if len(chain) >= 3:
            for a, b in zip(chain, chain[1:], strict=False):
                drop.update(range(a + 1, b))
            tricks.add("spacing")
        i = chain[-1] + 1
    if not drop:
        return chars, starts, ends
    keep = [i for i in range(n) if i not in drop]
    return [chars[i] for i in keep], [starts[i] for i in keep], [ends[i] for i in keep]


def _fold_leet(chars, tricks):
    """Digits and symbols become letters only inside words that have letters: "s3nd" folds, "13" stays."""
    out = list(chars)
    n = len(chars)
    i = 0
    while i < n:
        if not _is_wordish(chars[i]):
            i += 1
            continue
        j = i
        while j < n and _is_wordish(chars[j]):
            j += 1
        word = chars[i:j]
        if any(c.isalpha() for c in word) and any(c in LEET for c in word):
            last = max(k for k, c in enumerate(word) if c.isalnum() and c not in LEET)
            for k, c in enumerate(word):
                # A trailing "!" or "|" is punctuation, not a letter.
                if c in LEET and not (c in "!|" and k > last):
                    out[i + k] = LEET[c]
                    tricks.add("leetspeak")
        i = j
    return out


def _squeeze(chars, starts, ends, tricks):
    """Collapse runs of three or more identical letters ("plzzzz") and of spaces; the kept character
    spans the whole run in the original."""
    out_c, out_s, out_e = [], [], []
    i, n = 0, len(chars)
    while i < n:
        c = chars[i]
        j = i + 1
        while j < n and chars[j] == c:
            j += 1
        run = j - i
        if c == " " or (run >= 3 and c.isalpha()):
            if c != " ":
                tricks.add("stretching")
            out_c.append(c)
            out_s.append(starts[i])
            out_e.append(ends[j - 1])
        else:
            out_c.extend(chars[i:j])
            out_s.extend(starts[i:j])
            out_e.extend(ends[i:j])
        i = j
    return out_c, out_s, out_e


def normalise(text, *, limit=MAX_CHARS):
    """Both normalised views of `text` (at most its first `limit` characters) with offsets back to it."""
    text = text or ""
    truncated = len(text) > limit
    if truncated:
        text = text[:limit]
    chars, starts, ends, tricks = [], [], [], set()
    for index, char in enumerate(text):
        mapped, trick = _map_char(char)
        if trick:
            tricks.add(trick)
        if not mapped and starts and unicodedata.category(char)[0] == "M":
            ends[-1] = index + 1  # a highlight takes along the marks stacked on its last letter
        for out in mapped:
            chars.append(out)
            starts.append(index)
            ends.append(index + 1)
    chars, starts, ends = _join_spaced_letters(chars, starts, ends, tricks)
    digits = _squeeze(chars, starts, ends, tricks)
    folded = _squeeze(_fold_leet(chars, tricks), starts, ends, tricks)
    if "script_lookalikes" in tricks:
        tricks.discard("script_lookalikes")
        if any("a" <= c <= "z" for c in text.lower()):  # wholly Cyrillic or Greek text is a language, not a trick
            tricks.add("lookalikes")
    return Normalised(
        original=text,
        digits=View("".join(digits[0]), tuple(digits[1]), tuple(digits[2])),
        folded=View("".join(folded[0]), tuple(folded[1]), tuple(folded[2])),
        tricks=frozenset(tricks),
        truncated=truncated,
    )


def normalised_text(text):
    """The folded reading only, as terms are stored and compared."""
    return normalise(text).folded.text.strip()


# ---- terms ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    term: str
    category: str
    match: str = WORD
    weight: float = 0.5
    id: int | None = None


@dataclass(frozen=True)
class CompiledTerm:
    term: Term
    regexes: tuple = field(default=())   # (view name, compiled regex, literal every hit contains) triples


class UnsafePattern(ValueError):
    pass


class TimeBudgetExceeded(Exception):
    """Matching ran past its deadline; `hits` holds what was found before it stopped."""

    def __init__(self, hits):
        super().__init__("text matching ran out of time")
        self.hits = hits


def _re2_options():
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a refused pattern is reported to the admin, not to stderr
    return options


# What RE2 refuses that Python's re accepts, in words for the admin.
_UNSUPPORTED = (
    (re.compile(r"\\[1-9]|\(\?P=|\\g<|\\k<"), "back-references (like \\1) are not supported"),
    (re.compile(r"\(\?<?[=!]"), "look-ahead and look-behind ((?=...), (?!...), (?<=...), (?<!...)) are not supported"),
    (re.compile(r"\(\?>|[*+?}]\+"), "atomic groups and possessive repeats are not supported"),
    (re.compile(r"\(\?\("), "conditional groups are not supported"),
    (re.compile(r"\\Z"), "\\Z is not supported; use \\z for the end of the text"),
)


def check_pattern(pattern):
    """Compile an admin-written pattern with RE2, or raise ValueError saying what is wrong with it.

    Patterns run on RE2 (google-re2), whose matching time grows linearly with the text whatever
    the pattern: "(a|aa)*c" or "(a+)+b" cannot backtrack. The price is the features that need
    backtracking (back-references, look-around, atomic groups), which RE2 refuses to compile.
    Unlike Python's re, RE2's \\w, \\d and \\b are ASCII-only; the normalised text is mostly ASCII.
    """
    if not pattern or not pattern.strip():
        raise ValueError("the pattern is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"patterns are limited to {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re2.compile(pattern, _re2_options())
    except UnicodeError:
        raise ValueError("not a valid regular expression: it holds characters that are not text") from None
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        for construct, message in _UNSUPPORTED:
            if construct.search(pattern):
                raise UnsafePattern(f"{message}: patterns run on RE2, which matches in linear time "
                                    f"and has no backtracking ({detail})") from None
        raise ValueError(f"not a valid regular expression (RE2 syntax): {detail}") from None
    if compiled.search("") or compiled.search(" "):
        raise ValueError("the pattern matches empty text, so it would match everything")
    return compiled


def _term_regex(normalised_term, match):
    body = r"[\W_]?".join(re.escape(word) for word in normalised_term.split())  # "send pics" ~ "sendpics"
    if match == WORD:
        if re.match(r"\w", normalised_term):
            body = r"(?<!\w)" + body
        if re.search(r"\w$", normalised_term):
            body += r"(?!\w)"
    return re.compile(body)


def check_term(term, match):
    """The regexes for a term, or ValueError saying why it can never match."""
    if match == PATTERN:
        compiled = check_pattern(term)
        return (("digits", compiled, ""), ("folded", compiled, ""))
    if match not in (WORD, SUBSTRING):
        raise ValueError(f"unknown match type {match!r}")
    norm = normalise(term)
    digits, folded = norm.digits.text.strip(), norm.folded.text.strip()
    if not folded:
        raise ValueError("the term is empty once normalised (only spaces, marks or invisible characters)")
    if match == SUBSTRING and len(folded.replace(" ", "")) < 3:
        raise ValueError("substring terms need at least three letters, or they match inside too many words")
    folded_regex = _term_regex(folded, match)
    digits_regex = folded_regex if digits == folded else _term_regex(digits, match)
    # Every hit contains each word of the term verbatim: a plain substring test skips most terms
    # cheaply, which is what keeps a list of thousands of entries fast.
    return (("digits", digits_regex, max(digits.split(), key=len)),
            ("folded", folded_regex, max(folded.split(), key=len)))


def compile_terms(terms):
    """Compile terms, skipping (not raising on) any that are invalid: a bad row must not stop matching."""
    compiled = []
    for term in terms:
        try:
            compiled.append(CompiledTerm(term, check_term(term.term, term.match)))
        except ValueError as exc:
            log.warning("text term %s (%s) skipped: %s", term.id, term.match, exc)
            continue
    return compiled


def match_terms(text, terms, *, field="", normalised=None, deadline=None):
    """Every hit of `terms` (Term or CompiledTerm) in `text`, with offsets in the original text.

    With a `deadline` (a time.monotonic() value), matching stops at the first term that starts
    after it and raises TimeBudgetExceeded carrying the hits found so far.
    """
    norm = normalised or normalise(text)
    compiled = [t if isinstance(t, CompiledTerm) else None for t in terms]
    if any(c is None for c in compiled):
        compiled = compile_terms([t for t in terms if not isinstance(t, CompiledTerm)]) + [
            c for c in compiled if c is not None]
    views = {"digits": norm.digits, "folded": norm.folded}
    one_view = norm.digits.text == norm.folded.text  # no leetspeak: the second reading adds nothing
    hits, seen = [], set()
    for item in compiled:
        if deadline is not None and time.monotonic() > deadline:
            hits.sort(key=lambda h: (h["start"], -h["end"]))
            raise TimeBudgetExceeded(hits[:MAX_HITS])
        found = 0
        for view_name, regex, literal in item.regexes:
            view = views[view_name]
            if literal not in view.text or (one_view and view_name == "digits" and regex is item.regexes[1][1]):
                continue
            for m in regex.finditer(view.text):
                if m.end() == m.start():
                    continue
                start, end = view.original_span(m.start(), m.end())
                key = (item.term.term, item.term.match, item.term.category, start, end)
                if key in seen:
                    continue
                seen.add(key)
                hits.append({
                    "start": start, "end": end, "term": item.term.term, "match": item.term.match,
                    "category": item.term.category, "weight": item.term.weight, "term_id": item.term.id,
                    "field": field, "found": m.group(0).strip(), "text": norm.original[start:end],
                })
                found += 1
                if found >= MAX_HITS_PER_TERM:
                    break
            if found >= MAX_HITS_PER_TERM:
                break
        if len(hits) >= MAX_HITS:
            break
    hits.sort(key=lambda h: (h["start"], -h["end"]))
    return hits[:MAX_HITS]


def score(hits):
    """1 - prod(1 - weight) over distinct terms: independent hints add up, one term counts once."""
    weights = {}
    for hit in hits:
        key = (hit["term"], hit["match"], hit["category"])
        weights[key] = max(weights.get(key, 0.0), min(1.0, max(0.0, float(hit["weight"]))))
    remaining = 1.0
    for weight in weights.values():
        remaining *= 1.0 - weight
    return round(1.0 - remaining, 3)


def highlight_pieces(text, spans):
    """The text cut into [(piece, marked)], marked where a span covers it; overlapping spans merge."""
    text = text or ""
    merged = []
    for start, end in sorted((max(0, int(s)), min(len(text), int(e))) for s, e in spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, cursor = [], 0
    for start, end in merged:
        if start > cursor:
            pieces.append((text[cursor:start], False))
        pieces.append((text[start:end], True))
        cursor = end
    if cursor < len(text):
        pieces.append((text[cursor:], False))
    return pieces

