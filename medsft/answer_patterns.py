"""The language the answer grader reads (medsft.answer_choice): how option letters are written, and the
words and patterns of commitment, reported speech, hedges, conditions, corrections and notes, in Chinese and
English. Patterns only; the reading rules that use them are in medsft.answer_choice."""

from __future__ import annotations

import re

MULTI_SEP = r"[ \t]*(?:,?[ \t]*\band\b|[、,&+]|和|及|与|以及|跟|同)[ \t]*|[ \t]+"
HEDGE_SEP = r"[ \t]*(?:/|或者|或是|或|还是|\bor\b)[ \t]*"
# at most ten letters (A-J), each with its separator: a longer run is no choice, and a bound keeps it linear
GROUP = rf"(?<![A-Za-z0-9])[A-Ja-j](?:(?:{HEDGE_SEP}|{MULTI_SEP})?[A-Ja-j]){{0,11}}"
HEDGE_IN_GROUP = re.compile(HEDGE_SEP)
SLASH = re.compile(r"[ \t]*/[ \t]*")
WORD_STARTS = "型超族组类级区段链群带波肝期字线管药点环帽端片胶座股峰柱轴号室"
# A letter that starts a word (A型, B超, C反应蛋白, D-二聚体, B12, CT) is no choice.
BOUNDARY = (
    r"(?![A-Za-z0-9\-+′])"
    rf"(?![ \t]*(?:[{WORD_STARTS}]|蛋白|细胞|受体|因子|抗原|抗体|病毒|反应|淋巴|超声))"
)
CLOSERS = r"[ \t)\]】」』”’\"'>》]*"
# A letter after these names a vitamin, type or group, not an option: "vitamin C", "type A", "维生素C".
NAMING_WORD = re.compile(
    r"(?:维生素|血型|因子|导联"
    r"|(?i:\b(?:vitamin|type|hepatitis|group|class|grade|stage|phase|factor|lead|wave|zone)))[ \t]*$"
)
NOT_A_CHOICE_WORD = {"is", "are", "was", "and", "or", "because", "since", "as", "which", "would", "should"}
NOT_A_CHOICE_WORD |= {"seems", "fits", "matches", "best", "correct", "right", "here", "only", "also", "for"}

# words of a label that discusses options rather than naming the answer: "鉴别要点：", "其他选项："
DISCUSSING = "鉴别|排除|错误|不|其他|其余|其它|干扰|易错|分析|误"
LEFT_AFTER_ELIMINATION = r"(?:leaving|leaves|(?:are|is|we're|i'm)\s+left\s+with)"
ELIMINATING = re.compile(r"(?i:rul(?:e|ed|ing)\s+out|eliminat|exclu(?:de|ded|ding|sion)|remov)")
LABEL_HEADS = "诊断|处理|治疗|措施|检查|药物|用药|方案|病因|原因|机制|选择|结论|判断|选项|首选|结果|答"
STRONG_KEYWORD = "|".join(
    [
        r"答案",
        r"(?<![回解作])答(?=[ \t]*:)",
        r"(?<=【)答(?=】)",  # "【答】C"
        r"(?<![回解作问])答(?=[ \t]*(?:选项)?[ \t]*[A-J](?![A-Za-z0-9]))",  # "所以本题答C"
        r"正确的?(?:选项|选择)",
        r"最佳(?:选项|选择)",
        r"选择|选(?!项)|挑选?",  # "所以挑 E"
        r"(?:首先|首选|优先|最先)考虑(?:为|是)?",  # "首先考虑 B"
        r"应(?:该|当)?(?:是|为|选择?)",
        r"我(?:认为|觉得|选择?|倾向于选?|的选择)",
        r"的(?:选项|选择)?(?:是|为)",
        r"(?:正确|对)的(?:选项|答案)?(?:有|包括)",  # "正确的有：A、C"
        r"(?:正确|对)的(?=[ \t]*(?:只有|仅有|唯有|仅|只|就是))",  # "正确的只有 C 和 E 两项"
        r"的(?:选项|答案)?(?:有|包括)(?=[ \t]*:)",  # "选项中符合一般规律的有：B、C、E"
        r"(?:符合|属于|满足)[^,，。.;:\n]{0,12}?的(?:选项|答案)?(?:有|包括)",  # "符合题意的有 A和D"
        r"选项中[^,，。.;:\n]{0,12}?的(?:是|为|有|包括)",
        r"最(?:佳|合适|恰当|合理|正确|可能|符合题意|适宜|有效|准确)[^,，。.;；:\n]{0,8}?(?:是|为)",
        r"首选[^,，。.;；:\n]{0,6}?(?:是|为)",
        r"而是",
        r"(?:判断|结论)(?:是|为)",  # "我的判断是选项E"
        r"(?:不正确|错误|不恰当|不妥|不合理)的(?:做法|说法|选项|描述|叙述|措施|一项)?(?:是|为)",  # asked for
        r"即(?:为|是)?",  # "…，即选项A"
        r"(?:只|仅|就)剩(?:下|余)?(?:的)?|剩(?:下|余)(?:的)?(?:只有|仅有|就是|只能是)?",  # after elimination
        r"对应(?:的)?(?:选项|答案)?",  # a combination of numbered statements mapped to its option
        # a label with a colon opening a line: "最可能的诊断：C. …", "首选治疗：B"
        # (not a label that discusses options: "鉴别诊断：A项…", "排除的选项：B")
        rf"(?m:^)[ \t]*(?:[-#>•][ \t]*)*(?:(?:(?!{DISCUSSING})[\u4e00-\u9fff]){{0,10}}(?:{LABEL_HEADS})"
        r"|(?:最|首选|最终|正确)[\u4e00-\u9fff]{0,10})"
        r"(?=[ \t]*:[ \t]*[A-J](?![ \t]*(?:选项|项)))",
        # any label whose whole value is a letter with its option text: "致病菌：A（金黄色葡萄球菌）"
        rf"(?m:^)[ \t]*(?:[-#>•][ \t]*)*(?:(?!{DISCUSSING})[\u4e00-\u9fff]){{1,10}}"
        r"(?=[ \t]*:[ \t]*[A-J][ \t]*(?:\([^()\n]{1,30}\)|[.、][^\n:,;。()]{1,30})?[ \t]*[。.]?[ \t]*(?m:$))",
        r"(?i:\b(?:the\s+)?(?:(?:final|correct|right|best|my)\s+)*answers?\b)",
        r"(?i:\b(?:final|my)\s+(?:choice|pick|selection)\b)",
        r"(?i:\b(?:correct|right|best)\s+(?:options?|choices?)\b)",
        r"(?i:\b(?:correct|right|true)\s+(?:ones|statements)\b)",  # "So the correct ones are B and C"
        r"(?i:\bcorrect(?=[ \t]*:))",  # "Correct: A, C, E"
        r"(?i:\b(?:choose|pick|select|go\s+with)\b)",
        rf"(?i:\b{LEFT_AFTER_ELIMINATION}\b)",  # only in a sentence that eliminates
        # "…, which corresponds to option D": the conclusion named as its option
        r"(?i:\bcorrespond(?:s|ing)?\s+to(?=\s+(?:the\s+)?(?:option|choice|answer)\b))",
        r"(?i:\b(?:it|this|that)(?:'s|\s+is|\s+must\s+be|\s+would\s+be|\s+should\s+be)\b)",
        r"(?i:\b(?:ans|final|selected|selection|chosen|choice|picked|pick)(?=[ \t]*:))",  # "ans: A"
        r"(?:还是|仍然|依然|仍)?(?:坚持|维持)(?:选择?|原答案)?",  # "所以我还是坚持C", "仍维持E"
    ]
)
# These commit only when the letter ends the sentence or clause: "故C。", "诊断为B。", "diagnosis is B."
WEAK_KEYWORD = (
    r"故|因此|所以|因而|综上所述|综上|结论|(?<=【)判断(?=】)|(?<![不并])是|(?<![不并因认作成以称])为"
    r"|(?i:\b(?:is|therefore|thus|hence|so)\b)"
    r"|→|⇒|=>|->"  # a conclusion drawn with an arrow: "A对，B错，C对 → AC"
    # a dash closing the answer: "——A。"
    r"|—{1,2}(?=[ \t]*[A-J](?:(?:[、,&+]|和|及|与)?[A-J])*[ \t]*[。.!]?\s*$)"
)
# informal endings after an answer: "所以是 D 啦～", "就是C吧", "选B哦😊"
PARTICLES = r"(?:啦|吧|呀|哦|喔|噢|哈|嘛|咯|哟|呗|哇|了)"
EMOJI = "\U0001f300-\U0001faff\u2600-\u27bf"
STRICT_END = (
    rf"(?=[ \t)\]】」』”’\"']*(?:“[^”\n]{{1,20}}”)?{PARTICLES}*[ \t~…]*(?:$|[。.,;!\n~…—{EMOJI}]|项))"
)
CONNECTOR = (
    r"(?:[ \t\n:=>\-—–#\"'“‘「『【\[(<《)\]】」』”’》]|(?<=\n)\d{1,2}[.、)]"  # "…包括：\n1. A、…"
    r"|应该|应当|应|就|当然|才|仍然|仍|还是|则|即|均|都|也|可能|最可能|肯定|显然|一定|是|为|选择|选|选项|答案"
    r"|只有|仅有|唯有|只是|仅是|只能是|唯一(?:的)?|只|仅|包括|包含"  # "正确答案只有D": the one answer
    r"|(?i:options?|choices?|letters?|is|are|would\s+be|should\s+be|must\s+be|will\s+be|clearly|definitely"
    r"|only|just|both|all\s+of|us\s+with|here|there))"
)
STATEMENT = re.compile(
    rf"(?P<key>{STRONG_KEYWORD})(?P<conn>{CONNECTOR}{{0,8}}?)(?P<group>{GROUP}){BOUNDARY}"
    rf"|(?P<weak>{WEAK_KEYWORD})(?P<wconn>[ \t,:】\]]*(?:选项|(?i:option|choice))?[ \t]*)"
    rf"(?P<wgroup>[A-J](?:(?:{MULTI_SEP})?[A-J]){{0,9}}){BOUNDARY}{STRICT_END}"
)

VERDICT_ZH = re.compile(
    # not in the middle of a list ("选项B、C均正确" is read from 选项, never from C)
    r"(?<![A-Ja-j]、)(?:(?<![A-Za-z0-9\u4e00-\u9fff])|(?<=[故即则而仅有此以见知第])|(?=选项|答案)"
    # letters marked as options ("本题A、D项…", "因此C选项…") stand as options after any word
    # ("本题A、D项…", "ABD三项…", "因此C选项…")
    r"|(?<![A-Za-z0-9])(?=[A-J](?:[ \t]*(?:[、,和及与][ \t]*)?[A-J])*[ \t]*[一两三四五六]?(?:项|选项))"
    # as do several letters judged together: "题目给出的A、B、C、D均为…，正确"
    r"|(?<![A-Za-z0-9])(?=[A-J](?:[ \t]*[、,和及与][ \t]*[A-J])+[ \t]*(?:均|都)))"
    rf"(?:选项|答案)?[ \t]*[(\[【「\"“]?(?P<group>{GROUP})[)\]】」\"”]?[ \t]*[.:、]?[ \t]*"
    r"(?:\([^()\n]{1,20}\))?[ \t]*(?:选项|项)?[ \t]*(?:“[^”\n]{1,20}”)?[ \t]*"  # its text: D项“阿托伐他汀”
    r"(?:[一两三四五六](?:项|者|个选项|个))?[ \t]*"
    r"的?(?:说法|描述|叙述|表述)?[ \t]*"
    # what it is compared with: "选项D与题干描述最为吻合"
    r"(?:(?:与|和|跟|同)[^。.,;:!?\n不非未没A-J]{1,16}?)?"
    # what they all are, then the verdict: "A～D均为传导系统组成，正确"
    r"(?:(?:均|都)(?:为|是)[^。.,;:!?\n不非未没错]{1,16}?,[ \t]*)?"
    r"(?:均|都|也|才|是|为|最为|较为|全部|全都|全|皆)*[ \t]*"
    r"(?P<claim>正确答案|最佳答案|正确选项|最佳选项|正确|对|符合题意|符合|最佳|首选|当选|入选|无疑|毋庸置疑"
    # fitting a class counts for letters judged together ("AD 两项符合规定", "A、D都属于手术指征"); one
    # letter's class alone ("D、E属于二级预防") is a description, read only after "only" (VERDICT_ONLY)
    r"|(?:(?<=[都均皆])|(?<=[两三四五六]项))(?:符合|属于|满足)[^。.,;:!?\n]{0,8}?"
    r"|最(?:为)?(?:符合|恰当|合适|合理|准确|贴切|适宜|可能|相符|吻合|一致|匹配|契合)[^。.,;!?\n]{0,16}?)"
    r"的?(?:答案|选项|选择|说法|描述|叙述|表述|措施|做法|方法)?(?=[ \t]*(?:$|[。.,;:!?)\n]|因为))"
)
# "只有 D 符合Ⅲ型超敏反应", "唯有 C 项“甘露醇”属于渗透性利尿剂": the one option that fits
VERDICT_ONLY = re.compile(
    rf"(?:只有|仅有|唯有|仅)[ \t]*(?:选项)?[ \t]*(?P<group>{GROUP}){BOUNDARY}[ \t]*(?:选项|项)?[ \t]*"
    r"(?:“[^”\n]{1,20}”)?[ \t]*(?:才)?(?P<claim>(?:符合|属于|满足)[^。.,;:!?\n]{0,10}?)"
    r"(?=[ \t]*(?:$|[。.,;:!?)\n]|因此|所以|故))"
)
VERDICT_EN = re.compile(
    r"(?i:(?:options?|choices?|answers?)[ \t]+)?\(?"
    rf"(?P<group>{GROUP})\)?[ \t]+(?i:is|are|was|seems\s+to\s+be|would\s+be)[ \t]+"
    r"(?i:(?:both|all|the)[ \t]+)?"
    r"(?P<claim>(?i:(?:most[ \t]+)?(?:correct|right|best|true|appropriate)"
    r"(?:[ \t]+(?:answer|option|choice|one)s?)?|answer))\b"
)
# "Option A fits best with…", "Choice B matches the findings most closely", "C best explains…"
FIT = r"(?:fits|matches|explains|describes|corresponds\s+to|accounts\s+for)"
VERDICT_FIT_EN = re.compile(
    rf"(?i:(?:options?|choices?|answers?)[ \t]+)?\(?(?P<group>{GROUP})\)?[ \t]+"
    rf"(?P<claim>(?i:(?:best|most\s+closely)[ \t]+{FIT}\b|{FIT}\b[^.;!?\n]{{0,50}}?"
    r"\b(?:best|most\s+closely|most\s+(?:accurately|completely))\b))"
)
REJECTION = re.compile(
    r"(?:不选|不应选|不能选|不可选|排除了?|并非|而非|不是|(?i:\bnot\b))"
    rf"[ \t]*(?:选项)?[ \t]*(?P<group>{GROUP}){BOUNDARY}"
)
# the same, the letters first: "所以A不能选", "B项可以排除"
REJECTION_AFTER = re.compile(
    rf"(?<![A-Za-z0-9])(?P<group>{GROUP}){BOUNDARY}[ \t]*(?:选项|项)?[ \t]*(?:也|就|则|都|均)?[ \t]*"
    r"(?:不能选|不应选|不可选|不该选|不选|(?:可以|可|应)?排除|被排除)"
)
# A letter's option text after it, as a gloss: "C（肺血栓栓塞症）最符合", "首先考虑 B（急性肾炎）". Not a
# bracket that says where the letters come from, flags them, judges them or names another letter.
OPTION_GLOSS = re.compile(
    r"(?<![A-Za-z0-9])(?P<letter>[A-J](?![A-Za-z0-9])[ \t]*(?:选项|项)?)[ \t]*\((?P<gloss>[^()\n]{1,30})\)"
)
# the same after a dot, mid-sentence, right before a best-fit verdict: "综合来看，C. 肺血栓栓塞症最符合"
DOT_GLOSS = re.compile(
    r"(?<=[,;:\u4e00-\u9fff])[ \t]*(?P<letter>[A-J])\.[ \t]*[\u4e00-\u9fff]{2,12}?"
    r"(?=[ \t]*(?:最(?:为)?(?:符合|恰当|合适|贴切|吻合)|当选|入选))"
)
NOT_A_GLOSS = re.compile(
    r"(?<![A-Za-z0-9])[A-Ja-j](?![A-Za-z0-9])|来自|来源|出自|引自|摘自|源自|转自|抄自|据|确定|存疑|待定|把握"
    r"|正确|错|对|不符|可能|也|或|亦|首选|最|答|选|注|见|[?:]"
    r"|(?i:\b(?:from|source|per|unsure|uncertain|sure|correct|wrong|incorrect|true|false|best|also|or)\b)"
)
# A closing line of letters only, the answer's last: "BE", "A和B", "ACD"
FINAL_LETTERS = re.compile(
    r"(?:^|\n)[ \t]*(?:(?:👉|→|⇒|=>|->)[ \t]*)?[(\[【「]?[ \t]*"
    r"(?P<group>[A-J](?:(?:[ \t]*(?:[、,&+]|和|及|与)[ \t]*|[ \t]+)?[A-J]){0,9})"
    r"[ \t]*[)\]】」]?[ \t]*[.。]?\s*$"
)
# A closing sentence that leaves the choice open between letters: "A和C都有可能",
# "B和E好像都错…我现在没法确定", "A和B之间关系比较复杂，我先分析到这里"
UNRESOLVED = re.compile(
    r"(?:都|均|也都)(?:有)?可能(?!是)|(?:没法|没办法|无法|难以|很难|不能|不好)(?:完全)?(?:确定|判断|决定|取舍|抉择|给出)"
    r"|(?:没法|没办法|无法|不能)[^。.!?;\n]{0,8}?(?:选出|给出?(?:你|您)?(?:一个)?(?:确定|明确|唯一)的?答案)"
    r"|给不出|(?:没法|无法|不能)只?(?:定|选)(?:出)?(?:一个|下来)"
    r"|(?:都|均)(?:可以)?(?:算对|说得通|讲得通|成立)|(?:都|均)可以(?:作为|是|选)|取决于"
    r"|拿不准|(?:先|暂且|暂时)?分析到这里|先到这里|(?i:\b(?:can(?:no|')t|unable\s+to)\s+(?:decide|tell|determine)\b)"
)

# a closing sentence about two options without naming them: "两个选项都说得通", "两种说法我都见过"
TWO_OPTIONS = re.compile(
    r"两个(?:选项|答案)|两个都|两项都|两者|二者|两种(?:说法|观点|答案|理解)|哪一个|哪个|(?i:\bboth\b)"
)
# A closing sentence that leaves the choice between answers to a source:
# "两个版本各有依据，要看你的考试以哪个为准"
DEFERRED = re.compile(
    r"各有(?:依据|道理|根据|出处)|以哪(?:个|一?种|一?版|一?本)为准|(?:答案|说法)不一致|存在分歧"
    r"|要看具体|视具体情况|没有(?:绝对)?(?:的)?唯一(?:的)?(?:正确)?答案"
    r"|以(?:你|您)[^。.!?;\n]{0,12}?为准|看(?:你|您)?(?:用|采用|使用|依据|按)?哪(?:个|一|一个)?(?:版本|教材|指南)"
    r"|哪(?:个|一个|项|一项)[^。.!?;\n]{0,12}?(?:需要|要|得)(?:看|根据|结合)"
    r"|(?:需要|请)(?:您|你)?(?:确认|核对|对照)[^。.!?;\n]{0,12}?(?:版本|教材|题库|答案)"
    r"|(?i:\b(?:depends\s+on\s+(?:which|your)\s+(?:source|textbook|exam)|it\s+depends\b))"
)
# A closing sentence that declines to choose, read where no statement commits:
# "信息不足，首选检查难以唯一确定"
DECLINED = re.compile(
    rf"{DEFERRED.pattern}|信息不足|(?:无法|难以|不能|没法)(?:唯一|完全)?(?:确定|判断|作答|选择)"
    r"|(?:不能|无法|没法|难以)下(?:结论|定论)"
    r"|(?:题目|题干|本题|这道题|原题)(?:本身)?[^。.!?;\n]{0,4}?(?:存在|有)(?:问题|错误|缺陷|歧义)"
    r"|(?:题目|题干|本题|这道题|原题)[^。.!?;\n]{0,6}?有误|核对原题|出题[^。.!?;\n]{0,4}?(?:疏漏|失误|有误)"
    r"|(?:这是一道|题目是|本题是|本题为)单选"
    r"|(?:所有|全部|[五四六]个|各个?)选项中?(?:都|均)?(?:没有|不)(?:正确|符合|对)|选项中(?:没有|都不|均不)"
    r"|(?i:\b(?:item|question)\s+(?:seems|is|looks)\s+(?:flawed|defective|ambiguous))"
    r"|(?:向|给)[^。.!?;\n]{0,8}?反馈|(?:各|每个|所有)选项(?:都|均)(?:有|存在)(?:瑕疵|问题|缺陷|错误)"
    r"|(?:无法|不能|没法)给出?[^。.!?;\n]{0,4}?(?:确定|明确|唯一)的?答案|给不出[^。.!?;\n]{0,4}?答案"
    r"|没有(?:一个)?正确的?(?:选项|答案)|没有(?:与之|与此|相)?(?:对应|相应|匹配|符合)的选项|(?:正确|应有)的?(?:选项|答案)不在"
    r"|(?i:\b(?:cannot\s+be\s+determined|not\s+enough\s+information|none\s+of\s+the\s+(?:listed\s+)?"
    r"(?:options|choices|answers)|(?:option|answer)\s+is\s+(?:missing|not\s+(?:listed|among|there)))\b)"
)
LETTERS_LINE = re.compile(
    r"^[ \t]*(?:(?:[-•>#]|👉|→|⇒|=>|->)[ \t]*)*[(\[【「]?[ \t]*"
    r"(?P<group>[A-J](?:(?:[ \t]*(?:[、,&/]|或|还是)[ \t]*|[ \t]+(?:or[ \t]+)?)?[A-J])*)"
    r"[ \t]*[)\]】」]?[ \t]*(?:[两三四五]?项|选项)?[ \t]*[.。]?[ \t]*$",
    re.MULTILINE,
)
# marks written on options: ticks choose, crosses and empty boxes do not
TICKS = "✔✓√✅☑"
CROSSES = "✘✗×❌"
EMPTY_BOXES = "☐□"
MARKS = TICKS + CROSSES + EMPTY_BOXES
# letters each with its own mark, before or after it: "A ✓  B ✗", "√A √B ×C"
LETTER_MARK = re.compile(
    rf"(?<![A-Za-z0-9])(?P<letter>[A-J])[ \t]*(?P<mark>[{MARKS}])"
    rf"|(?P<mark_first>[{MARKS}])[ \t]*(?P<letter_after>[A-J])(?![A-Za-z0-9])"
)
LINE_START = re.compile(
    rf"^[ \t]*(?:[-•>#{MARKS}][ \t]*)*[(\[【]?[ \t]*(?P<group>[A-J]){BOUNDARY}"
    r"(?:[ \t]*(?:[.:)\]】]|、(?![ \t]*[A-J](?![A-Za-z0-9])))|[ \t]+(?=[^\sA-Za-z0-9]))",
    re.MULTILINE,
)
# words telling options apart: a bracketed letter after them is a differential, not the answer
TELLING_APART = re.compile(r"鉴别|区分|注意|易混|对比|不同于|相比|而非|(?i:\b(?:unlike|versus|vs)\b)")
BRACKETED = re.compile(  # not poly(A); after an abbreviation it counts: "TSH（A）"
    r"(?<![a-z0-9])[(\[【「][ \t]*(?:选项|(?i:option)[ \t])?[ \t]*(?P<group>[A-Ja-j])[ \t]*[)\]】」]"
)

TENTATIVE = re.compile(rf"{CLOSERS}(?:项)?[ \t]*{PARTICLES}?[ \t]*(?:\?|吗|呢)")
RETRACTED = re.compile(
    r"[\s()\]】」』”’\"'项。.,!?…~、\-—]*"
    r"(?:不对(?!的)|不是[,。!]|不[,。!]|错了|有误|等等|等一下|且慢|再想想|再看看|再考虑|重新(?:考虑|审题|思考|分析)"
    r"|再仔细|仔细(?:想|看)一下|更正|纠正|(?i:wait|actually|hmm|no[,.!]|correction))"
)
NEGATED_AFTER = re.compile(
    rf"{CLOSERS}(?:选项|项)?[ \t]*(?:的说法|说法)?(?:是|也|都|均|则)?[ \t]*"
    r"(?:不对|错|不正确|不是|不符|不选|排除|除外|(?i:is\s+(?:wrong|incorrect|not)|wrong|incorrect))"
    r"|[ \t]*(?:是|为|属于)[^,。.;!?\n]{0,8}?(?:错误|错选|误选|陷阱|干扰项|迷惑项|看错|搞错|选错|错了)"
    r"|[ \t]*(?:都|均|也)?[ \t]*(?:(?:与|和|跟)[^,。.;!?\n]{0,8}?)?(?:无关|不相关|不相符)"  # "D和E与题意无关"
)
NEGATED_BEFORE = re.compile(
    r"(?:不|没有?|未|别|勿|(?<!错)误|非|并非|而非|避免)(?:要|能|应该?|应当|会|可以?|再|必)?[ \t]*误?[ \t]*$"
    r"|误(?:写|作|填|标|记|打|认)(?:成|为|作)?[ \t]*$"
    r"|(?i:\b(?:not|never|n't|cannot)\s*)$"
)
SCOPE = re.compile(rf"{CLOSERS}(?:两者|二者|两项|三者|这两个|这两项)?(?:之中|当中|中|里面|里|之间)")
SCOPE_CHOICE = re.compile(
    r"[^。.!?;\n]{0,10}?(?<![A-Za-z0-9])"
    r"(?P<letter>[A-J](?:[ \t]*(?:[、,]|和|及|与)[ \t]*[A-J])*)(?![A-Za-z0-9])"
)
HEDGE_AFTER = re.compile(
    rf"{CLOSERS}[,(]?[ \t]*(?:也可能是?|也有可能是?|(?:或许|也许|可能)(?:还有|是)?|或者是?|或是|或|还是"
    r"|(?i:or(?:\s+(?:possibly|maybe|perhaps))?))[ \t]*(?:选择?|选项|(?i:choose|pick|select|option))?[ \t]*"
    r"[A-J](?:[ \t]*[、,]?[ \t]*[A-J])*(?![A-Za-z0-9])"
)
HEDGE_PAIR = re.compile(
    r"(?:可能|或许|也许|大概)[^。.!?;\n]{0,8}?(?<![A-Za-z0-9])[A-J](?![A-Za-z0-9])[^。.!;\n]{0,8}?"
    r"(?:也|又|还|或)(?:有)?(?:可能|或许|也许)"
)
HEDGE_IN_SENTENCE = re.compile(
    r"^[^。.!?;\n]*?(?<![A-Za-z0-9])[A-J](?:项|选项)?[ \t]*(?:也|亦)(?:有|很)?"
    r"(?:(?:可能|可以)(?:是)?(?:对|行|正确|说得通|成立)?|对|行|正确|说得通|成立)"
    r"(?=[ \t]*(?:$|[。.!?;,)\n]))"
)
# Reported speech: the statement is someone else's answer, an old key or a common mistake, not this one.
REPORTED = re.compile(
    r"读者|评论区|(?:有)?网友|(?:你|您)(?:所)?(?:提到|提供|给出?|说|贴|附)的|(?:有|很多|许多|不少|部分|一些|某些|其他|其它|别的|大多数|多数|大部分)(?:的|些)?(?:同学|人|考生|学生|医生|资料"
    r"|教材|书|文献|题库|版本|解析|参考书|学者|专家|网友|老师)|别人|他人|老师|专家|学者|网友|(?:另|也|还)?有(?:观点|意见|说法|看法)"
    r"|(?:考生|学生|同学|初学者)(?:们)?(?:常|多|容易|往往|经常|可能|会)"
    r"|(?<![最正])(?:(?:原|旧|题库|原题|原书|网上|官方|给定|辅导书)[\u4e00-\u9fff]{0,6}?|教材|资料|题目给出?)的?"
    r"(?:答案|选项|解析|答)|答案键"
    r"|常见(?:的)?(?:错误|错选|误选|误区|陷阱)|易错|容易(?:误选|选错|错选|漏选)|误选|错选|漏选|少选"
    r"|多选(?=[ \t]*[A-J])"
    # a subject that names a wrong choice: "本题的干扰项是A", "迷惑性最强的选项为D", "错误率最高的选项是E"
    # (not "错误的选项是A": asked for the wrong statement, that is the answer)
    r"|干扰(?:项|选项)|(?<!没)(?<!无)有争议的?(?:项|选项|是)|迷惑(?:性)?[\u4e00-\u9fff]{0,4}?(?:项|选项)|陷阱(?:项|选项)|易错(?:项|选项)|错误率"
    r"|(?i:\b(?:someone|(?<!the\s)others"  # not "the others": the other options
    r"|(?:some|many|most|other|a\s+lot\s+of)\s+(?:students|people|test[- ]takers"
    r"|candidates|examinees|sources|books|textbooks|references|clinicians|doctors)"
    r"|the\s+(?:original|old|official|reference|given|book's)\s+(?:answer|key)|answer\s+key"
    r"|(?:common|frequent|typical|usual)(?:ly)?\s+(?:mistake|error|chosen|wrong|pitfall|trap)"
    r"|often\s+(?:chosen|picked)|mistakenly|distractor)\b)"
)
REPORT_CLAUSE_BREAK = re.compile(r"[,;()]")  # not a colon: "原答案：D" is one clause
# a verb of saying whose content is the clause after it: "有同学认为，答案是C"
SAYING = re.compile(
    r"[^,。.;!?\n]{0,6}?(?:认为|觉得|说|指出|主张|表示|提出|(?i:\b(?:say|think|claim|argue)s?\b))[ \t]*[,:]"
)
DECLARATION_KEY = re.compile(
    r".*(?:答|(?i:answer)).*|(?:应(?:该|当)?|故|我|最终)?选择?|我(?:认为|觉得|的选择)|正确的?(?:选项|选择)"
    r"|最佳(?:选项|选择)|(?i:(?:I\s+would\s+)?(?:choose|pick|select|go\s+with))",
    re.DOTALL,
)
# The writer disputing an answer stated before: "但我认为这个答案有争议", "我不同意这个答案".
DISPUTE = (
    r"(?<!没有)(?<!无)(?<!不)(?:争议|存疑|值得商榷|有待商榷)|(?:我|本人)(?:并)?不(?:同意|认同|赞同)"
    r"|(?i:\b(?:debatable|questionable|disputed|i\s+disagree)\b)"
)
DISPUTED = re.compile(
    rf"(?:答案|(?i:\b(?:answer|key)\b))[^。.!?;\n]{{0,8}}?(?:{DISPUTE})"
    r"|(?:题目?|题干|答案)[^。.!?;\n]{0,8}?(?:(?<!没)有(?:问题|错误|歧义)|不严谨|出错了)"
    r"|(?:我|本人)(?:并)?不(?:同意|认同|赞同)[^。.!?;\n]{0,6}?(?:答案|(?i:\b(?:answer|key)\b))"
)
# Letters followed by where they come from: "参考答案：C（来自题库）", "答案：B（据《内科学》）". Reported
# speech when the source is a key (题库) or the letters a reference answer ("参考答案为A（据人卫版教材）");
# a plain answer citing a book is the writer's own.
SOURCED = re.compile(
    rf"{CLOSERS}[ \t]*\([ \t]*(?:来自|来源于?|出自|引自|摘自|源自|转自|抄自|据|(?i:from|source:?|per))"
    r"(?P<source>[^()\n]{0,16})\)"
)
KEY_SOURCE = re.compile(
    r"题库|原题|真题|网上|网络|辅导书|习题集|答案|(?i:question\s+bank|answer\s+key|\bkey\b)"
)
KEY_LABEL = re.compile(r"参考答案|标准答案|(?i:reference\s+answer|answer\s+key)")
# a line that opens an option item: "C. 肝素", "B、卡托普利", "D) …"
OPTION_ITEM_LINE = re.compile(
    r"[ \t]*(?:[-•>+][ \t]*)?[(\[【]?[A-J][ \t]*[.、:)\]】](?![ \t]*[A-J](?![A-Za-z0-9]))"
)
# the items of an option list in one sentence after an answer keyword: "应选：A. 限盐；C. 控制体重；D. 戒烟"
ITEM_CONTINUATION = re.compile(
    r"[ \t]*[.、:)][ \t]*(?P<item>[^;\n。]{1,40}?)[ \t]*(?:;|,|和|及|以及)[ \t]*"
    r"(?P<letter>[A-J])(?=[ \t]*[.、:)][ \t]*(?![A-J](?![A-Za-z0-9]))\S)"
)
NOTE_OPENING = re.compile(
    r"^[^\w(\[【]*[(\[【]?[ \t]*"
    r"(?:注|备注|说明|提示|补充|附|另|拓展|延伸|提醒|易错|陷阱|常见|错选|误区|参考|链接|PS|P\.S\.|(?i:note|nb|tip|caveat|pitfall))"
)
CORRECTION = re.compile(
    rf"{DISPUTE}|更正|修正|纠正|订正|改正|勘误|改为|抱歉|不好意思|对不起|笔误|手误|口误|有误|错了|不对|等等|等一下|重新|复核|看错|搞错|写错|为准"
    r"|(?i:\b(?:correction|actually|wait|on\s+reflection|sorry|i\s+made\s+a\s+mistake|revised?)\b)"
)
TENTATIVE_WORD = re.compile(
    r"可能|也许|或许|大概|倾向于?|猜|像是|似乎|好像|看起来|(?i:\b(?:probably|maybe|perhaps|might|likely)\b)"
)
UNCERTAIN = re.compile(
    r"(?:有待|需要?|需)[^。.;!?\n]{0,10}?(?:确认|核实|核对|查证)"
    r"|(?:不|无法|难以|不能|才能|不太)(?:完全|十分|唯一)?确定|拿不准|没(?:有|什么|太大)?把握|不(?:是)?(?:很|太)?有把握|不敢(?:肯定|确定)|记不清|不好说|需要更多信息|取决于|视[^。.;!?\n]{1,20}而定"
    r"|(?i:\b(?:not\s+sure|uncertain|unsure|cannot\s+be\s+sure|depends\s+on)\b)"
)
# "答案：B（不确定）": the letters flagged as uncertain where they stand
FLAGGED_UNSURE = re.compile(
    r"[ \t]*\([^()\n]{0,6}?(?:不确定|存疑|待定|不太确定|没把握|(?i:unsure|uncertain|not\s+sure|\?))"
)
UNDECIDED = re.compile(
    r"(?:难以|无法|不好|很难|不能)(?:做出)?(?:决定|取舍|抉择|选择|二选一)|很难说|难说|不好说|(?i:\b(?:can(?:no|')t|hard\s+to)\s+(?:decide|choose)\b)"
)
# Letters offered as both acceptable: "两个答案都说得通：选A或者选D", "选C或者选E都行", "both are defensible".
EITHER_WAY = re.compile(
    r"(?:两|二者|[A-J](?![A-Za-z0-9]))[^。.!?;,\n]{0,8}?(?:都|均|也都)(?:说得通|讲得通|有道理|可以|行)"
    r"(?=[ \t]*(?:$|[。.!?;,:\n]))"
    r"|(?i:\bboth\s+(?:are|seem|look|would\s+be)\s+(?:defensible|plausible|reasonable|possible|acceptable)"
    r"|\beither\s+(?:one\s+|of\s+them\s+)?(?:could|would|might|works?)\b)"
)
# Another question's answer: "很多人把本题与上一题（答案A）混淆".
OTHER_QUESTION = re.compile(
    r"(?:上|下|前|后|另)一(?:道|个)?(?:题|问)|其他题目?|那(?:道|个)?题|第[ \t]*\d+[ \t]*题"
    r"|(?:同类|类似|相似|此类)题|(?:另一|其他|其它|别的)(?:个)?版本"
    r"|(?i:\b(?:previous|next|other)\s+question\b)"
)
# What turns reported speech back into the writer's own voice: "有同学选A，但正确答案是C".
CONTRAST = re.compile(
    r"但|然而|不过|其实|实际上|事实上|而是|正确|本题|本例|我|因此|所以|故|综上|因而|(?i:\b(?:but|however|actually|in\s+fact|correct)\b)"
)
# A note on the wording (a typo, the explanation's text) corrects the text, not the answer.
ABOUT_THE_TEXT = re.compile(
    r"笔误|错别字|打字错误|解析中|解析第|上文|前文|文中|原文|不影响(?:最终|本题)?的?答案|(?i:\btypo\b)"
)
# where the wording is: a correction naming it is about the text whatever it says ("解析中选项B应为选项D")
TEXT_PLACE = re.compile(r"错别字|打字错误|解析中|解析第|文中|原文|不影响(?:最终|本题)?的?答案")
ANSWER_WORD = re.compile(r"答案|回答|(?i:\banswer\b)")
# A non-committal alternative: "也可选C", "亦可考虑D", "C also works".
ALTERNATIVE = re.compile(
    r"(?:也|亦|或|还)(?:可以?|能|行)|或许|也许|不排除|也有人|其次|次选|(?i:\b(?:also|alternatively|might|could"
    r"|second(?:ary)?\s+choice)\b)"
)
# "除A外都对" names every other option; "除C外都错" names C.
COMPLEMENT = re.compile(
    rf"除(?:了)?[ \t]*(?:选项)?[ \t]*(?P<group>{GROUP})[ \t]*(?:选项|项)?[ \t]*"
    r"(?:(?:以|之)?外[ \t]*,?[ \t]*(?:其余|其他|其它|余下|剩下)?|,[ \t]*(?:其余|其他|其它|余下|剩下))"
    r"(?:的)?(?:[两三四五六几各]?项|选项|说法|描述)?"
    r"[ \t]*(?:均|都|全)(?:是|为|应)?[ \t]*"
    r"(?P<verdict>正确|对|错误|错|不正确|不对|选)"
)
# "All of the above except D", "all options are correct except B" name every other option.
COMPLEMENT_EN = re.compile(
    r"(?i:\b(?:all\s+(?:of\s+the\s+above|(?:the\s+)?options|of\s+them|others)|everything)\s+"
    r"(?:are\s+(?:correct|right|true)\s+)?"
    rf"(?:except|but)(?:\s+for)?\s+(?:options?\s+)?)(?P<group>{GROUP})(?![A-Za-z0-9])(?P<verdict>)"
)
# "A、C项错误，其余正确" names every other option ("B正确，其余都错" is a verdict on B).
COMPLEMENT_AFTER = re.compile(
    rf"(?<![A-Za-z0-9])(?<![A-Ja-j]、)(?:第[ \t]*)?(?P<group>{GROUP}){BOUNDARY}[ \t]*"
    r"(?:[两三四]?项|选项)?[ \t]*的?(?:说法|描述|叙述|表述)?[ \t]*(?:均|都|也|是|为)*[ \t]*"
    r"(?:错误|不正确|不对|错)的?[ \t]*,[ \t]*"
    r"(?:其余|其他|其它|余下|剩下)(?:的)?(?:[两三四五六几各]?项|选项|说法|描述|叙述|表述)?[ \t]*"
    r"(?:均|都|全)?(?:是|为)?[ \t]*(?P<verdict>正确|对)"
)
HYPOTHETICAL = re.compile(
    r"如果|若|假如|假设|倘若|要是|如若|万一|否则|不然|是否|能否|可否|为什么|为何|(?<!这种)(?<!此种)(?<!这)(?<!该)(?<!此)(?:情况|条件|前提)下|(?<!题)的话"
    r"|(?i:\b(?:if|suppose|assuming|whether|why|unless|in\s+case|otherwise)\b)"
)
CONSEQUENCE = re.compile(r"^[ \t]*(?:则|那么|那就|就|便|(?i:then\b))")
# A heading over a list that analyses the other options: "其他选项分析：", "为何不选其他：", "Other options:".
ANALYSIS_HEADING = re.compile(
    r"^[ \t#>]*(?:[\u4e00-\u9fff]{0,4}"
    r"(?:其他|其余|其它|别的|剩余|剩下|另外|不选|排除|错误的?(?:选)?项|干扰(?:选)?项)[\u4e00-\u9fff]{0,8}"
    r"|(?i:(?:the\s+)?other\s+(?:options|choices|answers)[\w ]{0,20}"
    r"|why\s+not\s+(?:the\s+)?others?|distractors?))[ \t]*:[ \t]*$"
)
# A list item's own verdict against its option: "- B：错误"
ITEM_REJECTED = re.compile(r"错|不正确|不对|不选|排除|不符|×|✗|(?i:\b(?:incorrect|wrong|false)\b)")
ITEM_APPROVED = re.compile(r"正确|对|√|✓|(?i:\b(?:correct|right|true)\b)")
# "正确答案包括A、": a list of letters cut off after its separator
CUT_OFF_LIST = re.compile(r"[ \t]*(?:[、,&+]|和|及|与)[ \t]*$")
# the judgement closing a line of a per-option list or table: "A …… —— 正确", "| B | 突眼 | ✔ |"
JUDGED_LINE = re.compile(
    r"^[ \t]*(?:[-•>+|][ \t]*)?[(\[【]?(?P<letter>[A-J])(?![A-Za-z0-9])[^\n]*?"
    r"(?:——|—|--|\||:|,)[ \t]*(?P<judgement>正确|错误|不正确|对|错|[✔✓√✅✘✗×❌])[^\n|]{0,12}\|?[ \t]*$",
    re.MULTILINE,
)
JUDGED_WRONG = re.compile(r"错|不正确|[✘✗×❌]")
# a summary committing to the options a list judged right: "表中标✔的即为正确选项", "五个选项均正确，全选"
JUDGED_SUMMARY = re.compile(
    r"(?:标|打|画|判为|判断为|标为|记为)(?:有|了)?[ \t]*(?:[✔✓√✅]|对|正确)[ \t]*(?:号)?的"
    r"(?:选项|项|几项|各项)?"
    r"[ \t]*(?:即|就|均|都)?(?:为|是)[ \t]*(?:本题的?)?(?:正确|应选)?的?(?:选项|答案)"
    r"|(?P<all>全选|(?:[五四六三]个|全部|所有)选项(?:均|都|全)(?:正确|对))"
)
MORE_LETTERS = re.compile(r"[ \t]*(?:[、,&+]|和|及|与)[ \t]*[A-J](?![A-Za-z0-9])")  # "B、E…": a group goes on
LIST_ITEM = re.compile(r"^[ \t]*(?:[-•>+][ \t]*|\d+[.、)][ \t]*)?[(\[【]?[A-J](?![A-Za-z0-9])")
CONTEXT = 300  # characters of context read before a mention
CLAUSE_BREAK = re.compile(r"[。.!?;\n,:()]")
SENTENCE_BREAK = re.compile(r"[。.!?;\n]")
# an answer cut off mid-sentence: "…再看B选项：粘连性肠梗阻，", "A. 肺功能表现为…——"
CUT_OFF_END = re.compile(r"(?:[,、:(\-]|—{1,2}|(?:\.\.\.)+|…+|\n[ \t]*[A-J][.、:)])[ \t]*$")
CLAUSE_BREAK_OUTSIDE_BRACKETS = re.compile(r"[。.!?;\n,:]")
# a bracketed letter joined to the one a verdict names: "第一个（A）和最后一个（E）正确"
JOINED_BEFORE = re.compile(
    r"\([ \t]*(?P<letter>[A-J])[ \t]*\)[^,。.;:!?\n()A-Za-z]{0,2}(?:和|与|及|以及)"
    r"[^,。.;:!?\n()A-Za-z]{0,6}\(?[ \t]*$"
)
# a question mark does not end a hedge: "可能是 B？也可能是 E"
HEDGE_BREAK = re.compile(r"[。.!;\n]")
# a sentence's end where an ellipsis ("……", folded to "......") only pauses it: "我猜是B吧……其实没把握"
SENTENCE_END = re.compile(r"[。!?;\n]|(?<!\.)\.(?!\.)")
CHECKED_BOX = re.compile(r"(?m:(?<=^)|(?<=^[ \t])|(?<=^[ \t]{2})|(?<=[-*+][ \t]))\[[xX✓✔√][ \t]*\]")
EMPTY_BOX = re.compile(r"(?m:(?<=^)|(?<=^[ \t])|(?<=^[ \t]{2})|(?<=[-*+][ \t]))\[[ \t]\]")
# Traditional characters of the words read here, as their simplified forms: "選 A 與 E" reads "选 A 与 E"
TRADITIONAL = str.maketrans(
    "選擇項確為對錯誤應該與說題個無僅這還實際認兩斷診標準參結論當屬於並種後從裡來難決議據證們嗎麼餘夠會則號問較優適",
    "选择项确为对错误应该与说题个无仅这还实际认两断诊标准参结论当属于并种后从里来难决议据证们吗么余够会则号问较优适",
)
# a letter followed by what it says: "A的说法只适用于…" discusses the option
ABOUT_THE_OPTION = re.compile(r"[ \t]*(?:项|选项)?的(?:说法|描述|观点|叙述|表述|解释|内容|意思|理由)")
# the rest of a line listing options after a letter ("选项：A 高热惊厥 B 手足搐搦 C …"): no answer
OPTION_TEXT = r"[^\sA-Za-z0-9,。;:\n]{1,20}"
NEXT_OPTION = rf"{OPTION_TEXT}(?:[ \t]+|[、,;][ \t]*)[A-J](?![A-Za-z0-9])"
OPTION_LIST_REST = re.compile(rf"[ \t]*{NEXT_OPTION}[ \t]*{NEXT_OPTION}")
CJK_SPACE = re.compile(r"(?<=[\u4e00-\u9fff])[ \t]+(?=[\u4e00-\u9fff])")
QUOTES = {"“": "”", "「": "」", "『": "』", "‘": "’", '"': '"'}


ROMAN_ASCII = {"I": "Ⅰ", "II": "Ⅱ", "III": "Ⅲ", "IV": "Ⅳ", "V": "Ⅴ", "VI": "Ⅵ", "VII": "Ⅶ", "VIII": "Ⅷ"}
ROMAN_CHARS = set("ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫⅰⅱⅲⅳⅴⅵⅶⅷⅸⅹ")
ROMAN_TOKEN = re.compile(r"(?<![A-Za-z])(?:VIII|VII|VI|IV|V|III|II|I)(?![A-Za-z])")
ROMAN_SEP = r"[ \t]*(?:[、,+]|和|及|与)[ \t]*"
# Two or more ASCII numerals joined ("I、III", "II+IV") are numerals of a combination, not option letters.
ROMAN_RUN = re.compile(
    rf"(?<![A-Za-z])(?:VIII|VII|VI|IV|V|III|II|I)(?:{ROMAN_SEP}(?:VIII|VII|VI|IV|V|III|II|I))+(?![A-Za-z])"
)
# a letter quoted alone as one of several: "The answers are 'A', 'C', and 'D'"
QUOTED_LETTER = re.compile(
    r"(?<![A-Za-z0-9])['‘\"“](?P<letter>[A-J])['’\"”](?=[ \t]*(?:,|、|和|与|(?i:and\b)|$|[.。]))"
)
# "A～D均正确": a range of option letters, every letter in it
LETTER_RANGE = re.compile(
    r"(?<![A-Za-z0-9])(?P<first>[A-J])[ \t]*(?:~|-|–|至|到|[ \t](?i:through|to)[ \t])[ \t]*"
    r"(?P<last>[A-J])(?![A-Za-z0-9\-])"
)
BRACKETED_RUN = re.compile(
    r"(?<![A-Za-z0-9])(?:[(\[【][ \t]*[A-Ja-j][ \t]*[)\]】][ \t]*(?:[、,]|和|及|与|,?[ \t]*and\b)?[ \t]*){2,}"
)
UNIT = r"(?P<pre>选项[ \t]*)?(?:第[ \t]*)?(?P<letter>[A-J])(?P<post>[ \t]*(?:选项|项))?"
LETTER_UNIT = re.compile(rf"(?<![A-Za-z0-9]){UNIT}(?![A-Za-z0-9])")
UNIT_NO_NAMES = UNIT.replace("?P<pre>", "?:").replace("?P<letter>", "?:").replace("?P<post>", "?:")
# "选项A和选项C", "A项和D项", "A选项、C选项": letters each named as an option, joined.
LETTER_UNITS = re.compile(
    rf"(?<![A-Za-z0-9])(?=选项|(?:第[ \t]*)?[A-J][ \t]*(?:选项|项))(?:{UNIT_NO_NAMES})"
    rf"(?:[ \t]*(?:、|和|及|与|以及|跟|同|[+&])[ \t]*(?:{UNIT_NO_NAMES})(?![A-Za-z0-9]))+"
)


ANSWER_LINE = "answer line"  # the reason of an answer read from the asked-for final line
RESTATED = "restated conclusion"  # the reason of a reasoning's letter read by rule 12
NO_LETTER = "no option letter found"
# any option letter at all in an answer (rule 12 reads the reasoning only for an answer without one)
ANY_LETTER = re.compile(rf"(?<![A-Za-z0-9])[A-J]{BOUNDARY}")
# an answer that hedges, declines or defers: it restates no conclusion
NOT_COMMITTING = re.compile(
    rf"{UNCERTAIN.pattern}|{UNDECIDED.pattern}|{EITHER_WAY.pattern}"
    r"|无法|不能(?:作答|回答|判断|选择)|没有?把握|请(?:参考|以|咨询|结合)|仅供参考|有误|之一|或|还是"
    r"|(?<!最)(?:可能|也许|或许|倾向|大概)"
    r"|(?i:\b(?:cannot|can't|unable|either|or|maybe|perhaps|possibly|might|probably)\b)"
)
ANSWER_LINE_PATTERN = re.compile(
    r"^[ \t]*答案[ \t]*:[ \t]*(?P<group>[A-J](?:[ \t]*[、,]?[ \t]*[A-J])*)[ \t]*[。.]?[ \t]*$"
)
ROMAN_GROUP = r"[ⅠⅡⅢⅣⅤⅥⅦⅧ](?:[ \t]*(?:[、,+]|和|及|与)[ \t]*[ⅠⅡⅢⅣⅤⅥⅦⅧ])*"
# A combination of numbered statements given as the answer: "答案：Ⅰ、Ⅲ", "Ⅰ和Ⅲ正确".
ROMAN_ANSWER = re.compile(
    r"(?:答案|选择?|应为|(?:说法|叙述)?正确的(?:是|为|有))[ \t]*[:是为]?[ \t]*"
    rf"(?P<first>{ROMAN_GROUP})(?![ⅠⅡⅢⅣⅤⅥⅦⅧ])"
    rf"|(?P<second>{ROMAN_GROUP})[ \t]*(?:[两三四五六]?(?:项|条))?(?:说法|叙述|描述)?"
    r"[ \t]*(?:均|都)?(?:是|为)?(?:正确|对)"
)
