"""How an answer's text is folded before medsft.answer_choice reads it (its rule 1): full-width characters,
markdown emphasis, spaces between Chinese characters, ASCII Roman numerals of a combination, LaTeX answer
boxes, ranges of letters (`A～D`), letters written one by one as options joined into one group, and the option
text glossing a letter."""

from __future__ import annotations

import re
import unicodedata

from medsft import answer_patterns as patterns


def fold_width(answer: str) -> str:
    # markdown check boxes are marks ("- [x] C." ticks C); circled numbers (①A ②B) only number a list
    answer = patterns.CHECKED_BOX.sub("✔", patterns.EMPTY_BOX.sub("☐", answer))
    answer = re.sub("[\u2460-\u2473]", " ", answer)
    # Roman numerals (Ⅰ, Ⅲ) stay numerals: NFKC would turn them into the letters I and V.
    text = "".join(
        char if char in patterns.ROMAN_CHARS else unicodedata.normalize("NFKC", char) for char in answer
    )
    return re.sub(r"[*`]", "", text).translate(patterns.TRADITIONAL)


def fold(answer: str) -> str:
    # Chinese puts no spaces between its characters: "答 案：A" is "答案：A"
    text = patterns.CJK_SPACE.sub("", fold_width(answer))
    text = _unbox(fold_numerals(text))
    text = patterns.BRACKETED_RUN.sub(
        lambda run: "、".join(re.findall(r"[(\[【][ \t]*([A-Ja-j])", run.group(0))), text
    )
    text = patterns.LETTER_RANGE.sub(_expand_range, text)
    text = patterns.QUOTED_LETTER.sub(lambda quoted: quoted.group("letter"), text)  # "'A', 'C', and 'D'"
    text = patterns.OPTION_GLOSS.sub(_drop_gloss, text)
    text = patterns.LETTER_UNITS.sub(_join_units, text)
    return patterns.DOT_GLOSS.sub(lambda gloss: gloss.group("letter"), text)


def _drop_gloss(gloss: re.Match) -> str:
    """`C（肺血栓栓塞症）最符合` → `C最符合`: a letter's option text after it reads like the bare letter."""
    return gloss.group(0) if patterns.NOT_A_GLOSS.search(gloss.group("gloss")) else gloss.group("letter")


def _expand_range(span: re.Match) -> str:
    """`A～D` → `A、B、C、D`: a range of option letters names each letter in it (not `D-A`)."""
    first, last = span.group("first"), span.group("last")
    if first >= last:
        return span.group(0)
    return "、".join(chr(code) for code in range(ord(first), ord(last) + 1))


def fold_numerals(text: str) -> str:
    """ "I、III" → "Ⅰ、Ⅲ": ASCII numerals joined as a combination are numerals, not the letters I and V."""
    return patterns.ROMAN_RUN.sub(
        lambda run: patterns.ROMAN_TOKEN.sub(lambda t: patterns.ROMAN_ASCII[t.group(0)], run.group(0)), text
    )


def _unbox(text: str) -> str:
    """`$\\boxed{\\text{C}}$`, `\\[\\boxed{AC}\\]` → `答案:C`: a LaTeX answer box states the answer."""
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf|rm)\s*\{([^{}]*)\}", r"\1", text)
    text, boxes = re.subn(r"\\boxed\s*\{([^{}]*)\}", r"答案:\1 ", text)
    return re.sub(r"\\[\[\]()]|\$", " ", text) if boxes else text


def _join_units(run: re.Match) -> str:
    """`选项A和选项C` → `选项A、C`, `A项和D项` → `A、D项`: one group of letters, as the reader reads it."""
    units = list(patterns.LETTER_UNIT.finditer(run.group(0)))
    prefix = "选项" if units[0].group("pre") else ""
    return prefix + "、".join(unit.group("letter") for unit in units) + (units[-1].group("post") or "")
