"""Letters given as lists in an answer, for medsft.answer_choice: a list answering a label, option items in
one sentence after an answer keyword, an option enumeration a keyword must not reach into, the lists
under a heading that analyses the other options, and a list judging every option closed by a summary."""

from __future__ import annotations

import re

from medsft import answer_patterns as patterns


def letters(group: str) -> str:
    """The option letters of a group as a reading: upper case, deduplicated, sorted ("c, a and c" → "AC")."""
    found = re.findall(r"[A-Ja-j]", re.sub(r"\b(?:and|or)\b", " ", group))
    return "".join(sorted({letter.upper() for letter in found}))


def analysis_spans(text: str) -> list[tuple[int, int]]:
    """The lists under a heading that analyses the other options ("其他选项分析：\n- A. …"): their letters are
    analysis, not the answer."""
    spans = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    index = 0
    while index < len(lines):
        if not patterns.ANALYSIS_HEADING.match(lines[index].rstrip("\n")):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and (not lines[end].strip() or patterns.LIST_ITEM.match(lines[end])):
            end += 1
        spans.append((offsets[index], offsets[end]))
        index = end
    return spans


def listed(text: str, group: str, group_start: int) -> str | None:
    """ "正确的选项有：\n- A：…\n- C：…\n- E：…": letters answering a label with a colon as a list, one item
    a line, are all the items' letters. A list whose items judge the options ("- A：正确\n- B：错误") names
    those judged right when every item is judged, and nothing (None) when only some are."""
    line_start = text.rfind("\n", 0, group_start) + 1
    if (
        line_start == 0
        or not patterns.LIST_ITEM.match(text[line_start : group_start + 1])
        or len(letters(group)) != 1
    ):
        return group
    if not text[:line_start].rstrip().endswith(":"):
        return group
    items, marker = [], None
    for line in text[line_start:].split("\n"):
        if not line.strip():
            continue
        item = patterns.LIST_ITEM.match(line)
        if not item or patterns.MORE_LETTERS.match(line, item.end()):
            break  # the list ends; "B、E两项属于…" after it is a sentence about other options
        # the items share their marker ("A. …\nC. …"): "B项为…禁忌证" after them is a sentence, not an item
        item_marker = re.match(r"[)\]】]?[ \t]*(选项|项|[.、:)\]】]|)", line[item.end() :]).group(1)
        if marker is not None and item_marker != marker:
            break
        marker = item_marker
        items.append((item.group(0)[-1], line[item.end() :]))
    rejected = {letter for letter, rest in items if patterns.ITEM_REJECTED.search(rest)}
    if not rejected:
        return "、".join(letter for letter, _ in items) if len(items) > 1 else group
    approved = [
        letter for letter, rest in items if letter not in rejected and patterns.ITEM_APPROVED.search(rest)
    ]
    if approved and len(approved) + len(rejected) == len(items):
        return "、".join(approved)
    return None


def enumerated(text: str, start: int, group_start: int) -> bool:
    """ "B. 华法林：…但需要考虑题目问的是\nC. 肝素", "C. 氨氯地平——首选\nD. 氢氯噻嗪——可用": a keyword inside
    one item of an option list reaches no letter opening the next item's line."""
    line_start = text.rfind("\n", 0, group_start) + 1
    if line_start <= start or not patterns.OPTION_ITEM_LINE.match(text, line_start):
        return False
    key_line_start = text.rfind("\n", 0, start) + 1
    return bool(patterns.OPTION_ITEM_LINE.match(text, key_line_start))


def itemised(text: str, group: str | None, group_end: int) -> str | None:
    """ "应选：A. 限制钠盐摄入；C. 控制体重；D. 戒烟限酒。": an answer given as option items in one sentence
    is all the items' letters; an item that judges its option ("；B. 华法林：错误") makes it commit to
    none."""
    if group is None or len(letters(group)) != 1:
        return group
    items, position = [group], group_end
    while item := patterns.ITEM_CONTINUATION.match(text, position):
        if patterns.ITEM_REJECTED.search(item.group("item")):
            return None  # a list judging some options wrong commits to none (as listed)
        items.append(item.group("letter"))
        position = item.end()
    return "、".join(items)


def judged_summary(text: str) -> str | None:
    """ "A …… —— 正确\nB …… —— 错误\n…\n正确的即为答案", "| B | 突眼 | ✔ |\n…\n表中标✔的即为正确选项": a
    list or table judging each option, followed by a summary that commits to the options judged right, names
    those. Without such a summary the list names nothing (the question may ask for the wrong ones)."""
    judged = list(patterns.JUDGED_LINE.finditer(text))
    if len(judged) < 2 or len({match.group("letter") for match in judged}) < len(judged):
        return None
    summary = patterns.JUDGED_SUMMARY.search(text, judged[-1].end())
    if not summary or "\n" in text[judged[-1].end() : summary.start()].strip():
        return None  # the summary must close the list, not stand somewhere later
    judged_spans = {match.start() for match in judged}
    line_start = 0
    for line in text[judged[0].start() : judged[-1].end()].split("\n"):
        position = judged[0].start() + line_start
        opens_option = re.match(r"[ \t]*(?:[-•>+|][ \t]*)?[(\[【]?[A-J](?![A-Za-z0-9])", line)
        if opens_option and position not in judged_spans:
            return None  # an option line left unjudged: the list is no complete judgement
        line_start += len(line) + 1
    right = [m.group("letter") for m in judged if not patterns.JUDGED_WRONG.search(m.group("judgement"))]
    if not right or (summary.group("all") and len(right) < len(judged)):
        return None
    return "".join(sorted(right))
