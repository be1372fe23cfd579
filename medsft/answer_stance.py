"""The stance reading, the last fallback of medsft.answer_choice: an answer that no statement, verdict or
formatted letter reads is read by the stance each of its clauses takes on the options it names.

A clause (the text between two of `，。；！？：—` or a line break) that names option letters is *for* them
when it carries a word of approval (`正确`, `对`, `符合`, `就是`, `答案`, `考虑`, `毫无疑问`, `✔`, `correct`…)
and no word of rejection, *against* them when it carries one (`错`, `不对`, `不符合`, `排除`, `鉴别`, `见于`,
`✘`, `wrong`…). A line opening with an option letter is one unit, judged by its mark alone (`✅ A. …`,
`| B | … | ✘ |`): its wording is the option's own, and so are words in quotation marks. A clause with no
letter speaks for options as a whole: `全选` for all, `前三项都对` for the first three, `其余都是…` after
`除B外` or after options judged wrong for the others, and a clause naming the text the answer's own option
lines give one option (`C. 非诺贝特…` then `即非诺贝特`) for that option. `只有A符合` is for A and against
the rest; an answer leading with its letters (`E，毫无疑问。`, `B和D。`, a first line `**A. 葡萄糖-6-磷酸脱氢
酶缺乏症**` standing alone) is for them. Someone else's view, a key, a question or a condition takes no
stance. The reading is the options something is for and nothing against. It commits to none when the
writer leaves the choice open anywhere in the answer (`很难取舍`, `两者都说得通`, `没法确定`, `取决于…`,
`ambiguous`), offers letters as alternatives (`B或C`, `在B和D之间`), hesitates over several (`似乎`,
`看起来`), cuts a list off (`正确答案包括B、`), marks only some options of a list, or chooses all and
rejects some.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medsft import answer_context as context
from medsft import answer_lists as lists
from medsft import answer_patterns as patterns

# a clause ends at a comma, colon, sentence end or line break ("C. 非诺贝特" is one clause)
CLAUSE = re.compile(
    r"(?:[^,。!?;:\n.—]|(?<=[A-J])\.(?![ \t]+[A-Z])|\.(?=\S)"
    r"|(?<=[A-J]),(?=[ \t]*(?:(?i:and)[ \t]+)?[A-J](?![A-Za-z0-9])))+"
)
# letters written together ("正确的应该是ACE"), distinct and in order; not a word ("ACE抑制剂")
LETTER_RUN = re.compile(
    r"(?<![A-Za-z0-9])[A-J]{2,10}(?=[ \t]*(?:$|[。.,;!?)—]|项|选项|都|均|[两三四五](?:项|个)))"
)
# an option named by its place: "按选项来看是第三个"
ORDINAL = re.compile(
    r"第([一二三四五六])个(?:选项)?|(?i:\bthe\s+(first|second|third|fourth|fifth)\s+(?:one|option)\b)"
)
ORDINALS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "first": 0, "second": 1, "third": 2}
ORDINALS |= {"fourth": 3, "fifth": 4}
# a choice referring back to the option just named: "只有 D 是葡萄糖酸钙，我选它"
THAT_ONE = re.compile(
    r"(?:选|就是|就选|选择)(?:它|这个|这一项|此项)|(?i:\b(?:pick|choose|go\s+with)\s+(?:it|that\s+one)\b)"
)
# letters offered as alternatives, or a choice left between them: "B or C", "B或C", "在B和D之间"
BETWEEN = re.compile(
    r"(?<![A-Za-z0-9])[A-J](?![A-Za-z0-9])[^,。;\n]{0,12}?(?:或|还是|(?i:\bor\b))[^,。;\n]{0,12}?"
    r"(?<![A-Za-z0-9])[A-J](?![A-Za-z0-9])|之间|(?i:\b(?:either|between)\b)"
)
# a line opening with an option letter is one unit about that option: "✅ A. 血清铁降低…", "| B | … | ✔ |"
MARKS = patterns.MARKS
ITEM_LINE = re.compile(
    rf"^[ \t]*(?:[-•>+*|#][ \t]*|\d+[.、)][ \t]*|[{MARKS}][ \t]*)*[(\[【]?"
    rf"(?P<letter>[A-J])(?:(?<=[{MARKS}][ \t][A-J])|(?<=[{MARKS}][A-J])|{patterns.BOUNDARY})(?![A-Za-z0-9])"
    r"(?![ \t]*(?:和|与|及|、|,)[ \t]*[A-J](?![A-Za-z0-9]))(?![ \t]+[a-z])(?![ \t]*[,;。!?—]|[ \t]*$)"
)
# an option standing alone as a heading: "**A. 葡萄糖-6-磷酸脱氢酶缺乏症**"
ITEM_HEADING = re.compile(r"[ \t#>*-]*[(\[【]?[A-J][)\]】]?[ \t]*[.、:)][^。!?;\n]{1,30}")
# an inference concluding on letters: "所以是E", "故选BD", "因此答案为C"
CONCLUDED = re.compile(
    r"(?:所以|因此|故|综上|因而)[^,。!?;\n]{0,6}?[ \t]*[A-J](?:[ \t]*(?:[、,&+]|和|及|与)?[ \t]*[A-J])*"
    r"[ \t]*(?:[两三四五]?项|选项)?[ \t]*$"
)
TICK = re.compile(f"[{patterns.TICKS}]")
CROSS = re.compile(f"[{patterns.CROSSES}{patterns.EMPTY_BOXES}]")
APPROVAL = re.compile(
    rf"[{patterns.TICKS}]|"
    r"(?<![不非])正确|(?<![不错反针相绝核校应])对(?=[ \t]*(?:$|[,。.;!?)\]】✓✔]|的|了|吧|啊))"
    r"|答案|(?<![不别])(?:应)?选(?![项择题])"
    r"|当选|首选|(?<![不未])(?:符合|吻合|相符)|最(?:可能|佳|恰当|合适|准确|支持)(?=[ \t]*(?:$|是|为|的))"
    r"|考虑(?!到)|就是|即为|即是|(?<!鉴别)诊断(?:为|是)|最(?:重要|主要|关键|有价值)|首要|关键|无误|我选"
    r"|无疑|毫无疑问|说得对|才是|没错|成立|^[ \t]*即"
    r"|(?i:\b(?:correct|right|answer|best|first[- ]line|choose|pick|select|yes)\b)"
)
REJECTION = re.compile(
    rf"[{patterns.CROSSES}]|"
    r"错|不(?:是|对|正确|符合|相符|选|属于|会|能|应|宜|该|可|考虑|支持|包括|成立|当|太|合|妥|首选|作为|一致|吻合)"
    r"|排除|(?:并非|而非|而不是)(?=[^,。;\n]{0,6}?(?<![A-Za-z0-9])[A-J](?![A-Za-z0-9]))|除外|违反|违背|无关|鉴别|易混|混淆|(?<!无)误|干扰|陷阱|相反|否|不同"
    r"|(?i:\b(?:wrong|incorrect|not|false|no|rule[sd]?\s+out|exclude[sd]?|never)\b)"
)
HESITATION = re.compile(
    r"可能|似乎|好像|像是|更像|也许|或许|倾向|不确定|看起来|看似|看上去"
    r"|(?i:\b(?:maybe|perhaps|possibly|might|seems?|appears?)\b)"
)
# a clause choosing every option ("全选", "都应选"); a mere "所有选项都正确" may answer "错误的是"
ALL_OPTIONS = re.compile(
    r"(?:所以|因此|故)(?:全部|都|均)(?:正确|对|选)|"
    r"全选|全部都?选|(?:都|均)(?:应(?:当|该)?)?选|(?i:\ball\s+of\s+(?:them|the\s+above)\b)"
)
THE_REST = re.compile(r"其余|其他|其它|余下|剩下|剩余")
# "唯有C不对，其余都是…": the rest are approved only after options judged wrong, not merely unfitting
# ("只有D不符合…，其余都符合" may answer "不符合的是")
WRONG = re.compile(rf"[{patterns.CROSSES}]|" r"错|不对|不正确|(?i:\b(?:wrong|incorrect)\b)")
# someone else's view, a question or a key: no stance of the writer's own
NOT_OWN = re.compile(rf"{patterns.REPORTED.pattern}|{patterns.KEY_LABEL.pattern}|原答案|(?:吗|呢)[ \t]*$")
FIRST_ONES = re.compile(r"前([两二三四五])项")
# "只有A符合…": the one option approved, every other one rejected
ONLY = re.compile(r"只有|唯有|仅有?|唯一|(?i:\bonly\b)")
# "除B外，其余各项均为…": every option but the excepted ones
EXCEPT = re.compile(
    r"除(?:了)?[^,。!?;:\n]{0,12}?(?:以|之)?外|除(?:了)?[ \t]*(?:选项)?[ \t]*[A-J](?![A-Za-z0-9])"
    r"|(?i:\bexcept\b)"
)
REST_AFFIRMED = re.compile(r"(?:都|均|全)(?:是|为|属于|对|正确|符合)")
# a clause of letters alone ("E", "B和D") opening the answer: the answer leads with its choice
BARE_LETTERS = re.compile(
    r"[ \t*(\[【]*(?:(?:→|👉|=>|->)[ \t]*)?"
    r"(?:(?i:options?|choices?)[ \t]+|选项[ \t]*)?"
    r"[A-J](?:[ \t]*(?:[、,&+]|和|及|与|以及|(?i:and))?[ \t]*[A-J])*"
    r"[ \t*)\]】]*(?:[两三四五六]?项|选项)?[ \t]*"
)
OTHER_LINE_LETTER = re.compile(r"\n[ \t]*([A-J])(?![A-Za-z0-9])")
INFERENCE = re.compile(r"[ \t]*(?:所以|因此|故|综上|因而|即)")
# a letter singled out as the one the question asks for: "因此E是不属于的那一项"
SINGLED_OUT = re.compile(
    r"(?<![A-Za-z0-9])[A-J][ \t]*(?:项|选项)?[ \t]*(?:是|为|就是)[^,。.;!?\n]{0,10}?"
    r"的(?:那)?(?:一项|一个|选项)"
)
# a list of lowercase letters, distinct, as a label's value: "b、c、e"
LOWERCASE_LIST = re.compile(r"[ \t]*[a-j](?:[ \t]*(?:[、,]|和|及|与)[ \t]*[a-j])+[ \t]*")
# an option item line's name: "C. 非诺贝特——贝特类…" names C 非诺贝特
ITEM_NAME = re.compile(r"[ \t]*(?:[.、:)\]】]|选项|项)?[ \t]*(?P<name>[^\s,。;:()—|✔✓√✅☑✘✗×❌]{2,20})")
COUNTS = {"两": 2, "二": 2, "三": 3, "四": 4, "五": 5}
# the writer leaves the choice open somewhere in the answer
UNDECIDED = re.compile(
    rf"{patterns.UNRESOLVED.pattern}|{patterns.DEFERRED.pattern}|{patterns.UNDECIDED.pattern}"
    rf"|{patterns.EITHER_WAY.pattern}|{patterns.UNCERTAIN.pattern}|{patterns.DISPUTED.pattern}|{patterns.DISPUTE}"
    r"|两种说法|(?:请|需要?|需)您?(?:确认|核对|参考|对照)"
    r"|没法|无法|不好说|出题(?:有误|有问题|错误)|下定论|表述不一|说法不一|(?:需要?|需|要)根据[^。.;!?\n]{0,12}?(?:确定|判断|选择)"
    r"|两个选项|二选一|缺陷|自行(?:选择|判断|作答)|歧义|(?:也|亦)(?:说得通|讲得通|可以|对|成立)"
    r"|(?:需要?|需)[^。.;!?\n]{0,12}?判断"
    r"|(?i:\b(?:ambiguous|depending|depends|more\s+(?:clinical\s+)?information"
    r"|i\s+(?:can(?:no|')t|won't|would\s+rather\s+not))\b)"
)


def _letters_in(clause: str, valid: str) -> str:
    named = {
        match.group(0)
        for match in patterns.ANY_LETTER.finditer(clause)
        if not patterns.NAMING_WORD.search(clause, max(0, match.start() - 12), match.start())
    }
    for run in LETTER_RUN.finditer(clause):
        if list(run.group(0)) == sorted(set(run.group(0))):
            named.update(run.group(0))
    return "".join(letter for letter in valid if letter in named)


def _conditional(text: str, start: int, end: int) -> bool:
    """Whether the clause stands in a sentence that states a condition before its first letter
    ("如果是慢性期，选C"); "…（C）、在补液尿量足够的情况下BUN升高（E）" states it inside an option's text."""
    sentence_start = max((m.end() for m in patterns.SENTENCE_BREAK.finditer(text, 0, start)), default=0)
    first_letter = patterns.ANY_LETTER.search(text, start, end)
    return bool(
        patterns.HYPOTHETICAL.search(text, sentence_start, first_letter.start() if first_letter else end)
    )


def _units(text: str, valid: str) -> list[tuple[int, str, str]]:
    """(start, text, item letter or "") for each unit: a line opening with an option letter and naming no
    other one whole, otherwise each clause."""
    units, offset = [], 0
    for line in text.split("\n"):
        item = ITEM_LINE.match(line)
        if item and _letters_in(line, valid) in ("", item.group("letter")):
            units.append((offset, line, item.group("letter")))
        else:
            clauses = [(offset + m.start(), m.group(0), "") for m in CLAUSE.finditer(line)]
            for clause in clauses:
                previous = units[-1] if units else None
                if (
                    previous
                    and not previous[2]
                    and text[previous[0] + len(previous[1]) : clause[0]] == ":"
                    and len(previous[1].strip()) <= 12
                    and not _letters_in(previous[1], valid)
                    # an answer label's value the statements declined ("答案：E（来源：某题库）") stays apart
                    and not re.search(r"答案|选|(?i:answer)", previous[1])
                ):
                    units[-1] = (previous[0], text[previous[0] : clause[0] + len(clause[1])], "")
                else:
                    units.append(clause)
        offset += len(line) + 1
    return units


def _item_names(units: list[tuple[int, str, str]]) -> dict[str, str]:
    """The option texts the answer's own item lines give ("C. 非诺贝特——…" → {"C": "非诺贝特"})."""
    names = {}
    for _, line, item in units:
        if item:
            name = ITEM_NAME.match(line, ITEM_LINE.match(line).end())
            if name:
                names[item] = name.group("name")
    return names


def _leading(plain: str, units: list[tuple[int, str, str]]) -> str:
    """The letters an answer leads with: a first clause of letters alone ("E，毫无疑问", "B和D。") or a first
    line that is one option standing alone ("**A. 葡萄糖-6-磷酸脱氢酶缺乏症**\n\n…")."""
    if not units:
        return ""
    start, first, item = units[0]
    if item:
        line_end = plain.find("\n", start)
        alone = line_end == -1 or plain[line_end : line_end + 2] == "\n\n"
        heading = ITEM_HEADING.fullmatch(first.rstrip()) and not REJECTION.search(first)
        return item if alone and heading else ""
    leading_letters = set(_letters_in(first.upper(), "ABCDEFGHIJ"))
    if any(set(line.group(1)) - leading_letters for line in OTHER_LINE_LETTER.finditer(plain)):
        return ""  # "A——主动脉瓣关闭不全\nB——二尖瓣狭窄": options listed one a line, none led with
    follows = plain[start + len(first) : start + len(first) + 1]
    letters = first.upper() if re.fullmatch(r"[a-j、,和及与 \t]+", first) else first  # "b 和 d。"
    return letters if BARE_LETTERS.fullmatch(letters) and follows != "?" else ""


@dataclass(frozen=True)
class Stance:
    approved: frozenset[str]  # the letters some clause is for
    rejected: frozenset[str]  # the letters some clause is against
    named: frozenset[str]  # every letter a clause of the writer's own names
    summarised: bool  # a clause sums the options up ("所以本题选前四项", "其余都对", "只有A符合", "故选E")
    reading: str | None  # the letters read (see the module docstring), None when they commit to none


def read_stance(text: str, valid: str, skipped: list[tuple[int, int]]) -> str | None:
    """The letters the answer's clauses are for and none is against, or None (see the module docstring).
    `text` is the folded answer; clauses starting inside a `skipped` span (analysis of the other options) are
    not read."""
    stance = stance_of(text, valid, skipped)
    return stance.reading if stance else None


def stance_of(text: str, valid: str, skipped: list[tuple[int, int]]) -> Stance | None:
    """The stance the answer's clauses take on each option; None when the writer leaves the choice open
    (undecided, letters offered as alternatives, a list cut off)."""
    plain = context.unquoted(text)
    if UNDECIDED.search(plain):
        return None
    units = _units(plain, valid)
    names = _item_names(units)
    approved: list[str] = list(_letters_in(_leading(plain, units), valid))
    rejected: set[str] = set()
    judged_wrong: set[str] = set()
    excepted: set[str] = set()
    named_anywhere: set[str] = set()
    hesitant = every_option = summarised = False
    marked_items = 0
    after_skipped = False
    last_named = ""
    for start, clause, item in units:
        if any(left <= start < right for left, right in skipped):
            continue
        if (
            NOT_OWN.search(clause)
            or plain[start + len(clause) : start + len(clause) + 1] == "?"
            or _conditional(plain, start, start + len(clause))
        ):
            after_skipped = True
            continue
        named = (item if item in valid else "") if item else _letters_in(clause, valid)
        ordinal = ORDINAL.search(clause) if not named else None
        chosen_by_place = None
        if ordinal:
            place = ORDINALS[(ordinal.group(1) or ordinal.group(2)).lower()]
            named = valid[place] if place < len(valid) else ""
            chosen_by_place = re.search(r"(?:是|选|为)[ \t]*$", clause[: ordinal.start()])
        named_anywhere.update(named)
        last_named = named or last_named
        if len(named) > 1 and BETWEEN.search(clause):
            return None
        if named and patterns.CUT_OFF_LIST.search(clause):
            return None  # "正确答案包括B、": a list cut off
        marks = list(patterns.LETTER_MARK.finditer(clause)) if not item else []
        if len(marks) > 1:
            for mark in marks:
                letter = mark.group("letter") or mark.group("letter_after")
                (
                    rejected.add
                    if CROSS.match(mark.group("mark") or mark.group("mark_first"))
                    else approved.append
                )(letter)
                named_anywhere.add(letter)
            marked_items += len(marks)
            continue
        if item:
            # an option's line is judged by its mark alone: its wording is the option's, and an unmarked
            # enumeration ("A. 头孢——应选\nB. …") may be cut off or answer "错误的是"
            against = bool(CROSS.search(clause) or (not TICK.search(clause) and WRONG.search(clause)))
            for_them = bool(TICK.search(clause)) and not against
            marked_items += for_them or against
        else:
            against = bool(REJECTION.search(clause))
            for_them = not against and bool(
                TICK.search(clause)
                or APPROVAL.search(clause)
                or CONCLUDED.search(clause)
                or ONLY.search(clause)
                or (ordinal and chosen_by_place)
            )
        if not named and not item:
            named = _named_by_text(clause, names)
            if named and INFERENCE.match(clause):
                for_them, against = True, False  # "…所以是碳酸锂": the option named by its own text
        if not named and THAT_ONE.search(clause) and last_named:
            named, for_them, against = last_named, True, False  # "…只有 D 是葡萄糖酸钙，我选它"
        closes_sentence = plain[start + len(clause) : start + len(clause) + 1] in ("。", ".", ";", "\n", "!")
        value = clause.rsplit(":", 1)[-1]  # a label's value: "以下四项属于…原则：A、B、C、E"
        if not named and not item and ":" in clause and LOWERCASE_LIST.fullmatch(value):
            named = lists.letters(value)  # "结论先说：b、c、e。"
            value = named
        bare = named and not item and BARE_LETTERS.fullmatch(value)
        if bare and after_skipped:
            continue  # "题库答案：B": the letters of a label that takes no stance of the writer's own
        after_skipped = False
        if bare and closes_sentence and start + len(clause) - len(value) > 0:
            for_them = True  # "…that's carbamazepine, option B.": the sentence closes on the option it names
        if named and not item and EXCEPT.search(clause):
            excepted.update(named)
            rest = THE_REST.search(clause) or re.search(r"(?i:\ball\b)", clause)
            if rest and REST_AFFIRMED.search(clause, rest.end()) and not REJECTION.search(clause, rest.end()):
                approved.extend(letter for letter in valid if letter not in excepted)  # "除C项外其余均为…"
                summarised = True
            continue
        if named and not item and SINGLED_OUT.search(clause):
            for_them, against = True, False
            summarised = True
        if against and WRONG.search(clause):
            judged_wrong.update(named)
        if not named:
            first = FIRST_ONES.search(clause)
            rest = THE_REST.search(clause) and (excepted or judged_wrong)
            summarised = summarised or bool(for_them and (first or rest or ALL_OPTIONS.search(clause)))
            if first and for_them:
                approved.extend(valid[: COUNTS[first.group(1)]])
            elif rest and (for_them or (REST_AFFIRMED.search(clause) and not against)):
                approved.extend(letter for letter in valid if letter not in excepted | judged_wrong)
            elif rest and against and excepted:
                approved.extend(excepted)  # "除C外都错"
            elif THE_REST.search(clause) and against and approved:
                # "[B] 正确，[D] 正确，其余错误": the rest judged wrong
                rejected.update(letter for letter in valid if letter not in approved)
                summarised = True
            elif ALL_OPTIONS.search(clause) and (for_them or not against):
                approved.extend(valid)
                every_option = True
            continue
        if against:
            rejected.update(named)
        elif for_them:
            approved.extend(named)
            if ONLY.search(clause):
                rejected.update(letter for letter in valid if letter not in named)
            summarised = summarised or bool(ONLY.search(clause) or CONCLUDED.search(clause))
            hesitant = hesitant or bool(HESITATION.search(clause))
    chosen = sorted(set(approved) - rejected)
    committed = not (
        not chosen
        or (hesitant and len(chosen) > 1)
        or (every_option and rejected)
        # a list marking options reads only when it judges every option
        or (marked_items > 1 and set(valid) - set(approved) - rejected)
    )
    reading = lists.letters("".join(chosen)) if committed else None
    return Stance(frozenset(approved), frozenset(rejected), frozenset(named_anywhere), summarised, reading)


def _named_by_text(clause: str, names: dict[str, str]) -> str:
    """The one option whose text (as the answer's own item lines give it) the clause names, or ""."""
    named = [letter for letter, name in names.items() if name in clause]
    return named[0] if len(named) == 1 else ""
