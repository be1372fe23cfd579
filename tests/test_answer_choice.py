"""Letter extraction against hand-graded corpora of answers, and the rules one by one."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import grader_agreement
from medsft.answer_choice import ANSWER_LINE, RESTATED, Extraction, answer_line, extract_choice, reason_rule
from medsft.answer_corpus import AnswerCorpusError, load_corpus, measure, read_answer
from medsft.chat_format import split_reasoning
from medsft.engine import Generation
from medsft.errors import MedsftError
from medsft.evaluate import think_records
from medsft.mcq import Question

CORPUS = Path(__file__).with_name("answer_corpus.jsonl")
HELDOUT_PREFIX = "answer_corpus_heldout"
# Development corpora: the rules were written with them in view, so they must read them nearly all.
DEV_CORPORA = sorted(
    path
    for path in Path(__file__).parent.glob("answer_corpus*.jsonl")
    if not path.name.startswith(HELDOUT_PREFIX)
)
REQUIRED_AGREEMENT = 0.97
# Held-out corpora (answer_corpus_heldout*.jsonl), written apart from the rules and measured once before any
# rule saw them: each is guarded by a floor set just under its first measured figure, recorded beside it. A
# regression guard, not a target: rules are never fitted to a held-out corpus.
# file name -> (floor, the figure measured on its first run)
# Earlier ones (answer_corpus_outside3/5/6/14.jsonl, first measured at 96.2 %, 92.5 %, 86.7 % and 95.8 %)
# became development data once their disagreements were worked on (docs/evaluation.md).
HELDOUT_FLOORS: dict[str, tuple[float, str]] = {
    # an eighth outside corpus, written blind; measured once on the rules as they stand, then frozen
    "answer_corpus_heldout.jsonl": (233 / 240, "233/240 (97.1 %), 4 wrong letters, 3 missed"),
}


def test_corpus_covers_every_class():
    rows = load_corpus(CORPUS)
    kinds = Counter(row.kind for row in rows)
    assert len(rows) >= 500
    for kind in ("correction", "quoted", "negated", "hedge", "words", "phrasing", "english", "fullwidth"):
        assert kinds[kind] >= 5, kind
    for kind in ("formatted", "multi", "truncated", "nonanswer", "hypothetical", "long"):
        assert kinds[kind] >= 5, kind
    for kind in ("answer_line", "boxed", "label", "option_verdict", "elimination", "complement", "roman"):
        assert kinds[kind] >= 5, kind
    for kind in ("multi_brackets", "multi_units", "multi_english", "multi_lowercase", "alternative"):
        assert kinds[kind] >= 5, kind
    assert kinds["trailing_note"] >= 30
    assert sum(len(row.graded) > 1 for row in rows) >= 100
    assert any(any("a" <= char <= "z" for char in row.answer) for row in rows)
    assert all(set(row.graded) <= set(row.options) for row in rows)
    assert len({row.answer for row in rows}) == len(rows)  # no answer graded twice


def _failing(corpus: Path, agreement) -> str:
    print("\n" + "\n".join(grader_agreement.describe(corpus, agreement)))
    return "\n".join(
        f"{d.row.id} [{d.row.kind}] graded {d.row.graded!r}, read {d.read}" for d in agreement.disagreements
    )


def test_development_and_heldout_corpora_are_told_apart():
    names = {path.name for path in DEV_CORPORA}
    assert {"answer_corpus.jsonl", "answer_corpus_probe.jsonl", "answer_corpus_outside3.jsonl"} <= names
    assert not any(name.startswith(HELDOUT_PREFIX) for name in names)


@pytest.mark.parametrize("corpus", DEV_CORPORA, ids=lambda path: path.name)
def test_agreement_with_each_development_corpus(corpus):
    agreement = measure(load_corpus(corpus))
    assert agreement.share >= REQUIRED_AGREEMENT, _failing(corpus, agreement)


def test_each_heldout_corpus_stays_above_its_recorded_floor():
    heldout = sorted(Path(__file__).parent.glob(f"{HELDOUT_PREFIX}*.jsonl"))
    # a held-out corpus is measured once, then its floor is recorded here next to that figure
    assert {path.name for path in heldout} == set(HELDOUT_FLOORS), "record each held-out corpus's floor"
    for corpus in heldout:
        floor, measured = HELDOUT_FLOORS[corpus.name]
        agreement = measure(load_corpus(corpus))
        assert agreement.share >= floor, f"below the floor {floor} (first run: {measured})\n" + _failing(
            corpus, agreement
        )


@pytest.mark.parametrize(
    ("answer", "expected", "reason"),
    [
        ("答案是A？不对，重新考虑，应选C", "C", "statement"),
        ("A选项“答案是D”的说法错误，故选C", "C", "statement"),
        ("答案为C或D", None, "hedge between options"),
        ("答案是B和C中的B", "B", "statement"),
        ("A 型血患者最常见", None, "no option letter found"),
        ("C项正确，其余均错误。", "C", "verdict"),
        ("A正确，B正确，D正确，C错误。", None, "conflicting verdicts: ['A', 'B', 'D']"),
        ("(A) 错误；(B) 错误", None, "ambiguous letters: ['A', 'B']"),
        ("C. 非离子型", "C", "formatted"),
        ("答案：E", None, "invalid option 'E'"),
        ("", None, "empty answer"),
        ("答案：", None, "no option letter found"),
    ],
)
def test_reason_names_the_rule(answer, expected, reason):
    read = extract_choice(answer, "ABCD")
    assert (read.letters, read.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("answer", "expected", "reason"),
    [
        # an option text glossing its letter reads like the bare letter, in every rule
        ("综合来看，C选项（肺血栓栓塞症）最符合。", "C", "verdict"),
        ("首先考虑 B（急性肾炎）。", "B", "statement"),
        ("综合来看，C. 肺血栓栓塞症最符合。", "C", "verdict"),
        ("其中，A. 急性心梗最可能出现在下壁。", None, "no option letter found"),
        ("答案：B（据题库）", None, "no option letter found"),  # a source, not a gloss
        ("A（高钾血症）和C（低钙血症）都可能，难以决定。", None, "unresolved"),
        # verdict verbs and frames
        ("故 A 当选。", "A", "verdict"),
        ("所以挑 E。", "E", "statement"),
        ("选项中符合一般规律的有：B、C、E。", "BCE", "statement"),
        ("So the correct ones are B and C.", "BC", "statement"),
        ("A对，B错，C对，D对，E错 → ACD", "ACD", "statement"),
        ("A对，B错，C对，D对，E错。", None, "conflicting verdicts: ['A', 'C', 'D']"),
        # a closing line of letters commits; the last of a list of letters one a line does not alone
        ("各项分析见上。\n\nA和B", "AB", "statement"),
        ("正确的选项有：\n- A\n- C", "AC", "statement"),
        # the writer correcting the answer's own letter, not the wording
        ("故选A。\n\n（更正：上文“选A”为笔误，应选E。）", "E", "statement"),
        ("答案：B\n\n抱歉，上面笔误写成了B，应为D。", "D", "statement"),
        ("答案：C\n\n更正：解析中“B项”应为“D项”（笔误）。", "C", "statement"),
        # no commitment
        ("应选A。\n不对，那就是C。\n可是A和C都有可能。", None, "unresolved"),
        ("能确定的是D和E与题意无关。", None, "no option letter found"),
        ("A正确。\n等等，题目问的是错误的，所以A不能选。", None, "no option letter found"),
        ("A和C都有可能，但结合年龄最终选C。", "C", "statement"),
    ],
)
def test_language_of_commitment(answer, expected, reason):
    read = extract_choice(answer, "ABCDE")
    assert (read.letters, read.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("answer", "expected", "reason"),
    [
        # the stance of the clauses: for an option and against none
        ("四个选项里只有D说得对。知情同意是患者的权利。", "D", "stance"),
        ("E，毫无疑问。\n\n苯丙酮尿症需低苯丙氨酸饮食。", "E", "stance"),
        ("诊断考虑E（原发性醛固酮增多症）。\n\n依据：高血压伴低血钾。", "E", "stance"),
        (
            "✅ A. 血清铁降低\n❌ B. 血清铁升高\n❌ C. 铁蛋白升高\n❌ D. 总铁结合力降低\n❌ E. 饱和度升高",
            "A",
            "stance",
        ),
        ("除B外，其余各项均为库欣综合征的典型表现。", "ACDE", "stance"),
        ("唯有C不对，其余都是支气管扩张症的典型表现。", "ABDE", "stance"),
        ("前三项都对，D不对。\n早期并发症包括术后出血。", "ABC", "stance"),
        ("排除法：\nA ×\nB ×\nC ×\nD ×\n所以是E——关节痛属于次要表现。", "E", "statement"),
        (
            "A. 洛伐他汀——降TC\nB. 考来烯胺——降LDL-C\nC. 非诺贝特——降TG\n\n问降甘油三酯的药物，即非诺贝特。",
            "C",
            "stance",
        ),
        ("（A 对）复温\n（B 对）补液\n（E 错）热敷\n所以本题选前两项。", "AB", "stance"),
        ("全选。营养不良的原因包括摄入不足。", "ABCDE", "stance"),
        # and where it reads nothing
        ("✅ A. 血清铁降低\n❌ B. 血清铁升高\nC. 铁蛋白升高", None, "ambiguous letters: ['A', 'B', 'C']"),
        ("只有 D 不符合诊断标准，其余都符合。", None, "no option letter found"),  # may answer "不符合的是"
        (
            "A 急性期卧床 —— 正确\nB 大量补液 —— 错误\nC 监测血糖 —— 正确",
            None,
            "ambiguous letters: ['A', 'B', 'C']",
        ),
        ("首先想到的是B，但似乎更像C，两者的鉴别点相互矛盾，很难取舍。", None, "unresolved"),
        ("B（维生素B12）和D（叶酸）缺乏都会致贫，所以这道题两个选项都说得通。", None, "unresolved"),
        ("如果是成人，应选A；如果是儿童，应选D。", None, "no option letter found"),
        ("C选项最符合吗？还需要看有无发热。", None, "no option letter found"),
        ("正确答案包括B、", None, "no option letter found"),
        ("A 型血患者最常见", None, "no option letter found"),
        # forms of commitment the statements read
        ("Final choice: B (pancreatic head carcinoma).", "B", "statement"),
        ("All of the above except D.", "ABCE", "statement"),
        ("Correct: A, C, D (all except B).", "ACD", "statement"),
        ("選 A 與 C。", "AC", "statement"),
        ("RR间期绝对不等——心房颤动。\n👉 D", "D", "statement"),
        ("✓ 选 A（补液）\n✓ 选 C（减压）\n✗ B（止痛）", "AC", "statement"),
        (
            "最常见的是无热惊厥。\n\n选项：A 高热惊厥 B 手足搐搦 C 喉痉挛\n\n嗯……",
            None,
            "no option letter found",
        ),
        ("None of the listed options (A, B, C) matches; the correct option is missing.", None, "unresolved"),
        (
            "- [ ] A. 立即手术\n- [x] C. 胸腔闭式引流\n- [ ] B. 抗生素\n- [ ] D. 观察\n- [ ] E. 观察后穿刺",
            "C",
            "stance",
        ),
        ("Tick: A ✓  B ✗  C ✓  D ✓  E ✗", "ACD", "stance"),
        ("Hmm, the drug of choice is carbamazepine, option B. Phenytoin is second-line.", "B", "stance"),
        ("以下四项属于无菌技术原则：A、B、C、E；D项“48小时内可再用”是错误的。", "ABCE", "stance"),
        ("最可能的诊断：**急性心包炎**（选项 C）\n\n这与心肌梗死（A）的弓背向上抬高不同。", "C", "stance"),
        ("应选：①A ②B ③E\n\n少尿期的危险是高钾血症。", "ABE", "statement"),
        ("A through C are all correct; D and E are not.", "ABC", "verdict"),
        ("第一个（A）和最后一个（E）正确。", "AE", "verdict"),
        ("So the answers are A, C, D and E. Option B is protective, not a risk factor.", "ACDE", "statement"),
        ("B 或 E。", None, "hedge between options"),
        ("可能是 B？也可能是 E。我对这个知识点不是很有把握。", None, "hedge between options"),
        ("从症状上看像是B，但Murphy征阴性又不太支持。题干信息有限，无法给出确定答案。", None, "unresolved"),
        ("A和C都对，看你用哪个版本的指南。", None, "unresolved"),
        ("答案：B\n\n勘误：解析第二行“选项D”应为“选项E”，不影响最终答案。", "B", "statement"),
        ("下面看各选项：\nA. 肺功能表现为限制性通气功能障碍——", None, "no option letter found"),
        ("√A √B ×C √D √E\n\nC项是错误的。", "ABDE", "stance"),
        ("✔ A. 阿托品\nB. 新斯的明 — wrong\n✘ C. 毒扁豆碱\n✘ D. 碘解磷定\n✘ E. 氯解磷定", "A", "stance"),
        ("[B] 正确，[D] 正确，其余错误。", "BD", "stance"),
        ("结论先说：b、c、e。\n\nb. 血钙降低\nc. 手足搐搦", "BCE", "stance"),
        ("医学伦理学四大原则不含“互助原则”，因此E是不属于的那一项。", "E", "stance"),
        ("All of them — A through E are risk factors.", "ABCDE", "stance"),
        (
            "A. 氯丙嗪——抗精神病\nB. 碳酸锂——心境稳定剂\nC. 地西泮——抗焦虑\n\n治疗躁狂首选，所以是碳酸锂。",
            "B",
            "stance",
        ),
        ("Picked: **C** and **E**.", "CE", "statement"),
        ("我的判断是选项E“卡托普利”——因为它是ACEI。", "E", "statement"),
        ("答案：C\n\n评论区有人说应该选A，我觉得A的说法只适用于二度Ⅰ型，所以我还是坚持C。", "C", "statement"),
        ("选E。\n——题目的另一版本问首选检查，那时答案为A。", "E", "statement"),
        ("E显然不对。\n剩下A、B、C、D。\n目前还不能下结论，需要更多信息。", None, "unresolved"),
        (
            "选项B和选项E描述的都是正确的。如果只允许选一个，这道题本身可能出题有误。",
            None,
            "unresolved",
        ),
        ("A. 对\nB. 对\nC. 不对\nD. 不对", None, "conflicting verdicts: ['A', 'B']"),  # may answer "错误的是"
        (
            "选项A、C、E的描述都是正确的，而这是一道单选题。题目本身可能存在问题，请核对原题。",
            None,
            "unresolved",
        ),
        ("B和D都对，但题目是单选，无法只选一个。可能是出题时的疏漏。", None, "unresolved"),
        (
            "Option A is what WHO recommends, but C would be right if vomiting persists. I'd say it depends.",
            None,
            "unresolved",
        ),
        ("最接近的是A（急性心肌梗死）和E（主动脉夹层），但都不完全符合。题目可能有误。", None, "unresolved"),
        ("答案：E\n\n有读者反馈参考答案是D，我复核了一遍，仍维持E。", "E", "statement"),
        ("【答】C\n【解析】阿托品可致眼内压升高。", "C", "statement"),
        ("CE两项。\n\n心肌收缩力增强（C），并舒张支气管平滑肌（E）。", "CE", "stance"),
        ("题目问哪项属于烟碱样表现，所以是A“肌束颤动”。", "A", "statement"),
        ("A、B、C、D、E 均是护理措施。E表述为“注意保暖”而非“热水袋加温”，所以全部正确。", "ABCDE", "stance"),
        # a key the asker gave is reported speech
        ("我认为应该选D。\n\n不过你提供的参考答案是C，我认为那个答案有误。", "D", "statement"),
    ],
)
def test_language_of_the_fallbacks(answer, expected, reason):
    read = extract_choice(answer, "ABCDE")
    assert (read.letters, read.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("reasoning", "answer", "letters", "reason"),
    [
        ("选AB。", "属于青霉素类的是阿莫西林（A）和哌拉西林（B）。", "AB", "confirmed conclusion"),
        ("选BD。", "含sIgA——B正确；乳糖高——D正确。\n故A、C、E错误。", "BD", "confirmed conclusion"),
        (
            "选AB。",
            "阿莫西林（A）属于青霉素类；头孢呋辛（C）属于头孢菌素。",
            None,
            None,
        ),  # B is not named
        ("选AB。", "A和B我都拿不准，无法确定。", None, None),  # the answer leaves it open
        ("选D。", "", None, None),  # an empty answer shows the user nothing
        ("选项B。", "最常见的是子宫收缩乏力（B）。\n\n其次是胎盘因素（C）。", "B", "confirmed conclusion"),
        (
            "A、C、E。",
            "指标是：黑便增多（A）、血红蛋白下降（C）、在尿量足够的情况下BUN升高（E）。",
            "ACE",
            "confirmed conclusion",
        ),
        ("选项B。这个我真不确定。", "最常见的是子宫收缩乏力（B）。\n\n其次是胎盘因素（C）。", None, None),
        ("选B。", "首先分析A选项：嵌顿疝，可能性小。\n再看B选项：粘连性肠梗阻，", None, None),  # cut off
    ],
)
def test_a_reasoning_conclusion_the_answer_confirms(reasoning, answer, letters, reason):
    read = extract_choice(answer, "ABCDE", reasoning=reasoning)
    assert read.letters == letters
    if reason:
        assert read.reason == reason


def test_evidence_is_the_deciding_text():
    read = extract_choice("A项错误。\n答案：B\n更正：答案：D", "ABCD")
    assert read == Extraction("D", "statement", "答案:D")


def test_letters_are_sorted_and_deduplicated():
    assert extract_choice("答案：E、A、C、A", "ABCDE").letters == "ACE"


def test_multi_letters_on_a_single_answer_question_are_read_as_written():
    # whether several letters are allowed is the scorer's decision: "BC" simply does not equal "B"
    assert extract_choice("答案：B、C", "ABCD").letters == "BC"


def test_letters_in_the_reasoning_are_ignored():
    text = "<think>\n答案：A？不对，A是阳离子型。\n</think>\n\n非离子型更安全，答案：C"
    assert extract_choice(split_reasoning(text).answer, "ABCDE").letters == "C"
    truncated = "<think>\n我认为答案：A，再核对一下"  # reasoning never closed: no answer part
    assert extract_choice(split_reasoning(truncated).answer, "ABCDE") == Extraction(None, "empty answer")


def test_corpora_are_read_as_the_evaluation_reads_a_generation():
    """The corpus reading and medsft evaluate's reading of the same output agree, reasoning included."""
    rows = [row for corpus in DEV_CORPORA for row in load_corpus(corpus) if "</think>" in row.answer]
    assert len(rows) >= 40
    questions = [
        Question(
            "问题", {letter: row.option_texts.get(letter, "") for letter in row.options}, row.graded, "corpus"
        )
        for row in rows
    ]
    generations = []
    for row in rows:
        reasoning, answer, well_formed = split_reasoning(row.answer)
        generations.append(Generation(reasoning, answer, well_formed, False, 1, 1, row.answer))
    evaluated = [record["predicted"] for record in think_records(questions, generations)]
    assert evaluated == [read_answer(row).letters for row in rows]


_OPTIONS = {"A": "急性胆囊炎", "B": "急性胰腺炎", "C": "消化性溃疡穿孔", "D": "急性阑尾炎"}


@pytest.mark.parametrize(
    ("reasoning", "answer", "letters"),
    [
        ("淀粉酶升高，所以选B。", "该患者最可能的诊断为急性胰腺炎。", "B"),  # restated without a letter
        ("淀粉酶升高，所以选B。", "答案：C", "C"),  # the answer's own letter decides
        ("淀粉酶升高，所以选B。", "诊断需结合影像，无法确定。", None),  # declines
        ("淀粉酶升高，所以选B。", "可能是急性胰腺炎，也可能是急性胆囊炎。", None),  # hedges
        ("淀粉酶升高，所以选B。", "急性胰腺炎与急性胆囊炎均可出现上腹痛。", None),  # names two options
        ("淀粉酶升高，所以选B。", "本病以腹痛为主要表现。", None),  # restates nothing
        ("B还是A？不好说。", "诊断为急性胰腺炎。", None),  # the reasoning commits to none
        # letters in the answer: the reasoning is not read
        ("所以选B。", "选项分析：A项为早期表现，B项为晚期表现。", None),
    ],
)
def test_the_reasoning_is_read_only_when_the_answer_restates_its_conclusion(reasoning, answer, letters):
    read = extract_choice(answer, _OPTIONS, reasoning=reasoning)
    assert read.letters == letters
    if letters == "B":
        assert read.reason == RESTATED
    assert extract_choice(answer, "ABCD", reasoning=reasoning).letters == (
        None if letters == "B" else letters
    )


def test_more_options_than_five():
    assert extract_choice("答案：H", "ABCDEFGH").letters == "H"
    assert extract_choice("答案：H", "ABCDE").letters is None


@pytest.mark.parametrize("valid", ["", "ABCK", "abcd"])
def test_bad_option_letters_are_refused(valid):
    with pytest.raises(ValueError, match="valid option letters"):
        extract_choice("答案：A", valid)


def test_long_answers_stay_fast():
    import time

    answer = "A项错误，B超提示胆囊结石，维生素B12正常，" * 400 + "答案：C"
    started = time.perf_counter()
    assert extract_choice(answer, "ABCD").letters == "C"
    assert time.perf_counter() - started < 2.0


# --- the asked-for answer line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("分析……\n\n答案：C", "C"),
        ("**答案：AC**", "AC"),
        ("答案：A、C、E。", "ACE"),
        ("答案：Ｂ", "B"),
        ("答案：C\n注：有同学选A", None),  # a note after it: not the final line, the fallback reads it
        ("最终答案是C", None),
        ("答案：C或D", None),
        ("答案：", None),
    ],
)
def test_answer_line_is_read_strictly(answer, letters):
    assert answer_line(answer) == letters


def test_the_answer_line_decides_and_is_named():
    assert extract_choice("有同学选E，但A不对。\n\n答案：B", "ABCDE") == Extraction(
        "B", ANSWER_LINE, "答案:B"
    )
    assert extract_choice("答案：F", "ABCDE").reason == "invalid option 'F'"


# --- the fallback, one language class at a time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        # several letters, each bracketed, each named as an option, listed in English or in lowercase
        ("正确答案为（B）（D）。", "BD"),
        ("The answer is (a) and (c).", "AC"),
        ("应选选项B和选项E。", "BE"),
        ("B项和E项正确。", "BE"),
        ("选项B跟选项E都对。", "BE"),
        ("The correct answers are A, C, and D.", "ACD"),
        ("Answer: B and E", "BE"),
        ("答案：b、e", "BE"),
        ("B、E两项正确。", "BE"),
        ("B项、C项、E项三者均正确。", "BCE"),
        ("本题正确的有：选项B、选项E。", "BE"),
        ("acid is not an answer", None),
    ],
)
def test_multi_answer_letters_are_kept_whole(answer, letters):
    assert extract_choice(answer, "ABCDE").letters == letters


@pytest.mark.parametrize(
    "answer",
    [
        "答案：D\n\n注：有同学选B，混淆了二者。",  # someone else's answer
        "答案：D\n（原答案是A，已更正。）",  # an old answer key
        "答案：D。常见错误是C。",  # a common wrong choice
        "答案：D\n\n错选分析：选A者忽视了年龄；选C者混淆了诱因。",  # those who chose
        "答案：D\n\n更正：解析中“A项”应为“B项”（笔误）。",  # a corrected typo in the wording
        "答案：D\n\n注：若合并肾衰，也可选B。",  # a hypothetical alternative
        "答案：D\n\n(B also works in some settings.)",
        "Answer: D\n\nNote: some students choose A.",
    ],
)
def test_a_later_mention_that_is_no_commitment_leaves_the_answer(answer):
    assert extract_choice(answer, "ABCDE").letters == "D"


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("有同学选A，但正确答案是C。", "C"),  # reported, then the writer's own voice
        ("最终答案：E\n\n备注：网上流传的答案是A，不正确。", "E"),  # a key passed around
        ("答案：C、E\n\n注：本题容易漏选E，有的同学会多选A。", "CE"),  # mistakes others make
        ("这道题目的答案是C。", "C"),  # the writer's own question, not someone else's key
        ("根据教材，答案是C。", "C"),  # a source cited for the writer's own answer
        ("Some students choose B. The answer is C.", "C"),  # reported speech ends with its sentence
        ("答案：D\n\n很多人把本题与上一题（答案A）混淆。", "D"),  # another question's answer
        ("与上一题不同，本题答案是C。", "C"),
        ("答案可能是A，需要更多信息才能确定。", None),  # tentative, and called uncertain
        ("答案可能是A。", "A"),
        ("最可能是B，其次是C，无法完全确定。", None),  # a ranked second choice, and called uncertain
        ("C. 肾上腺素\n\n（题库给出的参考答案是A，但A仅用于轻度过敏反应。）", "C"),
        ("答案：B\n\n更正：经复核，正确答案为C。", "C"),  # the writer's own correction does count
        ("答案：B，也可选C。", None),  # an alternative in the answer's own sentence is a hedge
        ("如果是急性期，选A；如果是慢性期，选C。", None),  # consequences of conditions, no choice
        ("答案：C\n\n在没有C的情况下，可以选择D。", "C"),  # a circumstance, not this case
        ("在这种情况下，应选C。", "C"),  # this case
        ("B、C都对，但只能选一个的话难以决定。", None),  # the choice is said not to be made
        ("假设患者有糖尿病，那么选C；否则选D。", None),  # otherwise: still a condition
        ("最终答案是C。\n\n再提醒一次：选A是最常见的错误。", "C"),  # a choice called a mistake
        ("答案：C。本题的干扰项是A。", "C"),  # a distractor named on the same line
        ("答案：B\n\n链接：本题与2018年真题第45题类似，那道题选E。", "B"),  # another question's answer
        ("The answer is C.\n\nA frequent error is to select E.", "C"),
        ("答案：D\n\n有网友指出本题应选C，但该观点与教材不符。", "D"),  # 本题 inside the reported clause
        ("有同学选A但正确答案是C。", "C"),
        ("所以选C。\n\n同类题中问“最常见病因”时答案是A。", "C"),  # a similar question's answer
        ("答案：B（不确定）", None),  # flagged as uncertain where it stands
        ("Correct: A, C, E.", "ACE"),
        ("A、B、D、E均可排除，剩下C。", "C"),
        ("答案：B。错误率最高的选项是E。", "B"),
        ("本题问说法错误的是哪项，错误的选项是A。", "A"),  # asked for the wrong one: the answer
        ("答案：D\n\n※ 另有观点认为应选E，但缺乏循证依据。", "D"),  # another view, in a note
        ("首先排除A，因为A项会加重低钾。因此B是最合理的选择。", "B"),  # 因为 is no 为
        ("结合杂音特点，最可能是室间隔穿孔，即选项A。", "A"),
    ],
)
def test_commitment_reported_speech_hedges_and_corrections(answer, letters):
    assert extract_choice(answer, "ABCDE").letters == letters


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("答案：C\n\n本题的干扰项是A。", "C"),  # an inference in a later line is commentary
        ("答案：A\n\n（大多数考生选C。）", "A"),  # someone's choice in brackets
        ("答案：B\n\n另：历年真题中类似题目的标准答案为A，请勿混淆。", "B"),  # a note
        ("答案：C\n\n（上一版回答中误写为D，现已更正。）", "C"),  # the letter written by mistake
        ("答案：D\n\n修正：刚才看错了题目，正确答案为B。", "B"),  # a correction does replace it
        ("答案：A\n\n答案：B", "B"),  # a new declaration outside a note
        ("初步考虑为A。\n进一步检查后，诊断应为C。", "C"),  # after a mere inference the final one wins
    ],
)
def test_after_a_declared_answer_only_a_correction_replaces_it(answer, letters):
    assert extract_choice(answer, "ABCDE").letters == letters


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("$\\boxed{C}$", "C"),
        ("\\[\n\\boxed{\\text{B、D}}\n\\]", "BD"),
        ("最终答案：\\(\\boxed{\\text{E. 手术}}\\)", "E"),
        ("**最可能的诊断：C. 急性胰腺炎**", "C"),
        ("**首选药物：A**", "A"),
        ("**检查：B超示胆囊结石**", None),  # a label whose letter starts a word
        ("D选项最符合。", "D"),
        ("选项D最符合该患者的表现。", "D"),
        ("排除A、B、E，只剩C和D。", "CD"),
        ("除B外都对。", "ACDE"),
        ("除B项外，其余四项均正确。", "ACDE"),
        ("**鉴别诊断：**A项所述的胆囊炎也可有上腹痛。", None),  # a label discussing an option
        ("除B外均错误。", "B"),
    ],
)
def test_forms_qwen3_writes(answer, letters):
    assert extract_choice(answer, "ABCDE").letters == letters


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("答案：A/C/D。", "ACD"),  # three or more joined by slashes list them
        ("答案：A/C", None),  # two joined by a slash are a hedge
        ("答案：A/C/D或E", None),  # a hedge word anywhere in the run
        ("正确答案是 ade。", "ADE"),  # a lowercase run after an answer keyword
        ("答案是 acid。", None),  # a word, not letters
        ("The answer is bad.", None),  # letters out of order: a word
        ("Answer: ace inhibitors are first line.", None),  # a word that goes on
        ("I would pick both B and D.", "BD"),
        ("正确答案只有E。", "E"),
        ("The answer is only B.", "B"),
        ("C. 手术\n\n其他选项分析：\n- A. 观察：延误病情\n- B. 抗生素：非首选\n- D. 放疗：不适用", "C"),
        ("其他选项：\n- A错误\n- B错误\n\n故选C。", "C"),  # the analysis ends where the list ends
        ("**受累血管：B（大脑中动脉）**", "B"),
        ("鉴别要点：A（发热）与B（皮疹）。", None),  # a label that discusses options
        ("Option D fits the history best.", "D"),
        ("选项E与影像学表现最为吻合。", "E"),
        ("B, C and E are ruled out, leaving A and D.", "AD"),
        ("After eliminating the others, we are left with C.", "C"),  # "the others" are options
        ("两个选项都说得通：选B或者选C。", None),  # either would do: no choice
        ("Choose A or choose C; both are plausible.", None),
        ("A、C都对。", "AC"),  # a verdict on both is no hedge
        ("答案：C，因为口服和静脉都可以。", "C"),  # "either would do" about something other than options
        ("That leaves C unexplained.", None),  # "leaves" without an elimination
        ("说法错误的是：\nC. 青霉素过敏者可用", "C"),  # asked for the wrong statement: no analysis heading
    ],
)
def test_lists_analysis_labels_best_fit_and_either_way_hedges(answer, letters):
    assert extract_choice(answer, "ABCDE").letters == letters


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        # ordinal option lists: a verdict on each named option
        ("本题第A、D项的表述是正确的。", "AD"),
        ("第A项和第D项的说法正确。", "AD"),
        ("第B、C项的表述是错误的。", None),
        ("第A、D项的表述是正确的吗？", None),
        ("第A、C项的表述都是错误的，其余正确。", "BDE"),  # a complement written after the named ones
        # option items after a keyword are all the answer; a sentence about other options ends the list
        ("应选：A. 限盐；C. 控制体重；D. 戒烟限酒。\n\nB、E 两项属于药物治疗。", "ACD"),
        ("应选：\nA. 限盐\nC. 控制体重\n\nB、E两项属于药物治疗。", "AC"),
        ("应选：A. 阿司匹林；B. 华法林：错误；C. 氯吡格雷。", None),  # items that judge options
        ("答案：A. 阿托品（解除痉挛）。", "A"),
        # a keyword inside an option item reaches no letter on the next item's line
        ("A. 阿司匹林：错误。\nB. 华法林：但需要考虑题目问的是\nC. 肝素", None),
        ("A. 普萘洛尔——慎用\nB. 氨氯地平——首选\nC. 氢氯噻嗪——可用\n\nB选项最符合。", "B"),
        ("各选项：\nA. 可乐定\nB. 普萘洛尔\n\n正确答案是\nB. 普萘洛尔", "B"),  # a label, not an item
        # informal endings commit; a question or a guess the writer doubts does not
        ("所以是 D 啦～", "D"),
        ("就是C啦😊", "C"),
        ("多选题：就是A、C、E啦～", "ACE"),
        ("是C吧？", None),
        ("我猜是B吧……其实没什么把握。", None),
        # a key reported with its source, or disputed by the writer, is no commitment
        ("参考答案：C（来自题库）", None),
        ("参考答案：C（来自题库）。\n\n但我认为这个答案有争议，可能应该是B，也可能是E。", None),
        ("参考答案：A。我不同意这个答案，本例应选B。", "B"),
        ("答案：B\n\n此题答案没有争议。", "B"),
        ("答案：A。\n\n注：有人认为这个答案有争议。", "A"),  # someone else's dispute
        ("参考答案：D", "D"),  # the writer's own answer under that label
        ("参考答案为A（据人卫版教材）。", None),  # a reference answer with its source
        ("答案：B（据《内科学》第9版）", "B"),  # the writer's answer citing a book
        ("选C，有争议的是D。", "C"),
        # two letters each offered as possible
        ("可能是C也可能是D。", None),
        ("A可能是早期表现，C也可能出现，但本题答案是B。", "B"),
    ],
)
def test_ordinal_lists_items_informal_endings_and_disputes(answer, letters):
    assert extract_choice(answer, "ABCDE").letters == letters


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        # conclusion markers before a bare letter
        ("【结论】C", "C"),
        ("…符合二尖瓣狭窄 —— B。", "B"),
        ("A——主动脉瓣关闭不全\nB——二尖瓣狭窄\n题干未给出杂音部位。", None),  # a dash mid-list
        ("典型体征是麦氏点压痛，E 无疑。", "E"),
        ("C无疑是错误的说法。", None),
        # the one option that fits; letters judged together
        ("唯有 C 项“甘露醇”属于渗透性利尿剂。", "C"),
        ("只有 D 不符合诊断标准。", None),
        ("仅 A 一项正确。", "A"),
        ("正确的只有 B、D 两项。", "BD"),
        ("正确答案包括 A、C 和 E。", "ACE"),
        ("正确答案包括B、", None),  # a list cut off
        ("本题中BCE三项是正确做法。", "BCE"),
        ("对照选项，AC 两项符合要求，B（补液）和D（禁食）均不符合。", "AC"),
        ("选项B（低钾血症）和选项E（碱中毒）都属于常见并发症。", "BE"),
        ("D、E属于二级预防。", None),  # one class named, no judgement
        # letter ranges
        ("A～C均为一级预防措施，正确；D、E不选。", "ABC"),
        # a per-option judgement list, read only with a summary that commits to it
        ("A 卧床 —— 正确\nB 补液 —— 错误\nC 监测 —— 正确\n判为正确的即为答案。", "AC"),
        ("A 卧床 —— 正确\nB 补液 —— 错误\nC 监测 —— 正确", None),
        ("A 卧床 —— 正确\nB 补液 —— 错误\n五个选项均正确，全选。", None),
        ("| 选项 | 判断 |\n|---|---|\n| A | ✔ |\n| B | ✘ |\n| C | ✔ |\n\n表中标✔的即为正确选项。", "AC"),
        # items listed under a label end where a sentence about other options begins
        ("应选：\nA. 吸氧；\nC. 硝酸甘油；\n\nB项禁用；E项不主张。", "AC"),
        # the choice left to a source, or declined
        ("按旧版答案可以是AC；若按新版答案则为ACD。两个版本各有依据，以哪个为准看考试。", None),
        ("答案是B。两种观点各有道理，但按教材应选B。", "B"),
        ("| 情形 | 推荐 |\n| 低危 | 观察（A） |\n| 高危 | 手术（D） |\n信息不足，难以唯一确定。", None),
    ],
)
def test_conclusion_markers_prose_lists_judged_lists_and_deferred_choices(answer, letters):
    assert extract_choice(answer, "ABCDE").letters == letters


COMBINATIONS = {"A": "Ⅰ+Ⅱ", "B": "Ⅰ+Ⅲ", "C": "Ⅱ+Ⅳ", "D": "Ⅰ+Ⅱ+Ⅲ"}


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("Ⅰ和Ⅲ正确。", "B"),  # mapped through the option texts
        ("答案：Ⅱ、Ⅳ", "C"),
        ("I、II、III正确", "D"),  # ASCII numerals are numerals, never the option letter I
        ("答案：I、II、III", "D"),  # also on an answer line
        ("Ⅰ、Ⅲ正确，对应选项B。", "B"),
        ("Ⅰ、Ⅱ、Ⅲ三项说法均正确。", "D"),
        ("Ⅰ和Ⅲ是正确的，Ⅱ是错误的。", "B"),
        ("Ⅰ正确，Ⅳ错误。", None),  # no option is that combination
    ],
)
def test_numbered_statement_combinations_map_to_their_option(answer, letters):
    assert extract_choice(answer, COMBINATIONS).letters == letters


def test_numerals_without_option_texts_name_no_letter():
    assert extract_choice("Ⅰ、Ⅲ正确", "ABCD").letters is None
    assert extract_choice("I、III正确", "ABCDEFGHIJ").letters is None


# --- corpus files of both schemas -------------------------------------------------------------------------


def test_both_corpus_schemas_are_read(tmp_path):
    corpus = tmp_path / "answer_corpus_other.jsonl"
    rows = [
        {
            "id": "x1",
            "options": "ABCD",
            "multi": False,
            "response": "答案：C",
            "gold_reading": "C",
            "class": "a",
        },
        {
            "id": "x2",
            "options": {"A": "甲", "B": "乙", "C": "丙"},
            "multi": True,
            "response": "答案：CA",
            "gold_reading": "AC",
            "class": "b",
        },
        {
            "id": "x3",
            "options": ["甲", "乙"],
            "multi": False,
            "response": "无法确定",
            "gold_reading": "",
            "class": "b",
        },
        {"answer": "答案：B", "options": "ABCD", "expected": "B", "kind": "a", "set": "design"},
    ]
    corpus.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    read = load_corpus(corpus)
    assert [(row.id, row.options, row.graded, row.kind) for row in read] == [
        ("x1", "ABCD", "C", "a"),
        ("x2", "ABC", "AC", "b"),
        ("x3", "AB", "", "b"),
        ("4", "ABCD", "B", "a"),
    ]
    agreement = measure(read)
    assert (agreement.share, agreement.by_class) == (1.0, {"a": (2, 2), "b": (2, 2)})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1: not valid JSON"),
        ('{"id": 1, "options": "ABCD", "response": "答案：C"}', "missing field 'gold_reading'"),
        ('{"id": 1, "options": "AB9", "response": "答案：C", "gold_reading": "C"}', "`options` must be"),
        ('{"id": 1, "options": "ABCD", "response": "答案：C", "gold_reading": "X"}', "graded reading"),
        ("[1]", "expected an object"),
    ],
)
def test_a_bad_corpus_row_is_refused_in_one_line(tmp_path, line, message):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(MedsftError, match=message):  # AnswerCorpusError, or the JSONL reader's JsonlError
        load_corpus(corpus)


def test_grader_agreement_command_lists_disagreements(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {
            "id": "ok",
            "options": "ABCD",
            "multi": False,
            "response": "答案：C",
            "gold_reading": "C",
            "class": "x",
        },
        {
            "id": "off",
            "options": "ABCD",
            "multi": False,
            "response": "答案：B",
            "gold_reading": "D",
            "class": "y",
        },
    ]
    corpus.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows), encoding="utf-8")
    assert grader_agreement.main(["--corpus", str(corpus)]) == 0
    printed = capsys.readouterr().out
    assert "1/2 agree (50.0%); wrong letters read: 1" in printed
    assert "x                1/1 (100.0%)" in printed and "y                0/1 (0.0%)" in printed
    assert "✗ off [y] graded 'D', read 'B' (answer line)" in printed
    missing = tmp_path / "absent.jsonl"
    assert (
        grader_agreement.run_command("grader-agreement", grader_agreement.main, ["--corpus", str(missing)])
        == 2
    )


def test_reason_rule_drops_the_details():
    assert (
        reason_rule(extract_choice("A正确，B正确，D正确，C错误。", "ABCD").reason) == "conflicting verdicts"
    )
    assert reason_rule(extract_choice("答案：F", "ABCDE").reason) == "invalid option"
    assert reason_rule("statement") == "statement" and reason_rule(ANSWER_LINE) == ANSWER_LINE


def test_a_missing_corpus_is_refused_in_one_line(tmp_path):
    with pytest.raises(AnswerCorpusError, match="absent.jsonl: not readable"):
        load_corpus(tmp_path / "absent.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(AnswerCorpusError, match="no graded answers"):
        load_corpus(empty)
