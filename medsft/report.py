"""report.md and PNG charts of an evaluation (one model, or a baseline and a model side by side)."""

from __future__ import annotations

import html
import os
import random
from pathlib import Path

import matplotlib

from medsft.answer_choice import reason_rule
from medsft.chat_format import END_OF_TURN, THINK_CLOSE, THINK_OPEN
from medsft.jsonl import write_text_atomic
from medsft.report_charts import (
    GENERATED,
    INDOMAIN,
    MODE_LABELS,
    draw_charts,
    mcq_sources,
    primary_mode,
    report_roles,
)

matplotlib.use("Agg")


METHOD_NOTES = f"""\
- **Loss / perplexity**: teacher forcing over the conversation rendered by the tokenizer's chat
  template. Mean negative log-likelihood per token (nats), separately for the reasoning part
  (`{THINK_OPEN}` … `{THINK_CLOSE}`, both tags included) and the answer part (after `{THINK_CLOSE}` to the
  end of the turn: `{END_OF_TURN}` and the newline after it). These are exactly the tokens training learns
  from, so the loss over both parts equals the trainer's `eval_loss` on the same rows. Token-weighted over
  all rows; perplexity = exp(loss). System and user tokens are not scored.
- **Thinking modes**: answers are generated in Qwen3's thinking mode (`enable_thinking=True`) and/or its
  non-thinking mode (`enable_thinking=False`: the prompt ends with the empty think block), as `--thinking`
  asks. Held-out rows trained without reasoning (an empty think block) are answered in their own,
  non-thinking mode unless `--thinking both` or `off` asks for every row in each mode; their loss is always
  scored as training scored them (`empty_think_loss` false: from the answer on, the empty block in the
  prompt; true: the empty block too, after the `/no_think` switch).
- **Mode adherence**: thinking mode, the share of outputs with well-formed reasoning (one think block
  with reasoning in it, then a non-empty answer); non-thinking mode, the share of non-empty answers with
  no reasoning text (no think tag at all: no second think block, no leftover of an empty one).
- **Think-format compliance**: share of outputs that start with `{THINK_OPEN}`, close it exactly once
  with `{THINK_CLOSE}`, hold no further think tags, and end with a non-empty answer. **Truncated**: share
  that reached `max_new_tokens` before `{END_OF_TURN}`.
- **ROUGE-1/2/L**: F1 of the answer part (after `{THINK_CLOSE}`) against the reference answer, on
  jieba-segmented words (rouge-chinese; ROUGE-L over sentences split at 。！？ and line breaks).
  Punctuation is not a word: it never matches, and an answer that is empty or punctuation only scores 0.
  Mean over rows.
- **BLEU-4 (characters)**: every non-whitespace character is a token. *Corpus* BLEU-4: clipped
  n-gram matches and lengths summed over all rows, uniform weights, one brevity penalty, no smoothing
  (equal to sacrebleu `corpus_bleu(..., tokenize="char")` / 100 on whitespace-free text). *Sentence*
  BLEU-4: per row, add-one smoothing of the 2- to 4-gram precisions (equal to NLTK `sentence_bleu`
  with `SmoothingFunction().method2`), then the mean. Scores are in [0, 1]; word-level or
  sacrebleu-`zh` BLEU gives different numbers.
- **Lengths**: generated tokens up to and including `{THINK_CLOSE}` (reasoning) and after it, end-of-turn
  excluded (answer). The reference is counted the same way.
- **Loops**: share of outputs where one unit of up to 200 characters repeats back to back at least 3
  times over at least 40 characters. **Distinct-4**: distinct character 4-grams / all character
  4-grams of the whole output (lower: more repetitive).
- **MCQ, thinking mode**: the model answers in thinking mode, asked to end with one line `答案：X`; the
  chosen letters are read from the answer part only (letters in the reasoning are ignored): from that final
  line when it is there, read strictly, otherwise by written rules (docs/evaluation.md): the final
  committed statement wins; quoted, negated, hypothetical, reported (someone else's answer, an old key, a
  common mistake) and retracted mentions do not count; an alternative offered later does not replace the
  answer; a
  hedge between options, a letter outside the options or a truncated answer is unparseable, never
  guessed. Multi-answer questions count as correct only on an exact set match. Unparseable answers count
  as wrong and are listed.
- **MCQ, likelihood mode**: no reasoning. The same answer-line request, the prompt with the empty think
  block (as `enable_thinking=False`) and the answer begun with `答案：`; the option letter with the highest
  next-token log-probability is the choice (as the CMMLU / C-Eval harnesses do). Multi-answer
  questions cannot be chosen by one token: they are excluded from this accuracy and counted.
- **Uncertainty**: each accuracy has its 95 % Wilson score interval. The chance level of a source is the
  higher of uniform guessing (1 / options; 1 / (2^options − 1) for a multi-answer question) and always
  giving its most frequent gold answer; † marks an accuracy whose interval reaches it. A model that gives
  one answer for more than 60 % of a source's questions is flagged next to the gold distribution.
- **Overall**: *pooled*, every question counts once; *macro*, the mean of the per-source (per-subject)
  accuracies, as CMMLU and C-Eval results are quoted (no interval: it is not one proportion).
- **Baseline vs model**: McNemar's test on the questions both answered: only the questions exactly one
  of them got right count (exact binomial test below 25 of them, else chi-square with continuity
  correction); p < 0.05 is reported as beyond noise. With many sources about 1 test in 20 comes out
  below 0.05 by chance alone; the pooled test is the one to quote.
- **MCQ sample**: `--mcq-limit N` draws N questions with a seeded random sample stratified by source
  (shares proportional to source sizes, each source at least one question).
"""


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _header(report: dict, first: str = "metric") -> list[str]:
    roles = report_roles(report)
    cells = [first] + [f"{role} (`{report['models'][role]['source']}`)" for role in roles]
    if len(roles) == 2:
        cells.append("Δ (model − baseline)")
    lines = ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]
    return lines


def _row(report: dict, label: str, getter, formatter=_fmt) -> str:
    values = []
    for role in report_roles(report):
        try:
            values.append(getter(report["models"][role]))
        except (KeyError, TypeError):
            values.append(None)
    cells = [label] + [formatter(value) for value in values]
    if len(values) == 2:
        both = all(isinstance(v, (int, float)) for v in values)
        delta = values[1] - values[0] if both else None
        if delta is None:
            cells.append("–")
        elif all(isinstance(v, int) for v in values):
            cells.append(f"{delta:+d}")
        elif formatter is _pct:
            cells.append(f"{100 * delta:+.1f} pt")
        else:
            cells.append(f"{delta:+.3f}")
    return "| " + " | ".join(cells) + " |"


# --- markdown -----------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _sample_cell(reasoning: str, answer: str, caption: str) -> str:
    folded = f"<details><summary>reasoning ({len(reasoning)} chars)</summary>{_cell(reasoning)}</details>"
    return f'<td valign="top"><b>{caption}</b>{folded}{_cell(answer) or "<i>(no answer)</i>"}</td>'


def _samples_section(report: dict, predictions: dict, count: int) -> list[str]:
    roles = report_roles(report)
    lines = []
    primary = primary_mode(report)
    rows = predictions[roles[-1]][INDOMAIN[primary][1]][:count]
    for number, row in enumerate(rows, 1):
        lines.append(f"### Sample {number}: {row['question'][:120]}")
        lines.append("")
        cells = [_sample_cell(row["reference_reasoning"], row["reference_answer"], "reference")]
        for role in roles:
            for mode in sorted(GENERATED, key=lambda m: m != primary):
                kind = INDOMAIN[mode][1]
                match = next((p for p in predictions[role][kind] if p["index"] == row["index"]), None)
                if match is None:
                    continue
                if mode == "think":
                    flags = "think format OK" if match["well_formed"] else "think format broken"
                else:
                    flags = "no reasoning text" if match["well_formed"] else "reasoning text left"
                flags += ", truncated" if match["truncated"] else ""
                tokens = f"{match['reasoning_tokens']}+{match['answer_tokens']} tokens"
                label = f"{role}, {MODE_LABELS[mode]}" if mode != primary else role
                cells.append(
                    _sample_cell(match["reasoning"], match["answer"], f"{label} ({tokens}, {flags})")
                )
        lines += ["<table><tr>", *cells, "</tr></table>", ""]
    return lines


def _accuracy_cell(row: dict | None) -> str:
    if not row or row.get("accuracy") is None:
        return "–"
    low, high = row["ci95"]
    mark = "" if row.get("above_chance") else " †"
    return f"{_pct(row['accuracy'])} [{100 * low:.1f}–{100 * high:.1f}]{mark}"


def _p_value(test: dict | None) -> str:
    if not test:
        return "–"
    verdict = "beyond noise" if test["beyond_noise"] else "within noise"
    return f"{test['p_value']:.3g} ({verdict})"


def _distribution(counts: dict[str, int], dominant: dict | None = None) -> str:
    total = sum(counts.values())
    if not total:
        return "–"
    text = " · ".join(f"{answer} {100 * count / total:.0f}%" for answer, count in counts.items())
    if dominant:
        text += f" **⚠ {dominant['answer']} {100 * dominant['share']:.0f}%**"
    return text


def _accuracy_table(report: dict, mode: str, roles: list[str]) -> list[str]:
    comparison = report.get("comparison", {}).get(mode, {}) if len(roles) == 2 else {}
    cells = ["source", "n", "chance"] + [f"{role} accuracy [95 % CI]" for role in roles]
    if len(roles) == 2:
        cells += ["Δ (model − baseline)", "McNemar p"]
    lines = ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]
    reference = report["models"][roles[-1]]["mcq"][mode]
    for group in [*mcq_sources(report, mode), "overall"]:
        rows = [report["models"][role]["mcq"][mode]["accuracy"].get(group) for role in roles]
        shown = reference["accuracy"].get(group) or {}
        label = "**overall (pooled)**" if group == "overall" else group
        chance = (shown.get("chance") or {}).get("level")
        line = [label, str(shown.get("scored", "–")), _pct(chance), *(_accuracy_cell(row) for row in rows)]
        if len(roles) == 2:
            test = comparison.get(group)
            line += [f"{100 * test['difference']:+.1f} pt" if test else "–", _p_value(test)]
        lines.append("| " + " | ".join(line) + " |")
    macros = [report["models"][role]["mcq"][mode].get("macro") or {} for role in roles]
    line = [
        f"**overall (macro, {macros[-1].get('sources', 0)} sources)**",
        "",
        _pct(macros[-1].get("chance_level")),
        *(_pct(macro.get("accuracy")) for macro in macros),
    ]
    if len(roles) == 2:
        both = [macro.get("accuracy") for macro in macros]
        line += [f"{100 * (both[1] - both[0]):+.1f} pt" if None not in both else "–", "–"]
    lines.append("| " + " | ".join(line) + " |")
    return lines


def _verdict(report: dict, mode: str) -> list[str]:
    comparison = report.get("comparison", {}).get(mode, {})
    overall = comparison.get("overall")
    if not overall:
        return []
    lines = [
        f"Baseline vs model on the same {overall['pairs']} questions: the model alone answered "
        f"{overall['tuned_only']} correctly, the baseline alone {overall['base_only']}; Δ = "
        f"{100 * overall['difference']:+.1f} pt, McNemar ({overall['method']}) p = {overall['p_value']:.3g}: "
        + (
            "**the change is beyond noise** (p < 0.05)."
            if overall["beyond_noise"]
            else "**the change is within noise** (p ≥ 0.05): no evidence that it changed this accuracy."
        )
    ]
    per_source = {name: test for name, test in comparison.items() if name != "overall"}
    if len(per_source) > 1:
        beyond = sorted(name for name, test in per_source.items() if test["beyond_noise"])
        lines.append(
            f"Per source, {len(beyond)} of {len(per_source)} differ beyond noise"
            + (f" ({', '.join(beyond)})" if beyond else "")
            + f"; with {len(per_source)} tests at the 5 % level about {len(per_source) / 20:.1f} are "
            "expected by chance alone."
        )
    return lines


def _distribution_table(report: dict, mode: str, roles: list[str]) -> list[str]:
    lines = [
        "Answer distribution: the gold answers and each model's answers (of the scored questions; ⚠ one "
        "answer for more than 60 % of the questions).",
        "",
        "| source | gold | " + " | ".join(roles) + " |",
        "|" + "---|" * (2 + len(roles)),
    ]
    reference = report["models"][roles[-1]]["mcq"][mode]["accuracy"]
    for group in [*mcq_sources(report, mode), "overall"]:
        rows = [report["models"][role]["mcq"][mode]["accuracy"].get(group) or {} for role in roles]
        gold = (reference.get(group) or {}).get("gold", {})
        cells = [_distribution(row.get("predicted", {}), row.get("dominant")) for row in rows]
        label = "**overall**" if group == "overall" else group
        lines.append("| " + " | ".join([label, _distribution(gold), *cells]) + " |")
    return lines


def _bias_warnings(report: dict, mode: str, roles: list[str]) -> list[str]:
    lines = []
    for role in roles:
        table = report["models"][role]["mcq"][mode]["accuracy"]
        for group in [*mcq_sources(report, mode), "overall"]:
            row = table.get(group) or {}
            if row.get("dominant"):
                dominant = row["dominant"]
                gold_share = row["gold"].get(dominant["answer"], 0) / max(row["scored"], 1)
                lines.append(
                    f"- **Letter bias**: {role} answers {dominant['answer']} for "
                    f"{100 * dominant['share']:.0f}% of the {group} questions (gold {dominant['answer']}: "
                    f"{100 * gold_share:.0f}%); its accuracy there says more about the answer key than "
                    "about the model."
                )
    return lines


def _mcq_section(report: dict, predictions: dict, mode: str) -> list[str]:
    roles = [r for r in report_roles(report) if mode in report["models"][r]["mcq"]]
    if not roles:
        note = report.get("mcq_note") or f"not run (--mcq-mode {report['config']['mcq_mode']})."
        return [f"_{note}_", ""]
    lines = _accuracy_table(report, mode, roles)
    lines += [
        "",
        "† the 95 % interval reaches the chance level: no evidence of knowledge beyond guessing.",
        "",
    ]
    verdict = _verdict(report, mode) if len(roles) == 2 else []
    for paragraph in verdict:
        lines += [paragraph, ""]
    warnings = _bias_warnings(report, mode, roles)
    lines += [*warnings, *([""] if warnings else [])]
    lines += _distribution_table(report, mode, roles)
    lines.append("")
    if mode in GENERATED:
        lines += _header(report)
        lines.append(
            _row(
                report,
                "unparseable answers",
                lambda m: m["mcq"][mode]["accuracy"]["overall"]["unparseable"],
            )
        )
        lines.append(_row(report, "truncated at max_new_tokens", lambda m: m["mcq"][mode]["truncated"], _pct))
        lines.append(
            _row(report, "answers that keep to the mode", lambda m: m["mcq"][mode]["mode_adherence"], _pct)
        )
        lines.append(
            _row(
                report,
                "answers in the asked-for line `答案：X`",
                lambda m: m["mcq"][mode]["answer_line"]["overall"]["share"],
                _pct,
            )
        )
        lines += [
            "",
            *_answer_line_table(report, roles, mode),
            *_reasons_audit(report, predictions, roles, mode),
        ]
        lines.append(
            "Multi-answer questions are scored by exact set match "
            f"({report['models'][roles[-1]]['mcq'][mode]['multi_answer_questions']} in this sample)."
        )
        for role in roles:
            failed = [r for r in predictions[role][f"mcq_{mode}"] if not r["parsed"]][:5]
            if failed:
                lines += ["", f"Unparseable answers of {role} (first {len(failed)}):", ""]
                for record in failed:
                    text = (
                        record["answer"].strip().replace("`", "'") or "(empty: no answer after the reasoning)"
                    )
                    lines.append(
                        f"- q{record['index']} ({record['extraction']}): `{text[:160]}`".replace("\n", " ")
                    )
    else:
        excluded = report["models"][roles[-1]]["mcq"]["likelihood"]["multi_answer_excluded"]
        lines += [f"Multi-answer questions excluded from this accuracy: {excluded}."]
    lines.append("")
    return lines


def _answer_line_table(report: dict, roles: list[str], mode: str = "think") -> list[str]:
    """Per source, the share of answers given in the asked-for final line (the rest went to the fallback)."""
    shares = {role: report["models"][role]["mcq"][mode].get("answer_line", {}) for role in roles}
    sources = sorted({source for by_source in shares.values() for source in by_source} - {"overall"})
    if not sources:
        return []
    lines = ["Answers given in the asked-for line `答案：X`, per source:", ""]
    lines += ["| source | " + " | ".join(roles) + " |", "|" + "---|" * (len(roles) + 1)]
    for source in sources:
        cells = [_pct((shares[role].get(source) or {}).get("share")) for role in roles]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _reasons_audit(
    report: dict, predictions: dict, roles: list[str], mode: str = "think", per_reason: int = 5
) -> list[str]:
    """How the grader read the answers: a count per extraction reason, and a few answers of each reason drawn
    at random (seeded, so the same report shows the same ones) for a reader to check the reading."""
    kind = f"mcq_{mode}"
    records = [(role, record) for role in roles for record in predictions[role][kind]]
    reasons = sorted({reason_rule(record["extraction"]) for _, record in records})
    if not reasons:
        return []
    lines = ["Extraction reasons (how the grader read each answer):", ""]
    lines += ["| reason | " + " | ".join(roles) + " |", "|" + "---|" * (len(roles) + 1)]
    for reason in reasons:
        counts = [
            sum(reason_rule(r["extraction"]) == reason for r in predictions[role][kind]) for role in roles
        ]
        lines.append(f"| {reason} | " + " | ".join(str(count) for count in counts) + " |")
    draw = random.Random(report["config"].get("seed", 0))
    for reason in reasons:
        group = [(role, record) for role, record in records if reason_rule(record["extraction"]) == reason]
        shown = sorted(draw.sample(range(len(group)), min(per_reason, len(group))))
        lines += ["", f"Examples read as `{reason}` ({len(shown)} of {len(group)}, drawn at random):", ""]
        for role, record in (group[i] for i in shown):
            answer = " ".join(record["answer"].split()).replace("`", "'") or "(empty)"
            tail = answer if len(answer) <= 160 else "…" + answer[-159:]
            read = record["predicted"] or "–"
            detail = f" ({record['extraction']})" if record["extraction"] != reason else ""
            lines.append(f"- {role} q{record['index']}: read {read}, gold {record['gold']}{detail}: `{tail}`")
    return [*lines, ""]


def _benchmark_files(files: list[str]) -> str:
    if len(files) <= 2:
        return ", ".join(f"`{name}`" for name in files) or "none"
    return f"{len(files)} files under `{os.path.commonpath(files)}`"


def _skipped_rows(report: dict) -> str:
    count = (report.get("mcq_skipped") or {}).get("rows", 0)
    if not count:
        return ""
    return f"; {count} benchmark rows skipped as unusable (reasons: `mcq_skipped` in report.json)"


def _modes_run(report: dict) -> str:
    """The Setup line's modes: which modes answered, and how the held-out loss scores non-thinking rows."""
    config = report["config"]
    thinking = config.get("thinking", "on")
    modes = {
        "on": "thinking mode (rows trained without reasoning in their own, non-thinking mode)",
        "off": "non-thinking mode (enable_thinking=False)",
        "both": "both modes, each row and question in each",
    }[thinking]
    scoring = "with" if config.get("empty_think_loss") else "without"
    return f"{modes}; non-thinking rows' loss {scoring} the empty think block"


def _indomain_modes(report: dict) -> list[str]:
    """The modes the held-out rows were answered in, by some model."""
    models = report["models"].values()
    return [mode for mode in GENERATED if any(m["indomain"].get(INDOMAIN[mode][0]) for m in models)]


def _generation_table(report: dict, key: str) -> list[str]:
    """The in-domain generation metrics of one mode (`key`: its generation metrics in report.json)."""
    lines = _header(report)
    lines.append(_row(report, "rows answered", lambda m: m["indomain"][key]["rows"]))
    for field, label in [
        ("mode_adherence", "answers that keep to the mode"),
        ("think_compliance", "think-format compliance"),
        ("truncated", "truncated at max_new_tokens"),
        ("loop_share", "outputs with a repetition loop"),
    ]:
        lines.append(_row(report, label, lambda m, k=field: m["indomain"][key][k], _pct))
    for field, label in [
        ("rouge-1", "ROUGE-1 F1 (jieba words)"),
        ("rouge-2", "ROUGE-2 F1 (jieba words)"),
        ("rouge-l", "ROUGE-L F1 (jieba words)"),
        ("bleu4_corpus", "BLEU-4 corpus (characters)"),
        ("bleu4_sentence", "BLEU-4 sentence mean (characters, smoothed)"),
        ("distinct4", "distinct-4 (characters)"),
    ]:
        lines.append(_row(report, label, lambda m, k=field: m["indomain"][key][k]))
    for field, label in [
        ("reasoning_tokens_mean", "reasoning tokens, mean"),
        ("reasoning_tokens_median", "reasoning tokens, median"),
        ("answer_tokens_mean", "answer tokens, mean"),
        ("answer_tokens_median", "answer tokens, median"),
    ]:
        lines.append(_row(report, label, lambda m, k=field: m["indomain"][key][k], lambda v: _fmt(v, 1)))
    return lines


def _row_mode_losses(report: dict) -> list[str]:
    """The loss of the thinking and the non-thinking rows apart, when the held-out split has both."""
    row_modes = {
        mode for m in report["models"].values() for mode in m["indomain"].get("loss_by_row_mode", {})
    }
    if len(row_modes) < 2:
        return []
    lines = _header(report, "rows (their own mode)")
    for row_mode in ("thinking", "non_thinking"):
        for part in ("reasoning", "answer"):
            lines.append(
                _row(
                    report,
                    f"{row_mode.replace('_', '-')} rows: {part} loss",
                    lambda m, r=row_mode, p=part: m["indomain"]["loss_by_row_mode"][r][p]["loss"],
                )
            )
    return [*lines, ""]


def _modes_side_by_side(report: dict) -> list[str]:
    """Each model in each mode: mode adherence, answer quality and MCQ accuracy of generated answers."""
    roles = report_roles(report)
    columns = [(role, mode) for role in roles for mode in GENERATED]
    cells = ["metric"] + [f"{role}, {MODE_LABELS[mode]}" for role, mode in columns]
    lines = ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]

    def generation(role: str, mode: str) -> dict:
        return report["models"][role]["indomain"].get(INDOMAIN[mode][0]) or {}

    def mcq(role: str, mode: str) -> dict:
        return report["models"][role]["mcq"].get(mode) or {}

    measures = [
        ("held-out answers that keep to the mode", lambda r, m: generation(r, m).get("mode_adherence"), _pct),
        ("held-out ROUGE-L F1", lambda r, m: generation(r, m).get("rouge-l"), _fmt),
        ("held-out BLEU-4 corpus", lambda r, m: generation(r, m).get("bleu4_corpus"), _fmt),
        ("held-out reasoning tokens, mean", lambda r, m: generation(r, m).get("reasoning_tokens_mean"), _fmt),
        ("held-out answer tokens, mean", lambda r, m: generation(r, m).get("answer_tokens_mean"), _fmt),
        ("held-out truncated", lambda r, m: generation(r, m).get("truncated"), _pct),
        (
            "MCQ accuracy (pooled)",
            lambda r, m: (mcq(r, m).get("accuracy") or {}).get("overall", {}).get("accuracy"),
            _pct,
        ),
        ("MCQ accuracy (macro)", lambda r, m: (mcq(r, m).get("macro") or {}).get("accuracy"), _pct),
        ("MCQ answers that keep to the mode", lambda r, m: mcq(r, m).get("mode_adherence"), _pct),
        ("MCQ truncated", lambda r, m: mcq(r, m).get("truncated"), _pct),
    ]
    for label, getter, formatter in measures:
        lines.append("| " + " | ".join([label, *(formatter(getter(r, m)) for r, m in columns)]) + " |")
    held_out = {mode: generation(roles[-1], mode).get("rows") for mode in GENERATED}
    lines += [
        "",
        f"Held-out rows answered: {held_out['think'] or 0} in thinking mode, {held_out['no_think'] or 0} in "
        "non-thinking mode. – : the mode did not run for that part.",
    ]
    return lines


def _decoding(settings: dict) -> str:
    if not settings["do_sample"]:
        return "greedy"
    return (
        f"sampling (temperature {settings['temperature']}, top-p {settings['top_p']}, "
        f"top-k {settings['top_k']})"
    )


def render_markdown(report: dict, predictions: dict, charts: dict[str, str], samples: int = 3) -> str:
    models = report["models"]
    generation = report["generation"]
    config = report["config"]
    decoding = _decoding(generation)
    no_think = report.get("generation_no_think")
    ran_no_think = any(
        m["indomain"].get("generation_no_think") or "no_think" in m["mcq"] for m in models.values()
    )
    if no_think and ran_no_think and _decoding(no_think) != decoding:
        decoding = f"thinking mode {decoding}, non-thinking mode {_decoding(no_think)}"
    lines = [f"# Evaluation report: {report['name']}", ""]
    lines += ["## Setup", ""]
    for role in report_roles(report):
        timings = ", ".join(
            f"{k.removesuffix('_s')} {v:.0f}s" for k, v in models[role].get("timings_s", {}).items()
        )
        lines.append(f"- **{role}**: `{models[role]['source']}` ({timings})")
    code = report.get("code") or {}
    commit = (code.get("sha") or "unknown")[:12] + (" (uncommitted changes)" if code.get("dirty") else "")
    versions = ", ".join(
        f"{name} {version}" for name, version in report.get("versions", {}).items() if version
    )
    lines += [
        f"- held-out data: `{report['data']}`, {report['rows']} rows",
        f"- MCQ: {_benchmark_files(report.get('mcq_files', []))}, {report.get('mcq_questions', 0)} questions "
        f"from {report.get('mcq_sources', 0)} sources, mode {config['mcq_mode']}{_skipped_rows(report)}",
        f"- generation: {_modes_run(report)}, {decoding}, max_new_tokens {generation['max_new_tokens']}, "
        f"seed {config['seed']}; backend {report['backend']}, {report.get('dtype')} on {report['device']} "
        f"({report.get('device_name') or 'unknown hardware'})",
        f"- code: commit {commit}; {versions}",
        f"- created {report['created']}",
        "",
    ]

    lines += ["## In-domain: loss and perplexity", ""]
    lines += _header(report)
    for segment in ("reasoning", "answer"):
        lines.append(
            _row(
                report, f"{segment} loss (nats/token)", lambda m, s=segment: m["indomain"]["loss"][s]["loss"]
            )
        )
        lines.append(
            _row(report, f"{segment} perplexity", lambda m, s=segment: m["indomain"]["loss"][s]["ppl"], _fmt)
        )
        lines.append(
            _row(report, f"{segment} tokens scored", lambda m, s=segment: m["indomain"]["loss"][s]["tokens"])
        )
    lines += ["", *_row_mode_losses(report), f"![loss]({charts['loss']})", ""]

    lines += ["## In-domain: generation", ""]
    generated_modes = _indomain_modes(report)
    for mode in generated_modes:
        if len(generated_modes) > 1 or mode != "think":
            lines += [f"### {MODE_LABELS[mode].capitalize()} mode", ""]
        lines += _generation_table(report, INDOMAIN[mode][0])
        lines.append("")
    reference = models[report_roles(report)[-1]]["indomain"]["reference"]
    lines += [
        "",
        f"Reference: reasoning {_fmt(reference['reasoning_tokens_mean'], 1)} tokens, answer "
        f"{_fmt(reference['answer_tokens_mean'], 1)} tokens on average.",
        "",
        f"![similarity]({charts['similarity']})",
        "",
        f"![format]({charts['format']})",
        "",
        f"![lengths]({charts['lengths']})",
        "",
    ]

    if config.get("thinking") == "both":  # the same rows and questions in each mode
        lines += ["## Thinking modes side by side", "", *_modes_side_by_side(report), ""]
    lines += ["## Medical MCQ: thinking mode", ""]
    lines += _mcq_section(report, predictions, "think")
    if any("no_think" in m["mcq"] for m in models.values()):
        lines += ["## Medical MCQ: non-thinking mode", ""]
        lines += _mcq_section(report, predictions, "no_think")
    lines += ["## Medical MCQ: likelihood mode (no reasoning)", ""]
    lines += _mcq_section(report, predictions, "likelihood")
    if "mcq" in charts:
        lines += [f"![mcq]({charts['mcq']})", ""]

    lines += ["## Samples", ""]
    lines += _samples_section(report, predictions, samples)
    lines += ["## How the metrics are computed", "", METHOD_NOTES]
    return "\n".join(lines)


def render_report(out_dir: Path, report: dict, predictions: dict, samples: int = 3) -> None:
    charts = draw_charts(out_dir, report, predictions)
    report["charts"] = charts
    write_text_atomic(out_dir / "report.md", render_markdown(report, predictions, charts, samples))
