"""report.md and PNG charts of an evaluation (one model, or a baseline and a model side by side)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

from medsft.chat_format import END_OF_TURN, THINK_CLOSE, THINK_OPEN
from medsft.jsonl import write_text_atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CHARTS = {
    "loss": "loss.png",
    "similarity": "similarity.png",
    "format": "format.png",
    "lengths": "lengths.png",
    "mcq": "mcq_accuracy.png",
}
COLORS = {"baseline": "#9aa5b1", "model": "#2f6fde", "reference": "#e0a040"}

METHOD_NOTES = f"""\
- **Loss / perplexity**: teacher forcing over the conversation rendered by the tokenizer's chat
  template. Mean negative log-likelihood per token (nats), separately for the reasoning part
  (`{THINK_OPEN}` … `{THINK_CLOSE}`, both tags included) and the answer part (after `{THINK_CLOSE}` up to and
  including `{END_OF_TURN}`); the boundary is the `{THINK_CLOSE}` token. Token-weighted over all rows;
  perplexity = exp(loss). System and user tokens are not scored.
- **Think-format compliance**: share of outputs that start with `{THINK_OPEN}`, close it exactly once
  with `{THINK_CLOSE}`, hold no further think tags, and end with a non-empty answer. **Truncated**: share
  that reached `max_new_tokens` before `{END_OF_TURN}`.
- **ROUGE-1/2/L**: F1 of the answer part (after `{THINK_CLOSE}`) against the reference answer, on
  jieba-segmented words (rouge-chinese; ROUGE-L is its sentence-split LCS). Mean over rows; an empty
  answer scores 0.
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
- **MCQ, thinking mode**: the model answers in thinking mode; the chosen letters are extracted from
  the answer part only (letters in the reasoning are ignored): the last explicit statement (`答案：C`,
  `选C`, full-width letters folded), else a bracketed `(C)` or line-start `C.` letter when all such
  mentions agree, else an answer made of letters only (`AC`). Letters outside the question's options
  are rejected. Multi-answer questions count as correct only on an exact set match. Unparseable
  answers count as wrong and are listed.
- **MCQ, likelihood mode**: no reasoning. Prompt with the empty think block (as
  `enable_thinking=False`) and the answer begun with `答案：`; the option letter with the highest
  next-token log-probability is the choice (as the CMMLU / C-Eval harnesses do). Multi-answer
  questions cannot be chosen by one token: they are excluded from this accuracy and counted.
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


def _roles(report: dict) -> list[str]:
    return list(report["models"])


def _header(report: dict, first: str = "metric") -> list[str]:
    roles = _roles(report)
    cells = [first] + [f"{role} (`{report['models'][role]['source']}`)" for role in roles]
    if len(roles) == 2:
        cells.append("Δ (model − baseline)")
    lines = ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]
    return lines


def _row(report: dict, label: str, getter, formatter=_fmt) -> str:
    values = []
    for role in _roles(report):
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


# --- charts -------------------------------------------------------------------------------------------------


def _grouped_bars(
    axis, groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str
) -> None:
    width = 0.8 / max(len(series), 1)
    for number, (label, values) in enumerate(series.items()):
        positions = [i + (number - (len(series) - 1) / 2) * width for i in range(len(groups))]
        heights = [0.0 if v is None else v for v in values]
        bars = axis.bar(positions, heights, width, label=label, color=COLORS.get(label.split(" ")[0]))
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if value is None else f"{value:.2f}"
            axis.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    axis.set_xticks(range(len(groups)), groups, fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_charts(out_dir: Path, report: dict, predictions: dict) -> dict[str, str]:
    roles = _roles(report)
    models = report["models"]
    charts: dict[str, str] = {}

    figure, axis = plt.subplots(figsize=(6, 3.6))
    segments = ["reasoning", "answer"]
    _grouped_bars(
        axis,
        segments,
        {r: [models[r]["indomain"]["loss"][s]["loss"] for s in segments] for r in roles},
        "Teacher-forced loss on the held-out split",
        "mean NLL per token (nats)",
    )
    _save(figure, out_dir / CHARTS["loss"])
    charts["loss"] = CHARTS["loss"]

    figure, axis = plt.subplots(figsize=(7, 3.6))
    keys = ["rouge-1", "rouge-2", "rouge-l", "bleu4_corpus"]
    _grouped_bars(
        axis,
        ["ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU-4 (char)"],
        {r: [models[r]["indomain"]["generation"][k] for k in keys] for r in roles},
        "Answer similarity to the reference",
        "score",
    )
    _save(figure, out_dir / CHARTS["similarity"])
    charts["similarity"] = CHARTS["similarity"]

    figure, axis = plt.subplots(figsize=(7, 3.6))
    keys = ["think_compliance", "truncated", "loop_share"]
    _grouped_bars(
        axis,
        ["think format OK", "truncated", "repetition loop"],
        {r: [models[r]["indomain"]["generation"][k] for k in keys] for r in roles},
        "Output format and degeneration (share of outputs)",
        "share",
    )
    axis.set_ylim(0, 1.1)
    _save(figure, out_dir / CHARTS["format"])
    charts["format"] = CHARTS["format"]

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, (field, reference_field, title) in zip(
        axes,
        [
            ("reasoning_tokens", "reference_reasoning_tokens", "Reasoning length"),
            ("answer_tokens", "reference_answer_tokens", "Answer length"),
        ],
        strict=True,
    ):
        first_role = roles[-1]
        reference = [r[reference_field] for r in predictions[first_role]["indomain"]]
        series = {
            "reference": reference,
            **{r: [p[field] for p in predictions[r]["indomain"]] for r in roles},
        }
        top = max((max(v) for v in series.values() if v), default=1) or 1
        bins = [top * i / 20 for i in range(21)]
        for label, values in series.items():
            style = {"alpha": 0.45} if label == "reference" else {"histtype": "step", "linewidth": 2}
            axis.hist(values, bins=bins, label=label, color=COLORS.get(label), **style)
        axis.set_title(title + " (tokens)", fontsize=10)
        axis.set_xlabel("tokens")
        axis.set_ylabel("outputs")
        axis.legend(fontsize=8)
    _save(figure, out_dir / CHARTS["lengths"])
    charts["lengths"] = CHARTS["lengths"]

    modes = [m for m in ("think", "likelihood") if any(m in models[r]["mcq"] for r in roles)]
    if modes:
        figure, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 3.8), squeeze=False)
        for axis, mode in zip(axes[0], modes, strict=True):
            groups = sorted(
                {g for r in roles for g in models[r]["mcq"].get(mode, {}).get("accuracy", {})} - {"overall"}
            )
            groups.append("overall")
            series = {
                r: [
                    models[r]["mcq"].get(mode, {}).get("accuracy", {}).get(g, {}).get("accuracy")
                    for g in groups
                ]
                for r in roles
            }
            title = (
                "MCQ accuracy, thinking mode" if mode == "think" else "MCQ accuracy, option-letter likelihood"
            )
            _grouped_bars(axis, groups, series, title, "accuracy")
            axis.set_ylim(0, 1.05)
        _save(figure, out_dir / CHARTS["mcq"])
        charts["mcq"] = CHARTS["mcq"]
    return charts


# --- markdown -----------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _sample_cell(reasoning: str, answer: str, caption: str) -> str:
    folded = f"<details><summary>reasoning ({len(reasoning)} chars)</summary>{_cell(reasoning)}</details>"
    return f'<td valign="top"><b>{caption}</b>{folded}{_cell(answer) or "<i>(no answer)</i>"}</td>'


def _samples_section(report: dict, predictions: dict, count: int) -> list[str]:
    roles = _roles(report)
    lines = []
    rows = predictions[roles[-1]]["indomain"][:count]
    for number, row in enumerate(rows, 1):
        lines.append(f"### Sample {number}: {row['question'][:120]}")
        lines.append("")
        cells = [_sample_cell(row["reference_reasoning"], row["reference_answer"], "reference")]
        for role in roles:
            match = next((p for p in predictions[role]["indomain"] if p["index"] == row["index"]), None)
            if match is None:
                continue
            flags = "think format OK" if match["well_formed"] else "think format broken"
            flags += ", truncated" if match["truncated"] else ""
            caption = f"{role} ({match['reasoning_tokens']}+{match['answer_tokens']} tokens, {flags})"
            cells.append(_sample_cell(match["reasoning"], match["answer"], caption))
        lines += ["<table><tr>", *cells, "</tr></table>", ""]
    return lines


def _mcq_section(report: dict, predictions: dict, mode: str) -> list[str]:
    roles = [r for r in _roles(report) if mode in report["models"][r]["mcq"]]
    if not roles:
        note = report.get("mcq_note") or f"not run (--mcq-mode {report['config']['mcq_mode']})."
        return [f"_{note}_", ""]
    groups = sorted({g for r in roles for g in report["models"][r]["mcq"][mode]["accuracy"]} - {"overall"})
    groups.append("overall")
    lines = _header(report, "source")
    for group in groups:

        def accuracy(model, group=group):
            return model["mcq"][mode]["accuracy"][group]["accuracy"]

        table = report["models"][roles[-1]]["mcq"][mode]["accuracy"].get(group, {})
        lines.append(_row(report, f"{group} (n={table.get('scored', '?')})", accuracy, _pct))
    if mode == "think":
        lines.append(
            _row(
                report,
                "unparseable answers",
                lambda m: m["mcq"]["think"]["accuracy"]["overall"]["unparseable"],
            )
        )
        lines.append(
            _row(report, "truncated at max_new_tokens", lambda m: m["mcq"]["think"]["truncated"], _pct)
        )
        lines.append("")
        lines.append(
            "Multi-answer questions are scored by exact set match "
            f"({report['models'][roles[-1]]['mcq']['think']['multi_answer_questions']} in this sample)."
        )
        for role in roles:
            failed = [r for r in predictions[role]["mcq_think"] if not r["parsed"]][:5]
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
        lines += ["", f"Multi-answer questions excluded from this accuracy: {excluded}."]
    lines.append("")
    return lines


def render_markdown(report: dict, predictions: dict, charts: dict[str, str], samples: int = 3) -> str:
    models = report["models"]
    generation = report["generation"]
    config = report["config"]
    decoding = (
        "greedy"
        if not generation["do_sample"]
        else f"sampling (temperature {generation['temperature']}, top-p {generation['top_p']}, "
        f"top-k {generation['top_k']})"
    )
    lines = [f"# Evaluation report: {report['name']}", ""]
    lines += ["## Setup", ""]
    for role in _roles(report):
        timings = ", ".join(
            f"{k.removesuffix('_s')} {v:.0f}s" for k, v in models[role].get("timings_s", {}).items()
        )
        lines.append(f"- **{role}**: `{models[role]['source']}` ({timings})")
    lines += [
        f"- held-out data: `{report['data']}`, {report['rows']} rows",
        f"- MCQ: `{report.get('mcq_file')}`, {report.get('mcq_questions', 0)} questions, "
        f"mode {config['mcq_mode']}",
        f"- generation: thinking mode, {decoding}, max_new_tokens {generation['max_new_tokens']}, "
        f"seed {config['seed']}; backend {report['backend']} on {report['device']}",
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
    lines += ["", f"![loss]({charts['loss']})", ""]

    lines += ["## In-domain: generation", ""]
    lines += _header(report)
    shares = [
        ("think_compliance", "think-format compliance"),
        ("truncated", "truncated at max_new_tokens"),
        ("loop_share", "outputs with a repetition loop"),
    ]
    for key, label in shares:
        lines.append(_row(report, label, lambda m, k=key: m["indomain"]["generation"][k], _pct))
    for key, label in [
        ("rouge-1", "ROUGE-1 F1 (jieba words)"),
        ("rouge-2", "ROUGE-2 F1 (jieba words)"),
        ("rouge-l", "ROUGE-L F1 (jieba words)"),
        ("bleu4_corpus", "BLEU-4 corpus (characters)"),
        ("bleu4_sentence", "BLEU-4 sentence mean (characters, smoothed)"),
        ("distinct4", "distinct-4 (characters)"),
    ]:
        lines.append(_row(report, label, lambda m, k=key: m["indomain"]["generation"][k]))
    for key, label in [
        ("reasoning_tokens_mean", "reasoning tokens, mean"),
        ("reasoning_tokens_median", "reasoning tokens, median"),
        ("answer_tokens_mean", "answer tokens, mean"),
        ("answer_tokens_median", "answer tokens, median"),
    ]:
        lines.append(
            _row(report, label, lambda m, k=key: m["indomain"]["generation"][k], lambda v: _fmt(v, 1))
        )
    reference = models[_roles(report)[-1]]["indomain"]["reference"]
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

    lines += ["## Medical MCQ: thinking mode", ""]
    lines += _mcq_section(report, predictions, "think")
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
