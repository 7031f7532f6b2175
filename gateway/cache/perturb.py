"""Rule-made hard pairs for training the verifier: near-misses that ask something else, and rewordings
that ask the same thing, made from one question by construction.

Semantic caches fail on near-misses whose words barely change (PAWS-style adversarial paraphrases):
a swapped direction ("convert JSON to a dict" / "convert a dict to JSON"), a changed operator or
comparison ("2x + 5" / "2x - 5", "more than" / "less than"), another person or audience ("for me" /
"for my 6-year-old") or a narrower scope ("... in Python 3", "... on Windows"). Real duplicate-question
data holds few such pairs, so each family below turns a training question into one. The hard
positives (a qualifying phrase moved to the front, "X and Y" read as "Y and X", safe synonyms, polite
wrappers) keep the model from learning that any reordering or extra word means another request.

Every family is a function ``question -> variant or None`` (None: it does not apply); ``FAMILIES``
maps each family's name to (function, label).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from gateway.cache.verifier import _STOP, OPERATOR

# Words that never stand for a thing on their own (the ends of a swap must be content words).
_FUNCTION = _STOP | {
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "do", "does", "did", "to", "of", "in",
    "on", "for", "with", "at", "by", "from", "as", "and", "or", "it", "its", "this", "that", "these",
    "those", "i", "me", "my", "we", "our", "you", "your", "he", "she", "they", "them", "their", "his",
    "her", "can", "could", "should", "would", "will", "what", "how", "why", "when", "where", "who",
    "which", "some", "any", "so", "if", "about", "into", "not", "no", "there", "than", "over", "get",
    "go", "make", "way", "best", "good", "more", "most", "much", "many", "one", "all", "other", "s",
}  # fmt: skip
_W = r"[A-Za-z][\w+#-]*"

# --- different requests ------------------------------------------------------------------------------

# "X <connector> Y" -> "Y <connector> X": the roles of X and Y change ("Celsius to Fahrenheit").
_DIRECTED = re.compile(
    rf"\b({_W}) (to|into|from|over|than|before|after|instead of|rather than|vs\.?|versus) "
    rf"((?:a|an|the|my|your) )?({_W})\b"
)
# "from X to Y", "between ... and" excluded: "from X to Y" -> "from Y to X".
_FROM_TO = re.compile(rf"\bfrom ((?:a|an|the) )?({_W}) to ((?:a|an|the) )?({_W})\b")
# "X is faster than Y" -> "Y is faster than X" (the comparative's two sides).
_COMPARATIVE = re.compile(
    rf"\b({_W}) ((?:is |are )?(?:(?:much|far|a lot) )?(?:more [a-z]+|less [a-z]+|[a-z]+er)) than "
    rf"((?:a|an|the) )?({_W})\b"
)
# Comparisons whose sides may not be swapped: X is better than Y / Y is better than X.
_SYMMETRIC = {"vs", "vs.", "versus"}


def swap_direction(q: str) -> str | None:
    """Swap the two content words around a directional connector ("JSON to a dict" / "a dict to JSON";
    "Rust faster than Go" / "Go faster than Rust"). "X vs Y" is symmetric: see ``swap_symmetric``."""
    if (m := _COMPARATIVE.search(q)) and m.group(1).lower() not in _FUNCTION | {"is", "are"}:
        x, y = m.group(1), m.group(4)
        if x.lower() != y.lower() and y.lower() not in {"that", "this", "it", "ever", "before", "usual"}:
            return q[: m.start()] + f"{y} {m.group(2)} than {m.group(3) or ''}{x}" + q[m.end() :]
    if m := _FROM_TO.search(q):
        x, y = m.group(2), m.group(4)
        if x.lower() != y.lower() and x.lower() not in _FUNCTION and y.lower() not in _FUNCTION:
            return q[: m.start()] + f"from {m.group(1) or ''}{y} to {m.group(3) or ''}{x}" + q[m.end() :]
    for m in _DIRECTED.finditer(q):
        x, conn, det, y = m.group(1), m.group(2), m.group(3) or "", m.group(4)
        if conn.lower() in _SYMMETRIC:
            continue
        if x.lower() in _FUNCTION or y.lower() in _FUNCTION or x.lower() == y.lower():
            continue
        return q[: m.start()] + f"{y} {conn} {det}{x}" + q[m.end() :]
    return None


# Operators and comparisons, each way round.
_OPERATOR_SYMBOLS = [("+", "-"), ("*", "/"), ("<", ">"), ("<=", ">="), ("==", "!=")]
_OPERATOR_WORDS = [
    ("more than", "less than"), ("greater than", "less than"), ("at least", "at most"),
    ("increase", "decrease"), ("increasing", "decreasing"), ("add", "subtract"), ("adding", "subtracting"),
    ("plus", "minus"), ("multiply", "divide"), ("multiplied", "divided"), ("above", "below"),
    ("higher", "lower"), ("larger", "smaller"), ("bigger", "smaller"), ("faster", "slower"),
    ("longer", "shorter"), ("maximum", "minimum"), ("max", "min"), ("ascending", "descending"),
    ("cheaper", "more expensive"), ("easier", "harder"), ("better", "worse"), ("best", "worst"),
    ("most", "least"), ("before", "after"), ("first", "last"), ("buy", "sell"), ("start", "stop"),
    ("enable", "disable"), ("install", "uninstall"), ("encrypt", "decrypt"), ("encode", "decode"),
    ("import", "export"), ("upload", "download"), ("push", "pull"), ("open", "close"), ("lose", "gain"),
    ("advantages", "disadvantages"), ("pros", "cons"), ("rich", "poor"), ("true", "false"),
    ("always", "never"), ("upper", "lower"), ("inner", "outer"), ("left", "right"), ("old", "new"),
    ("hot", "cold"), ("positive", "negative"), ("fastest", "slowest"), ("largest", "smallest"),
    ("highest", "lowest"), ("cheapest", "most expensive"), ("easiest", "hardest"), ("male", "female"),
]  # fmt: skip
_OPERATOR_MAP = {**dict(_OPERATOR_WORDS), **{b: a for a, b in _OPERATOR_WORDS}}
_OPERATOR_WORD = re.compile(
    r"(?<!year-)(?<!years )\b("
    + "|".join(sorted(map(re.escape, _OPERATOR_MAP), key=len, reverse=True))
    + r")\b",
    re.I,
)
_SYMBOL_MAP = {**dict(_OPERATOR_SYMBOLS), **{b: a for a, b in _OPERATOR_SYMBOLS}}


def change_operator(q: str) -> str | None:
    """Turn one operator or comparison into its opposite ("2x + 5" / "2x - 5", "more than" / "less
    than", "increase" / "decrease", "fastest" / "slowest")."""
    for m in OPERATOR.finditer(q):
        if (new := _SYMBOL_MAP.get(m.group(1))) is not None:
            return q[: m.start(1)] + new + q[m.end(1) :]
    if m := _OPERATOR_WORD.search(q):
        word = m.group(1)
        new = _OPERATOR_MAP[word.lower()]
        if word[0].isupper():
            new = new[0].upper() + new[1:]
        return q[: m.start()] + new + q[m.end() :]
    return None


# People and audiences: a question about one is not a question about another.
_PEOPLE = [
    "child", "adult", "beginner", "expert", "boss", "wife", "husband", "son", "daughter", "mother",
    "father", "mom", "dad", "friend", "girlfriend", "boyfriend", "student", "teacher", "baby", "teenager",
    "toddler", "manager", "employee", "customer", "doctor", "patient", "parent", "grandmother", "dog",
    "cat", "man", "woman", "boy", "girl", "brother", "sister", "senior", "kid",
]  # fmt: skip
_PERSON = re.compile(r"\b(" + "|".join(_PEOPLE) + r")(s?)\b", re.I)
_AGE = re.compile(r"\b(\d{1,2})[- ]year[- ]old\b")
_FOR_ME = re.compile(r"\b(for|to|with) me\b")
_AUDIENCES = ["my 6-year-old", "my boss", "a beginner", "an expert", "my grandmother", "a teenager",
              "my team", "a doctor", "my dog", "a 10-year-old"]  # fmt: skip


def change_person(q: str, rng: random.Random) -> str | None:
    """Ask the same about someone else: another person or audience ("my son" / "my daughter"), another
    age ("a 6-year-old" / "a 40-year-old"), or "for me" / "for my 6-year-old"."""
    if m := _AGE.search(q):
        age = int(m.group(1))
        other = rng.choice([a for a in (5, 6, 8, 12, 16, 25, 40, 65) if a != age])
        return q[: m.start(1)] + str(other) + q[m.end(1) :]
    if m := _PERSON.search(q):
        word = m.group(1)
        other = rng.choice([p for p in _PEOPLE if p != word.lower()])
        if word[0].isupper():
            other = other.capitalize()
        return q[: m.start()] + other + m.group(2) + q[m.end() :]
    if m := _FOR_ME.search(q):
        return q[: m.start()] + f"{m.group(1)} {rng.choice(_AUDIENCES)}" + q[m.end() :]
    return None


# Qualifiers that narrow a request: with one, the cached general answer may be wrong, and vice versa.
_QUALIFIERS = [
    "in Python 3", "in Python 2", "in Java", "in JavaScript", "in C++", "in Excel", "in SQL", "on Windows",
    "on Linux", "on a Mac", "on Android", "on iPhone", "for beginners", "for experts", "for kids",
    "for a small business", "without pandas", "without a library", "without internet", "without money",
    "in India", "in the US", "in the UK", "in Canada", "in 2010", "in 2024", "at work", "at home",
    "in college", "in high school", "in one week", "in one day", "for free", "for my 6-year-old",
    "for my boss", "after surgery", "during pregnancy", "in winter", "as a student", "as a woman",
    "in a relationship", "in an interview", "with no experience", "with diabetes", "with a low budget",
    "using recursion", "using Docker", "in under 100 words", "in French", "in Hindi",
]  # fmt: skip
# A qualifying phrase at the end of a question: "... in Python?", "... on Windows 10?", "... for kids".
_TRAILING = re.compile(
    r"(?:,? )\b((?:in|on|for|with|without|using|at|during|after|before|as) (?:(?:a|an|the|my|your) )?"
    r"[\w+#.-]+(?: [\w+#.-]+)?)\s*([?.!]*)\s*$",
    re.I,
)


def narrow_scope(q: str, rng: random.Random) -> str | None:
    """Add a qualifying phrase at the end ("How do I sort a list?" / "How do I sort a list in Java?")."""
    body = q.rstrip()
    end = len(body.rstrip("?.!"))
    if len(body.split()) > 30:
        return None
    phrase = rng.choice(_QUALIFIERS)
    if phrase.lower() in q.lower() or end == 0:
        return None
    return body[:end] + " " + phrase + body[end:]


def widen_scope(q: str) -> str | None:
    """Drop a qualifying phrase at the end ("... a list in Python?" / "... a list?"), if what is left
    still has three words or more and the phrase is about a thing ("for you", "with her" are kept)."""
    if (m := _TRAILING.search(q)) is None or m.group(1).split()[-1].lower() in _FUNCTION:
        return None
    rest = q[: m.start()]
    if len(rest.split()) < 3:
        return None
    return rest + m.group(2)


# --- same requests -----------------------------------------------------------------------------------


def front_qualifier(q: str) -> str | None:
    """Move a trailing qualifying phrase naming a place, tool or time to the front ("How do I sort a
    list in Python?" / "In Python, how do I sort a list?"): the words' order changes, the request does
    not. Only for one-sentence questions and a capitalised or numeric object ("in Python", "on Windows
    10", "in 2016"), or "as ..." / "using ...": "... when it goes on sale" keeps its phrase."""
    if (m := _FRONTABLE.search(q)) is None:
        return None
    rest = q[: m.start()].strip()
    if len(rest.split()) < 3 or not rest[0].isalpha() or re.search(r"[.?!]", rest):
        return None
    phrase = m.group(1)
    first = rest if re.match(r"I\b|[A-Z]{2}|[A-Z]\w*[A-Z]", rest) else rest[0].lower() + rest[1:]
    return phrase[0].upper() + phrase[1:] + ", " + first + "?"


_FRONTABLE = re.compile(
    r",? \b((?:in|on|using|as|with) (?:(?:a|an|the) )?(?:[A-Z0-9][\w+#-]*(?: [A-Z0-9][\w+#.-]*)?"
    r"|(?<=as )(?:a |an )?[a-z]+(?: [a-z]+)?|(?<=using )[\w+#-]+))\s*\?\s*$"
)


# "X and Y", "X or Y", "X vs Y" with one-word sides: the same question either way round.
_BETWEEN = re.compile(
    rf"\b(between|of|compare|comparing) ((?:the )?)({_W}) (and|vs\.?|versus) ({_W})(?=[?.!,]|$| (?:in|for|on)\b)",
    re.I,
)


def swap_symmetric(q: str) -> str | None:
    """Swap the two sides of a symmetric comparison ("difference between X and Y" / "... Y and X",
    "X vs Y" / "Y vs X")."""
    m = _BETWEEN.search(q)
    if m is None:
        return None
    x, y = m.group(3), m.group(5)
    if x.lower() == y.lower() or x.lower() in _FUNCTION or y.lower() in _FUNCTION:
        return None
    return q[: m.start(3)] + f"{y} {m.group(4)} {x}" + q[m.end(5) :]


# Safe rewordings: each replacement keeps the request (the other direction is not always safe).
_SYNONYMS = [
    (r"\bHow do I\b", "How can I"), (r"\bHow can I\b", "How do I"), (r"\bWhat is\b", "What's"),
    (r"\bWhat's\b", "What is"), (r"\bIs it possible to\b", "Can I"), (r"\bWhat are some\b", "What are"),
    (r"\bHow should I\b", "How do I"), (r"\bWhich is\b", "What is"), (r"\bI want to\b", "I'd like to"),
    (r"\bcreate\b", "make"), (r"\bquickly\b", "fast"), (r"\bbegin\b", "start"), (r"\bpurchase\b", "buy"),
    (r"\bproblem\b", "issue"), (r"\bmethods\b", "ways"), (r"\btips\b", "advice"), (r"\bneeded\b", "required"),
    (r"\bbig\b", "large"), (r"\bhelp me\b", "help me to"), (r"\bdo you think\b", "in your opinion"),
    (r"\bsome good\b", "some"), (r"\bthe best way\b", "the right way"), (r"\bfix\b", "solve"),
    (r"\bcompletely\b", "entirely"), (r"\bmovie\b", "film"), (r"\bphone\b", "mobile phone"),
]  # fmt: skip
_POLITE = ["Please tell me: ", "Hey, ", "Hi! ", "I was wondering, ", "Could you tell me: ", "Quick question: ",
           "Can you help? ", "Please answer: "]  # fmt: skip
_POLITE_END = [" Thanks!", " Thank you.", " Please help.", " Any ideas?"]


def reword(q: str, rng: random.Random) -> str | None:
    """One safe synonym substitution ("How do I" / "How can I", "create" / "make")."""
    for pattern, new in rng.sample(_SYNONYMS, len(_SYNONYMS)):
        if m := re.search(pattern, q):
            return q[: m.start()] + new + q[m.end() :]
    return None


def polite(q: str, rng: random.Random) -> str:
    """A polite or filler wrapper, before or after the question."""
    if rng.random() < 0.6:
        first = q if re.match(r"I\b|[A-Z]{2}|[A-Z]\w*[A-Z]", q) else q[:1].lower() + q[1:]
        return rng.choice(_POLITE) + first
    return q.rstrip() + rng.choice(_POLITE_END)


Family = Callable[[str, random.Random], "str | None"]
# name -> (variant maker, label: 1 same request, 0 another request)
FAMILIES: dict[str, tuple[Family, int]] = {
    "direction": (lambda q, rng: swap_direction(q), 0),
    "operator": (lambda q, rng: change_operator(q), 0),
    "person": (change_person, 0),
    "narrow": (narrow_scope, 0),
    "widen": (lambda q, rng: widen_scope(q), 0),
    "front": (lambda q, rng: front_qualifier(q), 1),
    "symmetric": (lambda q, rng: swap_symmetric(q), 1),
    "reword": (reword, 1),
    "polite": (polite, 1),
}


def hard_variants(
    q: str, rng: random.Random, families: dict[str, tuple[Family, int]] = FAMILIES
) -> list[tuple[str, int, str]]:
    """(variant, label, family) for every family that applies to ``q`` and changes it."""
    out = []
    for name, (make, label) in families.items():
        variant = make(q, rng)
        if variant is not None and variant.strip() and variant != q:
            out.append((variant, label, name))
    return out
