"""What stands around an option letter in an answer, for medsft.answer_choice: quotation marks, the clause
and sentence it stands in, a condition, a negation, a hedge, reported speech, a retraction, and whether the
letters are a word rather than a choice."""

from __future__ import annotations

import re

from medsft import answer_lists as lists
from medsft import answer_patterns as patterns


def quoted_spans(text: str, within_line: bool = False) -> list[tuple[int, int]]:
    """(opening, closing) positions of each quotation; `within_line`: only quotations that close on their
    own line."""
    spans = []
    position = 0
    while position < len(text):
        closer = patterns.QUOTES.get(text[position])
        end = text.find(closer, position + 1) if closer else -1
        if end == -1 or (within_line and "\n" in text[position:end]):
            position += 1
            continue
        spans.append((position, end))
        position = end + 1
    return spans


def last_break(pattern: re.Pattern, text: str, end: int) -> int:
    """Where the clause or sentence that ends at `end` begins; one longer than patterns.CONTEXT characters is
    cut there (what decides a reading stands near it, and the cut keeps long answers linear)."""
    window = max(0, end - patterns.CONTEXT)
    found = [match.end() for match in pattern.finditer(text, window, end)]
    return found[-1] if found else window


def hypothetical(text: str, start: int) -> bool:
    clause_start = last_break(patterns.CLAUSE_BREAK, text, start)
    if patterns.HYPOTHETICAL.search(text, clause_start, start):
        return True
    sentence_start = last_break(patterns.SENTENCE_BREAK, text, clause_start)
    condition = list(patterns.HYPOTHETICAL.finditer(text, sentence_start, clause_start))
    if patterns.CONSEQUENCE.match(text[clause_start:start]):
        return bool(condition)
    # "如果是慢性期，选C": a clause right after a condition, with no turn back to the case at hand, is its
    # consequence too
    return bool(condition) and not patterns.CONTRAST.search(text, condition[-1].end(), start)


def negated_before(text: str, start: int) -> bool:
    clause_start = last_break(patterns.CLAUSE_BREAK, text, start)
    return bool(patterns.NEGATED_BEFORE.search(text[clause_start:start]))


def is_word(text: str, group: str, group_start: int, group_end: int) -> bool:
    """Lowercase runs (`acid`), `vitamin C`, and the article or pronoun `A`/`I` before an English word."""
    if patterns.NAMING_WORD.search(text, max(0, group_start - 12), group_start):
        return True
    if re.search(
        r"[a-z][a-z]", re.sub(r"\b(?:and|or)\b", " ", group)
    ):  # a run like "acid"; a list like "a、c" or "a, c" is letters
        return True
    if group in ("A", "a", "I", "i"):
        following = re.match(r"[ \t]+([a-z]+)", text[group_end:])
        return bool(following) and following.group(1) not in patterns.NOT_A_CHOICE_WORD
    return False


def shrink_at_comma(text: str, group: str, group_end: int) -> str:
    """`答案是A，B项错误`: a comma ends the choice when the text after the last letter goes on about it."""
    parts = re.split(r"[ \t]*,[ \t]*", group)
    if len(parts) == 1:
        return group
    # the group closes the sentence, or an aside closes it ("A, C, D, E — all except B.")
    ends_here = re.match(
        r"[ \t)\]】」』”’\"']*(?:\([^()\n]*\)|[ \t]*—{1,2}[^。.;!?\n]*)?[ \t]*(?:$|[。.;!?\n])",
        text[group_end:],
    )
    verdict_follows = re.match(r"[ \t]*(?:[两三几]?项)?[ \t]*(?:均|都)?[ \t]*(?:正确|对)", text[group_end:])
    return group if ends_here or verdict_follows else parts[0]


def unsure(text: str, start: int, group_end: int) -> bool:
    """ "答案可能是A，需要更多信息才能确定": a tentative answer the sentence itself calls uncertain."""
    clause_start = last_break(patterns.CLAUSE_BREAK, text, start)
    if not patterns.TENTATIVE_WORD.search(text, clause_start, group_end):
        return False
    sentence_end = patterns.SENTENCE_END.search(text, group_end)
    return bool(
        patterns.UNCERTAIN.search(text, group_end, sentence_end.start() if sentence_end else len(text))
    )


def undecided(text: str, start: int, end: int) -> bool:
    """ "B、C都对，但只能选一个的话难以决定", "两个答案都说得通：选A或者选D": the sentence says the choice is
    not made, or that either letter would do."""
    sentence_end = patterns.SENTENCE_END.search(text, end)
    stop = sentence_end.start() if sentence_end else len(text)
    sentence_start = last_break(patterns.SENTENCE_BREAK, text, start)
    return bool(
        patterns.UNDECIDED.search(text, end, stop) or patterns.EITHER_WAY.search(text, sentence_start, stop)
    )


def two_ways(text: str, start: int, group_end: int) -> bool:
    """ "可能是C也可能是D": the sentence offers two letters, each as possible."""
    sentence_end = patterns.HEDGE_BREAK.search(text, group_end)
    sentence_start = last_break(patterns.HEDGE_BREAK, text, start)
    stop = sentence_end.start() if sentence_end else len(text)
    clause_start = last_break(patterns.CLAUSE_BREAK, text, start)
    return any(  # a pair that reaches the statement's own clause ("A可能…，C也可能…，但答案是B" is none)
        pair.start() <= group_end and pair.end() >= clause_start
        for pair in patterns.HEDGE_PAIR.finditer(text, sentence_start, stop)
    )


def hedged(group: str) -> bool:
    """Letters joined by `或`, `还是`, `or` or `/` are a hedge (`C或D`, `C/D`); a run of three or more joined
    by slashes only lists them (`C/D/E`)."""
    separators = patterns.HEDGE_IN_GROUP.findall(group)
    if not separators:
        return False
    return not (all(patterns.SLASH.fullmatch(sep) for sep in separators) and len(lists.letters(group)) >= 3)


def letter_run(text: str, group: str, group_end: int) -> bool:
    """ "答案是 acd。": after an answer keyword, a lowercase run of distinct letters in order, ending the
    clause, lists options; a word ("acid", "bad") is none."""
    return (
        re.fullmatch(r"[a-j]{2,10}", group) is not None
        and list(group) == sorted(set(group))
        and re.match(patterns.STRICT_END, text[group_end:]) is not None
    )


def choice(text: str, group: str, group_end: int, start: int = 0) -> tuple[str | None, int]:
    """The letters a group commits to (None for a hedge), and where the hedge ends (0 without one)."""
    if (
        unsure(text, start, group_end)
        or undecided(text, start, group_end)
        or patterns.FLAGGED_UNSURE.match(text, group_end)
        or two_ways(text, start, group_end)
    ):
        return None, group_end
    rest = text[group_end:]
    scope = patterns.SCOPE.match(rest)
    if scope:
        named = patterns.SCOPE_CHOICE.match(rest, scope.end())
        chosen = lists.letters(named.group("letter")) if named else ""
        if chosen and set(chosen) <= set(lists.letters(group)):
            return chosen, 0
        return None, group_end + scope.end()
    if hedged(group):
        return None, group_end
    hedge = patterns.HEDGE_AFTER.match(rest) or patterns.HEDGE_IN_SENTENCE.match(rest)
    if hedge:
        return None, group_end + hedge.end()
    return lists.letters(group), 0


def turns_back(text: str, reported_end: int, start: int) -> bool:
    """Whether a new clause between the reported words and a statement turns to the writer's own voice
    ("有同学选A，但正确答案是C"); inside the reported clause the same words are reported too
    ("有网友指出本题应选C")."""
    if re.search(r"但|然而|不过|(?i:\b(?:but|however)\b)", text[reported_end:start]):
        return True
    clause_break = patterns.REPORT_CLAUSE_BREAK.search(text, reported_end, start)
    return bool(clause_break) and bool(patterns.CONTRAST.search(text, clause_break.end(), start))


def reported(text: str, start: int, group_end: int) -> bool:
    """Someone else's answer ("有同学选C", "原答案是D", "常见错误是A"), or a note on the text's wording."""
    sentence_start = last_break(patterns.SENTENCE_BREAK, text, start)
    before = text[sentence_start:start]
    # a reporter in the statement's own clause, or anywhere before it in the sentence with a verb of saying
    clause_start = max(sentence_start, last_break(patterns.REPORT_CLAUSE_BREAK, text, start))
    reporters = list(patterns.REPORTED.finditer(text, clause_start, group_end))
    reporters += [
        r
        for r in patterns.REPORTED.finditer(text, sentence_start, start)
        if patterns.SAYING.match(text, r.end())
    ]
    if reporters and not turns_back(text, max(r.end() for r in reporters), start):
        return True
    other = list(patterns.OTHER_QUESTION.finditer(text, sentence_start, start))
    if other and not turns_back(text, other[-1].end(), start):
        return True
    sentence_end = patterns.SENTENCE_BREAK.search(text, group_end)
    sentence = text[sentence_start : sentence_end.start() if sentence_end else len(text)]
    if patterns.ANSWER_WORD.search(before + text[start:group_end]):
        return False
    # a typo note replacing quoted wording ("…“A项”应为“B项”（笔误）") or naming the wording's place
    # corrects the text; one replacing the answer's own letter ("上文“选A”为笔误…应选E") corrects the answer
    letters_quoted = any(quote in text[start:group_end] for quote in patterns.QUOTES)
    return bool(patterns.TEXT_PLACE.search(sentence)) or (
        letters_quoted and bool(patterns.ABOUT_THE_TEXT.search(sentence))
    )


def left_over(text: str, key: str, start: int) -> bool:
    """ "leaving A", "we are left with E" state an answer only in a sentence that eliminates the others
    ("…can be ruled out, leaving A"); "which leaves C unexplained" is none."""
    if not re.fullmatch(patterns.LEFT_AFTER_ELIMINATION, key.strip(), re.IGNORECASE):
        return True
    return bool(patterns.ELIMINATING.search(text, last_break(patterns.SENTENCE_BREAK, text, start), start))


def nominalised(text: str, group_end: int) -> bool:
    """ "选A者", "选E的同学": the choice names the people who made it, not the writer's answer."""
    return bool(re.match(r"[ \t]*(?:项|选项)?(?:者|的(?:人|同学|考生|学生))", text[group_end:]))


def retracted(text: str, group_end: int) -> bool:
    """A retraction right after the letters; a correction of the wording ("更正：解析中…笔误") is none."""
    retraction = patterns.RETRACTED.match(text, group_end)
    if not retraction:
        return False
    sentence_end = patterns.SENTENCE_BREAK.search(text, retraction.end())
    rest = text[retraction.end() : sentence_end.start() if sentence_end else len(text)]
    return not (
        patterns.ABOUT_THE_TEXT.search(rest) or re.search(r"答案不变|(?i:answer\s+(?:is\s+)?unchanged)", rest)
    )


def sourced(text: str, start: int, group_end: int) -> bool:
    """ "参考答案：C（来自题库）": letters given as a key's, with the source they were copied from."""
    source = patterns.SOURCED.match(text, group_end)
    return bool(source) and bool(
        patterns.KEY_SOURCE.search(source.group("source"))
        or patterns.KEY_LABEL.search(text, last_break(patterns.CLAUSE_BREAK, text, start), group_end)
    )


def counts(text: str, quoted: list[tuple[int, int]], start: int, group_end: int) -> bool:
    """Whether a statement or verdict between start and group_end is a committed one."""
    if any(left < start < right for left, right in quoted):
        return False
    if negated_before(text, start) or hypothetical(text, start) or reported(text, start, group_end):
        return False
    if nominalised(text, group_end) or sourced(text, start, group_end):
        return False
    return not (patterns.TENTATIVE.match(text, group_end) or retracted(text, group_end))


def alternative(text: str, start: int) -> bool:
    clause_start = last_break(patterns.CLAUSE_BREAK, text, start)
    return bool(patterns.ALTERNATIVE.search(text, clause_start, start))


# --- the three readings -------------------------------------------------------------------------------------


def unquoted(text: str) -> str:
    """The text with what stands in quotation marks blanked (the option's own words, not the writer's)."""
    chars = list(text)
    for opening, closing in quoted_spans(text, within_line=True):
        chars[opening + 1 : closing] = " " * (closing - opening - 1)
    return "".join(chars)
