"""Reading the chosen option letters from a multiple-choice answer, as a careful human grader reads them.

Pass the answer part (the text after the reasoning); the reasoning, when given, is read only by rule 12.

Rules
0. The answer line. The prompt asks for one final line `答案：X` (`答案：AC` for several); when the answer's
   last line is exactly that, its letters are the reading ("answer line") and nothing else is read.
   Everything below is the fallback for answers without it.
1. Folding. Full-width characters become ASCII (`Ｃ`→`C`, `（`→`(`, `：`→`:`); markdown emphasis `*` and
   back-ticks are dropped, and so are spaces between Chinese characters (`答 案：A`). Roman numerals stay
   numerals (`Ⅰ`, and `I、III` joined as numerals), never the
   letters I and V. A LaTeX answer box states an answer (`$\\boxed{\\text{C}}$`, `\\[\\boxed{AC}\\]`).
   Letters written one by one as options join into one group: `（A）（C）`, `选项A和选项C`, `A项和D项`,
   `第A项和第D项`, `选项B + 选项E`. A letter's option text in brackets after it is a gloss, dropped
   (`C选项（肺血栓栓塞症）最符合` reads as `C选项最符合`; after a dot only right before a best-fit verdict,
   `C. 肺血栓栓塞症最符合`), unless the bracket names a source, flags, judges
   or names another letter (`答案：B（据题库）`, `答案：B（不确定）`, `答案：C（D也对）`). A range names each
   letter in it (`A～D均正确` → ABCD).
2. Option letters. A letter A-J counts only where it stands as a choice: not touching another Latin
   letter or a digit (`CT`, `HbA1c`, `IgA`, `维生素B12`, `ECG`, `poly(A)`), not starting a word (`A型血`,
   `A 型血`, `B超`, `A族`, `C反应蛋白`, `B细胞`, `D-二聚体`), not after a naming word (`vitamin C`, `type A`),
   and not the English article or pronoun (`A deficiency of…`, `I think…`).
   Lowercase letters count one at a time or as a list (`答案：b`, `(b)`, `a、c`, `b, d and e`); a run counts
   only right after an answer keyword, ending the clause, its letters distinct and in order (`答案是 acd。`);
   otherwise a run is a word (`acid`, `bad`).
3. Statements. An answer keyword followed by letters commits to them: `答案：C`, `答：C`, `【答案】C`,
   `答案：选项C`, `答案是「B」`, `正确答案为A、C、E`, `选C`, `故选择C`, `应为E`, `我认为是D`, `最佳选择是C`,
   `正确的是B`, `最恰当的处理是C`, `而是D`, `故C。`, `C为正确答案`, `Answer: C`, `The answer is (b)`,
   `I would choose E`, `it is D`, `C is the correct answer`, `故A、C。`, informal endings (`所以是 D 啦～`,
   `就是C吧`, `选E呀😄`), also with `only`/`both` (`正确答案只有D`,
   `I would select both D and E`, `…, which corresponds to option D`, `所以本题答C`, `所以挑 E`,
   `首先考虑 B`, `选项中符合…的有：B、C、E`, `符合题意的有A和D`, `So the correct ones are B and C`, an arrow
   conclusion `A对，B错，C对 → AC`, `【结论】A`, a dash closing the answer `…卡介苗 ——A。`,
   `正确答案包括 B 和 D`, `正确的只有 C 和 E 两项`); a line of letters closing the answer (`…\n\nBE`,
   `…\n\nA和B`; not the last of a list of letters one a line); a list answering a
   keyword with a colon, one letter an item a line (`正确的选项有：\n- A：…\n- C：…` → AC; when the items
   judge options, those judged right if every item is judged, none otherwise; the list ends where a
   sentence about other options begins, `\n\nB、E两项属于…`, or an item marked otherwise than the first,
   `A. …\nC. …\n\nB项为禁忌证` → AC); option items in one sentence after a keyword
   (`应选：A. 限盐；C. 控制体重；D. 戒烟` → ACD; none when an item judges its option wrong); a label with
   a colon opening a line (`最可能的诊断：C. 急性胰腺炎`,
   `首选治疗：B`), or any label whose whole value is a letter with its option text
   (`致病菌：A（金黄色葡萄球菌）`) unless the label discusses options (`鉴别要点：`, `其他选项：`); what is
   left after elimination
   (`排除A、C、D，只剩B`; `…can be ruled out, leaving A`, `after eliminating…, we are left with E` in a
   sentence that eliminates, not `which leaves C unexplained`); the
   option a combination maps to (`Ⅰ、Ⅲ正确，对应选项B`); a complement (`除A外都对` → every other option,
   `除C外都错` → C, `A、C项错误，其余正确` → BDE). A keyword inside one item of an option list does not reach
   the letter opening the next item's line (`B. 华法林：…但需要考虑题目问的是\nC. 肝素`: an answer cut off
   mid-analysis, no statement). A statement does not count when it is
   - inside quotation marks (`A选项“答案是D”的说法错误`),
   - negated (`不选A`, `不应选E`, `不要误选C`, `答案A是错误的`, `能确定的是D和E与题意无关`; `答案不是A`
     names nothing),
   - hypothetical (`如果选A，…`, `若答案是C，则…`, `…，则应选A` or `如果是慢性期，选C` after a condition,
     `在没有C的情况下，可以选择D`, `否则选D`, unless the sentence turns back to the case at hand:
     `…，因此答案是B`),
   - tentative and called uncertain in its sentence (`答案可能是A，需要更多信息才能确定`,
     `答案可能是A，取决于…`), or a choice the
     sentence says is not made (`B、C都对，但只能选一个的话难以决定`),
   - reported speech: someone else's answer, an old key, a common mistake, a distractor or another
     question's answer (`有同学选C`, `有人认为是D`, `另有观点认为应选E`, `原答案是D`, `题库答案为E`,
     `常见错误是A`, `选A是最常见的错误`, `容易误选B`, `选A者…`, `本题的干扰项是A`, `上一题（答案A）`,
     `some students choose A`, `有争议的是D`), or a key given with where it was copied from
     (`参考答案：C（来自题库）`; not `答案：B（据《内科学》）`, an answer citing a book), unless the sentence
     turns to the writer's own voice
     (`有同学选A，但正确答案是C` → C),
   - about the wording, not the answer: a typo note replacing quoted wording or naming where the wording is
     (`更正：解析中“A项”应为“B项”（笔误）`); a note correcting the answer's own letter does count
     (`（更正：上文“选A”为笔误…应选E）`, `抱歉，上面笔误写成了B…应为D` → the new letter),
   - a question (`答案是A？`, `答案是C吗`),
   - retracted right after (`答案是A。不对，…`, `…等等，…`, `…重新考虑…`, `Wait, …`), or
   - rejected later (`不选A`, `排除A`, `答案不是A`, `A不能选` after `答案是A`), or disputed by the writer
     (`但我认为这个答案有争议`, `我不同意这个答案`, `这题出得有问题`; not `此题答案没有争议`,
     nor `有人认为…有争议`).
4. The final statement wins on the same line and after a mere inference: a later correction overrides an
   earlier answer (`答案是A？不对，重新考虑，应选C` → C). After a declared answer (`答案：C`, `选C`,
   `Answer: C`) a later line replaces it only as a correction (`更正`, `勘误`, `不对`, `等等`, `抱歉`,
   `不好意思`, `笔误`, `Actually`) or
   as a new declaration outside a note (a line opened by `注`/`备注`/`Note`…, or brackets): a note's
   inference or someone's choice (`本题的干扰项是A`, `（大多数考生选C）`) is commentary. An alternative
   offered later (`也可选C`, `D亦可考虑`, `其次是C`) is no commitment: in a later sentence or note it leaves
   the answer as it was; in the answer's own sentence (`答案：B，也可选C`) it makes the answer a hedge.
5. Hedges are unparseable: letters joined by `或`, `还是`, `/`, `or` (`答案为C或D`, `选A或者选D`), a second
   letter or group offered as possible (`答案可能是A，也可能是C`, `可能是C也可能是D`,
   `答案可能是ABD，也可能是ABCD`, `答案：C（D也对）`), a sentence saying either of the
   options would do (`两个答案都说得通：…`, `选C或者选E都行`, `both are defensible`), or a choice "among"
   letters that names none (`A和B中的任意一个`). A choice among letters that names one reads that one:
   `答案是B和C中的B` → B. Three or more letters joined by slashes only are a list (`本题选择C/D/E` → CDE).
   An answer whose closing sentence leaves the choice open between two or more letters, with no turn after
   it, is unresolved whatever it said before (`应选A。\n不对，…那就是C。\n可是…A和C都有可能`,
   `B和E好像都错…我现在没法确定`, `A和B之间关系比较复杂，我先分析到这里`; not `A和C都有可能，但…最终选C`),
   and so is one that leaves the choice to a source (`两个版本各有依据，以哪个为准…`). A list cut off after a
   separator (`正确答案包括A、`) commits to nothing.
6. Several letters joined by `、` `,` `和` `及` `与` `and` `, and`, by spaces or written together (`AC`,
   `A、C、E`, `ACE`, `A, B, and D`) are a multi-answer choice, read as written and sorted (`CA` → AC);
   whether the question allows several answers is the scorer's business (several letters for a
   single-answer question are simply wrong).
   A comma ends the choice when an option is discussed after it (`答案是A，B项错误…` → A).
7. Verdicts. Only without any statement: positive verdicts on options (`C项正确`, `选项C正确`, `(C) 正确`,
   `C. 正确`, `只有D对`, `故 A 当选`, `A、C、E正确`, `C、D两项正确`, `A、B、C、D、E五项全部正确`,
   `选项B、C均为正确描述`, `选项A和选项C都是正确的：…`, `本题第A、D项的表述是正确的`, `B选项最符合`,
   `选项D最恰当`, `E项为首选`, `Option C is correct`, `Options C and E are both correct`, `B 无疑`,
   `ABD三项是正确措施`, `AD 两项符合规定`, `选项A和选项D都属于…`, `只有 D 项“…”属于…`; not one letter's
   class, `D、E属于二级预防`) and best-fit verdicts
   (`选项D与题干描述最为吻合`, `Option A fits best with…`) are read when they all name the same letters;
   verdicts naming different options (`A正确，B正确，D正确，C错误`) are unparseable. Negative verdicts
   (`A项错误`) name nothing. A list or table judging every option (`A … —— 正确`, `| B | 突眼 | ✔ |`) is
   read, before verdicts, only when a summary closing it commits to the options judged right (`表中标✔的即为
   正确选项`, `五个选项均正确，全选`); without one it names nothing (the question may ask for the wrong ones).
   Before verdicts and formatted letters, a closing sentence that declines (`信息不足，难以唯一确定`) reads
   none.
8. Formatted letters. Only without statements and verdicts: an answer that is just letters (`C`, `AC`, `(C)`,
   `**C**`), a letter opening a line (`C. 非离子型`, `C、…`, `B) 粒层`) or in brackets (`…毒性最低（C）`, but
   not `poly(A)`) is read when all such mentions agree (`(A) 错误；(B) 错误` is unparseable).
9. Analysis of the other options. A list under a heading that analyses the other options (`其他选项分析：`,
   `为何不选其他：`, `Other options:`) is analysis, not commitment: no statement, verdict or letter in it
   is read (`**C. 心电图**\n\n其他选项分析：\n- A. …\n- E. …：非首选` → C).
10. A letter outside the question's options makes the answer unparseable (`答案：E` with options A-D).
11. Numbered combinations. Given the option texts (`{"A": "Ⅰ+Ⅱ", "B": "Ⅰ+Ⅲ", …}`), an answer that commits
   only to numerals (`答案：Ⅰ、Ⅲ`, `Ⅰ和Ⅲ正确`) reads the one option that is that combination.
12. A restated conclusion. The reasoning is read only for an answer that names no option letter at all, given
   the option texts: when the answer neither hedges nor declines (`可能`, `或`, `无法`, `请参考`, `不确定`…;
   `最可能` is no hedge), the reasoning read by these rules commits to letters, and the answer names the text
   of each of those options and of no other (`<think>…所以选B。</think>该患者最可能的诊断为急性胰腺炎。` with
   B = 急性胰腺炎 → B, reason "restated conclusion"). A reasoning's letter is never read over the answer's
   own: an answer that refuses (`无法作答`), hedges (`选项C和E…我倾向于两者之一`) or only analyses the options
   (`A项为早期表现，B项…`) is unparseable whatever the reasoning chose, and so is an empty answer after a
   closed think block (`<think>…所以选D。</think>` with nothing after it reads no letter).
13. A confirmed conclusion. An answer that reads no letter by the rules above but names every letter
   its reasoning concluded on (read by these rules), before any other letter it does not reject, against
   none of them and for no other letter, reads the reasoning's letters
   (`<think>…选AB。</think>属于青霉素类的是阿莫西林（A）和哌拉西林（B）。` → AB, reason "confirmed
   conclusion"). An answer that refuses, hedges or leaves the choice open never does.
14. The stance of the clauses (medsft.answer_stance). Last, an answer the rules above leave unread, or
   whose verdicts conflict but which a clause sums up (`（A 对）…（E 错）…所以本题选前四项`), is read by the
   stance its clauses take on each option: the options some clause is for and none against
   (`四个选项里只有D说得对`, `E，毫无疑问。`, `诊断考虑E（…）`, `✅ A. …\n❌ B. …` judging every option,
   `除B外，其余各项均为…`, `前三项都对，D不对`, `A–C 正确，D 错误`), reason "stance"; none where the writer
   leaves the choice open anywhere in the answer.
Everything else is unparseable, with the reason: an empty or truncated answer (`答案：`, `正确答案是`), a
non-answer (`无法确定`, `以上都不对`), an option named only by its text. Nothing is ever guessed: no letter
when a careful reader could not tell is a missed answer; a wrong letter would be a wrong answer scored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from medsft import answer_context as context
from medsft import answer_folding as folding
from medsft import answer_lists as lists
from medsft import answer_patterns as patterns
from medsft.answer_patterns import ANSWER_LINE, RESTATED
from medsft.answer_stance import UNDECIDED, read_stance, stance_of

OPTION_LETTERS = "ABCDEFGHIJ"
CONFIRMED = "confirmed conclusion"  # the reason of a reasoning's letters the answer confirms (rule 13)
STANCE = "stance"  # the reason of an answer read by the stance of its clauses (medsft.answer_stance)


@dataclass(frozen=True)
class Extraction:
    letters: str | None  # the chosen letters, sorted ("C", "ACE"); None when the answer is unparseable
    reason: str  # the rule that read it (statement, verdict, formatted) or why nothing was read
    evidence: str = ""  # the text that decided


@dataclass(frozen=True)
class _Mention:
    start: int
    letters: str | None  # None: a hedge between options
    evidence: str
    alternative: bool = False  # offered as also possible ("也可选C"), no commitment of its own
    declaration: bool = (
        False  # declares the answer ("答案：C", "选C", "Answer: C"), not an inference ("…是C")
    )


def _statements(text: str, quoted: list[tuple[int, int]], valid: str) -> list[_Mention]:
    found = []
    hedged_until = 0  # the letters a hedge offers ("答案可能是A，也可能是C") are no new statement
    for match in patterns.STATEMENT.finditer(text):
        strong = match.group("key") is not None
        name = "group" if strong else "wgroup"
        group, start = match.group(name), match.start()
        if start < hedged_until:
            continue
        if context.is_word(text, group, match.start(name), match.end(name)) and not (
            strong and context.letter_run(text, group, match.end(name))
        ):
            continue
        if lists.enumerated(text, start, match.start(name)):
            continue  # "B. 华法林…题目问的是\nC. 肝素": the next item of an option list, not the value
        if patterns.ABOUT_THE_OPTION.match(text, match.end(name)):
            continue  # "我觉得A的说法只适用于…": the option's claim discussed, not chosen
        run = re.fullmatch(r"[A-J]{2,}", group)
        if run and set(group) - set(valid):
            continue  # "它是ACEI": an abbreviation, not letters
        if len(lists.letters(group)) == 1 and patterns.OPTION_LIST_REST.match(text, match.end(name)):
            continue  # "选项：A 高热惊厥 B 手足搐搦 C 喉痉挛": the options listed, not a choice
        group = context.shrink_at_comma(text, group, match.end(name))
        group_end = match.start(name) + len(group)
        if patterns.CUT_OFF_LIST.match(text, group_end):
            continue  # "正确答案包括A、": a list cut off, no answer
        listed = (
            lists.itemised(text, lists.listed(text, group, match.start(name)), group_end) if strong else group
        )
        if listed is None:
            continue  # a list judging some options wrong and leaving others unjudged commits to none
        group = listed
        if not context.counts(text, quoted, start, group_end):
            continue
        if strong and ":" not in match.group("conn") and patterns.NEGATED_AFTER.match(text, group_end):
            continue  # "答案A是错误的"; after a colon ("答案：C项错误") the letter is the answer
        if strong and not context.left_over(text, match.group("key"), start):
            continue
        letters, hedge_end = context.choice(text, group, group_end, start)
        hedged_until = max(hedged_until, hedge_end)
        declaration = strong and bool(patterns.DECLARATION_KEY.fullmatch(match.group("key").strip()))
        alternative = context.alternative(text, start)
        found.append(_Mention(start, letters, text[start:group_end], alternative, declaration))
    complements = [
        *patterns.COMPLEMENT.finditer(text),
        *patterns.COMPLEMENT_AFTER.finditer(text),
        *patterns.COMPLEMENT_EN.finditer(text),
    ]
    for match in complements:
        group = match.group("group")
        if context.is_word(text, group, match.start("group"), match.end("group")) or not context.counts(
            text, quoted, match.start(), match.end()
        ):
            continue
        named = lists.letters(group)
        wrong_ones = match.group("verdict") in ("错误", "错", "不正确", "不对")
        letters = named if wrong_ones else "".join(letter for letter in valid if letter not in named)
        found.append(_Mention(match.start(), letters or None, match.group(0)))
    closing = patterns.FINAL_LETTERS.search(text)
    before = text[: closing.start()].rstrip() if closing else ""
    # "…\n\nBE": a line of letters closing the answer (not the last of a list of letters, one a line)
    if closing and before and not patterns.LETTERS_LINE.search(before[before.rfind("\n") + 1 :]):
        group = closing.group("group")
        found.append(_Mention(closing.start("group"), lists.letters(group), group, declaration=True))
    for pattern in (patterns.VERDICT_ZH, patterns.VERDICT_EN):
        for match in pattern.finditer(text):
            claim = match.group("claim").lower()
            if any(word in claim for word in ("答案", "选项", "选择", "answer", "option", "choice", "one")):
                mention = _verdict(text, quoted, match)
                if mention:
                    found.append(mention)
    return sorted(found, key=lambda mention: mention.start)


def _verdict(text: str, quoted: list[tuple[int, int]], match: re.Match) -> _Mention | None:
    group, group_end = match.group("group"), match.end("group")
    if context.is_word(text, group, match.start("group"), group_end) or not context.counts(
        text, quoted, match.start(), match.end()
    ):
        return None
    if context.hedged(group) or context.undecided(text, match.start(), match.end()):
        return _Mention(match.start(), None, match.group(0))
    clause_start = context.last_break(patterns.CLAUSE_BREAK_OUTSIDE_BRACKETS, text, match.start())
    joined = patterns.JOINED_BEFORE.search(text, clause_start, match.start())
    if joined:  # "第一个（A）和最后一个（E）正确": the letters joined before it share the verdict
        return _Mention(
            joined.start(), lists.letters(joined.group("letter") + group), text[joined.start() : match.end()]
        )
    return _Mention(match.start(), lists.letters(group), match.group(0))


def _verdicts(text: str, quoted: list[tuple[int, int]]) -> list[_Mention]:
    found = []
    for pattern in (patterns.VERDICT_ZH, patterns.VERDICT_ONLY, patterns.VERDICT_EN, patterns.VERDICT_FIT_EN):
        for match in pattern.finditer(text):
            mention = _verdict(text, quoted, match)
            if mention:
                found.append(mention)
    return found


def _formatted(text: str) -> list[_Mention]:
    found = []
    letter_lines = []
    for match in patterns.LETTERS_LINE.finditer(text):
        group = match.group("group")
        letters = None if context.hedged(group) else lists.letters(group)  # "B 或 E。" is a hedge
        found.append(_Mention(match.start(), letters, match.group(0).strip()))
        letter_lines.append((match.start(), match.end()))
    for pattern in (patterns.LINE_START, patterns.BRACKETED):
        for match in pattern.finditer(text):
            line_end = text.find("\n", match.start())
            marks = patterns.LETTER_MARK.findall(
                text, match.start(), line_end if line_end >= 0 else len(text)
            )
            if len(marks) > 1:
                continue  # "√A √B ×C": marks on several letters judge them, read by their stance
            line_start = text.rfind("\n", 0, match.start()) + 1
            if pattern is patterns.BRACKETED and patterns.TELLING_APART.search(
                text, line_start, match.start()
            ):
                continue
            if not any(left <= match.start() < right for left, right in letter_lines):
                found.append(
                    _Mention(match.start(), lists.letters(match.group("group")), match.group(0).strip())
                )
    return found


def _rejected(text: str, quoted: list[tuple[int, int]], mention: _Mention) -> bool:
    """Whether the letters of a statement are rejected later on ("不选A", "排除A", "答案不是A"), or the answer
    is disputed by the writer ("但我认为这个答案有争议")."""
    after = mention.start + len(mention.evidence)
    for match in patterns.DISPUTED.finditer(text, after):
        inside_quotes = any(left < match.start() < right for left, right in quoted)
        # someone else's dispute ("有人认为这个答案有争议") withdraws nothing
        if mention.letters and not inside_quotes and not context.reported(text, match.start(), match.start()):
            return True
    rejections = [*patterns.REJECTION.finditer(text, after), *patterns.REJECTION_AFTER.finditer(text, after)]
    for match in rejections:
        if any(left < match.start() < right for left, right in quoted):
            continue
        group_start, group_end = match.span("group")
        if context.is_word(text, match.group("group"), group_start, group_end):
            continue  # "…, not a risk factor": the article, not option A
        if mention.letters and set(lists.letters(match.group("group"))) & set(mention.letters):
            return True
    return False


def _combination(text: str, option_texts: dict[str, str]) -> _Mention | None:
    """With the option texts at hand: the option whose numbered statements are those the answer commits to,
    when the answer names no letter itself."""
    if not option_texts or patterns.STATEMENT.search(text):
        return None
    chosen = [m for m in patterns.ROMAN_ANSWER.finditer(text) if not context.negated_before(text, m.start())]
    if not chosen:
        return None
    numerals = set(re.findall(r"[ⅠⅡⅢⅣⅤⅥⅦⅧ]", chosen[-1].group("first") or chosen[-1].group("second")))
    numerals_of = {
        letter: set(re.findall(r"[ⅠⅡⅢⅣⅤⅥⅦⅧ]", folding.fold(option)))
        for letter, option in option_texts.items()
    }
    matching = [letter for letter, option_numerals in numerals_of.items() if option_numerals == numerals]
    return _Mention(chosen[-1].start(), matching[0], chosen[-1].group(0)) if len(matching) == 1 else None


def _in_note(text: str, start: int) -> bool:
    """Whether a mention stands in a note after the answer: a line opened by 注/备注/Note…, or brackets."""
    line = text[text.rfind("\n", 0, start) + 1 : start]
    return bool(patterns.NOTE_OPENING.match(line)) or line.count("(") > line.count(")")


def _overrides(text: str, current: _Mention, later: _Mention) -> bool:
    """Whether a later statement replaces the answer read so far. On the same line it does (the final
    statement wins), and after a mere inference ("初步考虑为A。\n…诊断应为C") it does. On a later line after
    a declared answer ("答案：C", "选C", "Answer: C"), only a correction does ("更正：…",
    "不对，…", "Actually, …") or a new declaration outside a note ("…\n答案：C"): a note's inference
    ("本题的干扰项是A") or someone's choice in it ("（大多数考生选C）") is commentary."""
    current_end = current.start + len(current.evidence)
    if "\n" not in text[current_end : later.start] or current.letters is None or not current.declaration:
        return True
    if patterns.CORRECTION.search(
        text, max(current_end, later.start - patterns.CONTEXT), later.start + len(later.evidence)
    ):
        return True
    return later.declaration and not _in_note(text, later.start)


def _line_of(text: str, position: int) -> tuple[int, int]:
    return text.rfind("\n", 0, position) + 1, (text.find("\n", position) + 1 or len(text) + 1) - 1


def _listed_statements(text: str, statements: list[_Mention]) -> list[_Mention]:
    """ "✓ 选 A（…）\n✓ 选 C（…）\n✓ 选 D（…）": statements opening consecutive lines the same way are one
    list, their letters one answer."""
    joined: list[_Mention] = []
    last_start = -1  # where the last statement joined into joined[-1] starts
    for mention in statements:
        line_start, _ = _line_of(text, mention.start)
        if joined and joined[-1].letters and mention.letters and last_start >= 0:
            last_line_start, last_line_end = _line_of(text, last_start)
            prefix = text[line_start : mention.start]
            if (
                last_line_end + 1 == line_start
                and text[last_line_start:last_start] == prefix
                and len(prefix) <= 4
            ):
                previous = joined[-1]
                letters = lists.letters(previous.letters + mention.letters)
                evidence = text[previous.start : mention.start + len(mention.evidence)]
                joined[-1] = _Mention(previous.start, letters, evidence, declaration=previous.declaration)
                last_start = mention.start
                continue
        joined.append(mention)
        last_start = mention.start if "\n" not in mention.evidence else -1
    return joined


def _final(text: str, statements: list[_Mention]) -> _Mention:
    """The answer the statements leave, read in order: see _overrides; an alternative offered in the
    answer's own sentence makes it a hedge ("答案：B，也可选C"), offered later it changes nothing."""
    current = statements[0]
    for later in statements[1:]:
        if later.alternative and not current.alternative:
            if not patterns.SENTENCE_BREAK.search(text, current.start, later.start):
                end = later.start + len(later.evidence)
                current = _Mention(current.start, None, text[current.start : end])
            continue
        if current.alternative or _overrides(text, current, later):
            current = later
    return current


def _decide(mention: _Mention, valid: str, rule: str) -> Extraction:
    if mention.letters is None:
        return Extraction(None, "hedge between options", mention.evidence)
    outside = [letter for letter in mention.letters if letter not in valid]
    if outside:
        return Extraction(None, f"invalid option {''.join(outside)!r}", mention.evidence)
    return Extraction(mention.letters, rule, mention.evidence)


def _agreeing(mentions: list[_Mention], valid: str, rule: str, conflict: str) -> Extraction:
    readings = {mention.letters for mention in mentions}
    if len(readings) > 1:
        shown = sorted(reading or "hedge" for reading in readings)
        return Extraction(None, f"{conflict}: {shown}", "; ".join(mention.evidence for mention in mentions))
    return _decide(mentions[-1], valid, rule)


def reason_rule(reason: str) -> str:
    """The rule part of an extraction reason, without its details: "conflicting verdicts: ['A', 'B']" →
    "conflicting verdicts", "invalid option 'E'" → "invalid option"."""
    return re.sub(r"(?::.*| '[A-J]+')$", "", reason)


def answer_line(answer: str) -> str | None:
    """The letters of the final line in the asked-for form `答案：X` / `答案：AC`, read strictly, or None."""
    lines = [line for line in folding.fold_numerals(folding.fold_width(answer)).splitlines() if line.strip()]
    match = patterns.ANSWER_LINE_PATTERN.match(lines[-1]) if lines else None
    return lists.letters(match.group("group")) if match else None


def extract_choice(answer: str, valid: str | Mapping[str, str], reasoning: str = "") -> Extraction:
    """The option letters an answer commits to, by the rules in this module's docstring.

    `answer` is the answer part (after the reasoning); `valid` the question's option letters ("ABCDE"), or its
    options as {letter: text} (the texts let a combination of numbered statements name its option, and an
    answer restate the reasoning's conclusion); `reasoning` the think block's text, read only by rule 12.
    """
    option_texts = dict(valid) if isinstance(valid, Mapping) else {}
    valid = "".join(option_texts) if option_texts else valid
    if not valid or any(letter not in OPTION_LETTERS for letter in valid):
        raise ValueError(f"valid option letters must be a non-empty string of A-J, got {valid!r}")
    read = _read_answer(answer, valid, option_texts)
    if read.reason == patterns.NO_LETTER and reasoning.strip() and option_texts:
        return _restated(answer, reasoning, option_texts) or read
    if read.letters is None and reasoning.strip():
        return _confirmed(answer, reasoning, valid) or read
    return read


def _read_answer(answer: str, valid: str, option_texts: dict[str, str]) -> Extraction:
    line = answer_line(answer)
    if line:
        return _decide(_Mention(0, line, f"答案:{line}"), valid, ANSWER_LINE)
    text = folding.fold(answer)
    if not text.strip():
        return Extraction(None, "empty answer")
    combination = _combination(text, option_texts)
    if combination:
        return _decide(combination, valid, "statement")
    quoted = context.quoted_spans(text)
    if _unresolved(text):
        return Extraction(None, "unresolved", text[-80:].strip())
    analysis = lists.analysis_spans(text)

    def in_analysis(mention: _Mention) -> bool:
        return any(left <= mention.start < right for left, right in analysis)

    # an answer cut off at an option's opening ("…最合适：\n\nA. …\nD."): its last line chooses nothing
    cut_off = bool(patterns.CUT_OFF_END.search(text))
    last_line_start = text.rstrip().rfind("\n") + 1

    def committed(mention: _Mention) -> bool:
        if cut_off and mention.start >= last_line_start:
            return False
        return not in_analysis(mention) and not _rejected(text, quoted, mention)

    statements = [mention for mention in _statements(text, quoted, valid) if committed(mention)]
    if statements:
        final = _final(text, _listed_statements(text, statements))
        clause_start = context.last_break(patterns.CLAUSE_BREAK, text, final.start)
        tentative = patterns.TENTATIVE_WORD.search(text, clause_start, final.start + len(final.evidence))
        declined = patterns.DECLINED.search(_closing_sentence(text))
        if declined and (tentative or not final.declaration):
            return Extraction(None, "unresolved", text[-80:].strip())  # "像是B…无法给出确定答案"
        return _decide(final, valid, "statement")
    judged = lists.judged_summary(text)
    if judged:
        return _decide(_Mention(0, judged, text[-60:].strip()), valid, "judged list")
    # declining, in any sentence, outweighs verdicts ("这题我给不出确定答案。…A、B、D是对的…")
    if patterns.DECLINED.search(_closing_sentence(text)) or patterns.DECLINED.search(context.unquoted(text)):
        return Extraction(None, "unresolved", text[-80:].strip())
    verdicts = [mention for mention in _verdicts(text, quoted) if committed(mention)]
    if verdicts:
        read = _agreeing(verdicts, valid, "verdict", "conflicting verdicts")
        # verdicts on several options ("A对…B对…E错") read only with a clause summing them up
        stance = stance_of(text, valid, analysis) if read.letters is None else None
        if stance and stance.summarised and stance.reading:
            return _decide(_Mention(0, stance.reading, text[-60:].strip()), valid, STANCE)
        return read
    formatted = [mention for mention in _formatted(text) if not in_analysis(mention) and not cut_off]
    read = (
        _agreeing(formatted, valid, "formatted", "ambiguous letters")
        if formatted
        else Extraction(None, patterns.NO_LETTER)
    )
    if read.letters is None:
        stance = read_stance(text, valid, analysis)
        if stance:
            return _decide(_Mention(0, stance, text[-60:].strip()), valid, STANCE)
    return read


def _closing_sentence(text: str) -> str:
    stripped = text.rstrip(" \t\n。.!?;")
    breaks = list(patterns.SENTENCE_END.finditer(stripped))
    return stripped[breaks[-1].end() if breaks else 0 :]


def _unresolved(text: str) -> bool:
    """ "…应选A。\n不对，…那就是C。\n可是…A和C都有可能。": a closing sentence that leaves the choice open
    between two or more letters, with no turn after it, ends the answer unresolved."""
    closing = _closing_sentence(text)
    # "两个版本各有依据，要看你的考试以哪个为准": the choice left to a source, whatever letters it names
    found = list(patterns.DEFERRED.finditer(closing))
    options_named = len(patterns.ANY_LETTER.findall(closing)) >= 2 or patterns.TWO_OPTIONS.search(closing)
    if not found and (not options_named or _in_note(closing, len(closing))):
        return False
    found = found or list(patterns.UNRESOLVED.finditer(closing))
    if not found:
        return False
    return not re.search(r"但|然而|不过|所以|因此|故|(?i:\bbut\b)", closing[found[-1].end() :])


def _compact(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", folding.fold(text)).lower()


def _restated(answer: str, reasoning: str, option_texts: dict[str, str]) -> Extraction | None:
    """Rule 12: the reasoning's conclusion, when the answer names no option letter, commits without hedging
    or declining, and names the text of each option the reasoning concluded on and of no other option."""
    text = folding.fold(answer)
    if patterns.ANY_LETTER.search(text) or patterns.NOT_COMMITTING.search(text):
        return None
    concluded = extract_choice(reasoning, "".join(option_texts))
    if not concluded.letters:
        return None
    said = _compact(text)
    named = {
        letter
        for letter, option in option_texts.items()
        if len(_compact(option)) >= 2 and _compact(option) in said
    }
    if named != set(concluded.letters):
        return None
    shown = "、".join(option_texts[letter] for letter in concluded.letters)
    return Extraction(concluded.letters, RESTATED, f"{concluded.evidence} → {shown}")


def _confirmed(answer: str, reasoning: str, valid: str) -> Extraction | None:
    """Rule 13: the reasoning's conclusion, when the answer reads no letter of its own but names every letter
    the reasoning concluded on, against none of them, before any other letter it does not reject, and is
    for no other letter."""
    text = folding.fold(answer)
    if _unresolved(text) or patterns.CUT_OFF_END.search(text) or UNDECIDED.search(folding.fold(reasoning)):
        return None
    stance = stance_of(text, valid, lists.analysis_spans(text))
    concluded = extract_choice(reasoning, valid)
    if stance is None or not concluded.letters:
        return None
    chosen = set(concluded.letters)
    if chosen & stance.rejected or not chosen <= stance.named or stance.approved - chosen:
        return None
    in_order = list(
        dict.fromkeys(m.group(0) for m in patterns.ANY_LETTER.finditer(text) if m.group(0) in valid)
    )
    others = [letter for letter in in_order if letter not in chosen and letter not in stance.rejected]
    if others and in_order.index(others[0]) < max(in_order.index(letter) for letter in chosen):
        return None  # "A项为早期表现，B项为晚期表现": an analysis of the options, not the conclusion restated
    return Extraction(concluded.letters, CONFIRMED, f"{concluded.evidence} → {text[-60:].strip()}")
