"""The evaluation report's charts (matplotlib, written as PNG beside report.md): loss, similarity, format,
lengths and MCQ accuracy, the baseline beside the tuned model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

CHARTS = {
    "loss": "loss.png",
    "similarity": "similarity.png",
    "format": "format.png",
    "lengths": "lengths.png",
    "mcq": "mcq_accuracy.png",
}

COLORS = {"baseline": "#9aa5b1", "model": "#2f6fde", "reference": "#e0a040"}

CHANCE_COLOR = "#d62728"

MODES = ("think", "no_think", "likelihood")

MODE_TITLES = {
    "think": "MCQ accuracy, thinking mode",
    "no_think": "MCQ accuracy, non-thinking mode",
    "likelihood": "MCQ accuracy, option-letter likelihood",
}

GENERATED = ("think", "no_think")  # Qwen3's two modes of generated answers

MODE_LABELS = {"think": "thinking", "no_think": "non-thinking"}

# mode -> (its generation metrics in report.json, its in-domain predictions kind)
INDOMAIN = {"think": ("generation", "indomain"), "no_think": ("generation_no_think", "indomain_no_think")}


def report_roles(report: dict) -> list[str]:
    return list(report["models"])


def mcq_sources(report: dict, mode: str) -> list[str]:
    """The sources (subjects) of a mode, sorted, without "overall"."""
    return sorted(
        {g for m in report["models"].values() for g in m["mcq"].get(mode, {}).get("accuracy", {})}
        - {"overall"}
    )


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


def primary_mode(report: dict) -> str:
    """The mode the charts and samples show: thinking when it ran, else non-thinking."""
    models = report["models"].values()
    return next((m for m in GENERATED if any(r["indomain"].get(INDOMAIN[m][0]) for r in models)), "think")


def draw_charts(out_dir: Path, report: dict, predictions: dict) -> dict[str, str]:
    roles = report_roles(report)
    models = report["models"]
    charts: dict[str, str] = {}
    generation_key, kind = INDOMAIN[primary_mode(report)]

    def generated(role: str, key: str) -> float | None:
        return (models[role]["indomain"].get(generation_key) or {}).get(key)

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
        {r: [generated(r, k) for k in keys] for r in roles},
        f"Answer similarity to the reference ({MODE_LABELS[primary_mode(report)]} mode)",
        "score",
    )
    _save(figure, out_dir / CHARTS["similarity"])
    charts["similarity"] = CHARTS["similarity"]

    figure, axis = plt.subplots(figsize=(7, 3.6))
    keys = ["mode_adherence", "think_compliance", "truncated", "loop_share"]
    _grouped_bars(
        axis,
        ["keeps its mode", "think format OK", "truncated", "repetition loop"],
        {r: [generated(r, k) for k in keys] for r in roles},
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
        reference = [r[reference_field] for r in predictions[first_role][kind]]
        series = {
            "reference": reference,
            **{r: [p[field] for p in predictions[r][kind]] for r in roles},
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

    modes = [m for m in MODES if any(m in models[r]["mcq"] for r in roles)]
    if modes:
        _mcq_chart(out_dir / CHARTS["mcq"], report, modes)
        charts["mcq"] = CHARTS["mcq"]
    return charts


def _mcq_chart(path: Path, report: dict, modes: list[str]) -> None:
    """Horizontal bars per source (subject), pooled and macro overall: accuracy with its 95 % interval and a
    red tick at the chance level."""
    roles = report_roles(report)
    height = 1.4 + 0.22 * max(len(mcq_sources(report, m)) + 2 for m in modes) * max(len(roles), 1)
    figure, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), max(3.8, height)), squeeze=False)
    for axis, mode in zip(axes[0], modes, strict=True):
        groups = [*mcq_sources(report, mode), "overall"]
        labels = [*groups[:-1], "overall (pooled)", "overall (macro)"]
        bar = 0.8 / max(len(roles), 1)
        for number, role in enumerate(roles):
            mcq = report["models"][role]["mcq"].get(mode)
            if mcq is None:
                continue
            values, low, high = [], [], []
            for group in groups:
                row = mcq["accuracy"].get(group) or {}
                value = row.get("accuracy") or 0.0
                interval = row.get("ci95") or [value, value]
                values.append(value)
                low.append(value - interval[0])
                high.append(interval[1] - value)
            positions = [i + (number - (len(roles) - 1) / 2) * bar for i in range(len(labels))]
            color = COLORS.get(role)
            whiskers = {"ecolor": "#444444", "elinewidth": 1, "capsize": 2}
            axis.barh(
                positions[:-1], values, bar, xerr=[low, high], color=color, label=role, error_kw=whiskers
            )
            macro = (mcq.get("macro") or {}).get("accuracy") or 0.0
            axis.barh(positions[-1], macro, bar, color=color)  # no interval: a mean, not one proportion
        reference = report["models"][roles[-1]]["mcq"].get(mode) or report["models"][roles[0]]["mcq"][mode]
        chances = [((reference["accuracy"].get(g) or {}).get("chance") or {}).get("level") for g in groups]
        chances.append((reference.get("macro") or {}).get("chance_level"))
        for i, level in enumerate(chances):
            if level is not None:
                axis.plot([level, level], [i - 0.45, i + 0.45], color=CHANCE_COLOR, linewidth=2)
        axis.plot([], [], color=CHANCE_COLOR, linewidth=2, label="chance level")
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_xlim(0, 1)
        axis.set_xlabel("accuracy (whiskers: 95 % Wilson interval)")
        axis.set_title(MODE_TITLES[mode], fontsize=10)
        axis.legend(fontsize=7, loc="lower right")
    _save(figure, path)
