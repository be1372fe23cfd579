"""The evaluation's figures, computed from the predictions `medsft eval` saved (so a report can be made again
from them, `--from-predictions`): loss, generation and MCQ metrics per model and mode, the paired comparison,
and report.json / report.md written."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from medsft import metrics
from medsft.answer_choice import ANSWER_LINE, reason_rule
from medsft.errors import MedsftError
from medsft.jsonl import read_jsonl, write_json
from medsft.mcq import accuracy_table, macro_average, paired_comparison
from medsft.metrics import SegmentLoss

log = logging.getLogger(__name__)


INDOMAIN_KINDS = {"think": "indomain", "no_think": "indomain_no_think"}  # mode -> predictions kind
ROLES = ("baseline", "model")  # report order: the reference point first

# Qwen3's two modes, as generation runs them: mode -> enable_thinking
THINKING_MODES = {"think": True, "no_think": False}

GENERATION_KEYS = {"think": "generation", "no_think": "generation_no_think"}  # mode -> report key

MCQ_MODES = {"think": "mcq_think", "no_think": "mcq_no_think", "likelihood": "mcq_likelihood"}

PREDICTION_KINDS = (*INDOMAIN_KINDS.values(), *MCQ_MODES.values())

ROW_MODES = {True: "thinking", False: "non_thinking"}

MODE_NAMES = {
    "think": "thinking mode",
    "no_think": "non-thinking mode",
}  # a held-out row's own mode, as it was trained


class EvaluationError(MedsftError):
    """An input or option the evaluation cannot use; the message says what to do."""


def _finite(value: float) -> float | None:
    return None if value != value else round(value, 6)  # NaN → null in JSON


def _loss_summary(records: list[dict]) -> dict:
    """Token-weighted loss and perplexity of the reasoning and answer parts over the rows."""
    parts = {"reasoning": SegmentLoss(), "answer": SegmentLoss()}
    for record in records:
        for part in parts:
            parts[part] = parts[part].add(SegmentLoss(**record["loss"][part]))
    return {
        part: {"loss": _finite(loss.mean), "ppl": _finite(loss.perplexity), "tokens": loss.tokens}
        for part, loss in parts.items()
    }


def generation_metrics(records: list[dict], mode: str) -> dict:
    """Format, similarity to the reference answer, lengths and degeneration of the answers generated in one
    mode; `mode_adherence` is the share that keeps to that mode (metrics.follows_mode)."""
    rouge = [metrics.rouge_f(r["answer"], r["reference_answer"]) for r in records]
    return {
        "rows": len(records),
        "mode_adherence": _finite(
            metrics.share(metrics.follows_mode(r["text"], THINKING_MODES[mode]) for r in records)
        ),
        "think_compliance": _finite(metrics.share(metrics.think_compliant(r["text"]) for r in records)),
        "truncated": _finite(metrics.share(r["truncated"] for r in records)),
        **{key: _finite(metrics.mean(s[key] for s in rouge)) for key in metrics.ROUGE_KEYS},
        "bleu4_corpus": _finite(
            metrics.corpus_bleu4([r["answer"] for r in records], [r["reference_answer"] for r in records])
        ),
        "bleu4_sentence": _finite(
            metrics.mean(metrics.sentence_bleu4(r["answer"], r["reference_answer"]) for r in records)
        ),
        "reasoning_tokens_mean": _finite(metrics.mean(r["reasoning_tokens"] for r in records)),
        "reasoning_tokens_median": _finite(metrics.median(r["reasoning_tokens"] for r in records)),
        "answer_tokens_mean": _finite(metrics.mean(r["answer_tokens"] for r in records)),
        "answer_tokens_median": _finite(metrics.median(r["answer_tokens"] for r in records)),
        "loop_share": _finite(metrics.share(metrics.has_repetition_loop(r["text"]) for r in records)),
        "distinct4": _finite(metrics.mean(metrics.distinct_n(r["text"], 4) for r in records)),
    }


def indomain_metrics(records: list[dict], no_think: list[dict] | None = None) -> dict:
    """The held-out rows' loss (each row once, scored in its own mode as training scores it: pooled, and per
    row mode) and the generation metrics of each mode that ran (`generation`: thinking mode,
    `generation_no_think`: non-thinking mode; null when that mode did not run)."""
    by_mode = {"think": records, "no_think": no_think or []}
    rows = {r["index"]: r for mode_records in by_mode.values() for r in mode_records}
    distinct = [rows[index] for index in sorted(rows)]
    per_row_mode = {}
    for row_mode in ROW_MODES.values():
        group = [r for r in distinct if r.get("row_mode", "thinking") == row_mode]
        if group:
            per_row_mode[row_mode] = {"rows": len(group), **_loss_summary(group)}
    return {
        "rows": len(distinct),
        "loss": _loss_summary(distinct),
        "loss_by_row_mode": per_row_mode,
        **{
            GENERATION_KEYS[mode]: generation_metrics(mode_records, mode) if mode_records else None
            for mode, mode_records in by_mode.items()
        },
        "reference": {
            "reasoning_tokens_mean": _finite(metrics.mean(r["reference_reasoning_tokens"] for r in distinct)),
            "answer_tokens_mean": _finite(metrics.mean(r["reference_answer_tokens"] for r in distinct)),
        },
    }


def _json_ready(value):
    """Floats rounded to 6 digits and NaN as null, through nested dicts and lists."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value


def _require_options(records: list[dict], kind: str) -> None:
    if any("options" not in record for record in records):
        raise EvaluationError(
            f"the {kind} predictions have no `options` (written by an earlier version of `medsft eval`): "
            "run the evaluation again."
        )


def answer_line_shares(think: list[dict]) -> dict:
    """The share of answers given in the asked-for final line (`答案：X`), per source and "overall"."""
    groups: dict[str, list[dict]] = {"overall": list(think)}
    for record in think:
        groups.setdefault(record["source"], []).append(record)
    return {
        source: {
            "share": _finite(metrics.share(r["extraction"] == ANSWER_LINE for r in records)),
            "answers": len(records),
        }
        for source, records in sorted(groups.items())
    }


def generated_mcq_metrics(records: list[dict], mode: str) -> dict:
    """The accuracy of answers generated in one mode, with their format: truncation, mode adherence, the
    answer line and how the grader read them."""
    return {
        "accuracy": _json_ready(accuracy_table(records)),
        "macro": _json_ready(macro_average(records)),
        "truncated": _finite(metrics.share(r["truncated"] for r in records)),
        "think_compliance": _finite(metrics.share(metrics.think_compliant(r["text"]) for r in records)),
        "mode_adherence": _finite(
            metrics.share(metrics.follows_mode(r["text"], THINKING_MODES[mode]) for r in records)
        ),
        "multi_answer_questions": sum(len(r["gold"]) > 1 for r in records),
        "answer_line": answer_line_shares(records),
        "extraction_reasons": dict(Counter(reason_rule(r["extraction"]) for r in records).most_common()),
    }


def mcq_metrics(think: list[dict], likelihood: list[dict], no_think: list[dict] | None = None) -> dict:
    """Per mode: the accuracy table (per source and pooled "overall", with intervals, chance levels and
    answer distributions) and the macro average over sources."""
    result: dict = {}
    for mode, records in (("think", think), ("no_think", no_think or [])):
        if records:
            _require_options(records, MODE_NAMES[mode])
            result[mode] = generated_mcq_metrics(records, mode)
    if likelihood:
        _require_options(likelihood, "likelihood-mode")
        result["likelihood"] = {
            "accuracy": _json_ready(accuracy_table(likelihood)),
            "macro": _json_ready(macro_average(likelihood)),
            "multi_answer_excluded": sum(not r["scored"] for r in likelihood),
        }
    return result


def mcq_comparison(predictions: dict[str, dict[str, list[dict]]]) -> dict:
    """Per mode, baseline vs model on the same questions: McNemar's test per source and overall."""
    if not {"baseline", "model"} <= predictions.keys():
        return {}
    comparison = {}
    for mode, kind in MCQ_MODES.items():
        base, tuned = predictions["baseline"][kind], predictions["model"][kind]
        if base and tuned:
            comparison[mode] = _json_ready(paired_comparison(base, tuned))
    return comparison


def _read_run(out_dir: Path) -> dict:
    run_path = out_dir / "run.json"
    if not run_path.is_file():
        raise EvaluationError(f"{run_path} not found: not an evaluation folder (run `medsft eval` first).")
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluationError(f"{run_path} is not valid JSON ({error}).") from error
    if not isinstance(run, dict) or "config" not in run or "models" not in run:
        raise EvaluationError(
            f"{run_path} was not written by this version of `medsft eval` (no config or models): "
            "run the evaluation again."
        )
    return run


def compute_report(out_dir: Path) -> tuple[dict, dict[str, dict[str, list[dict]]]]:
    """report.json content and the predictions per role, from <out_dir>/run.json and predictions/."""
    run = _read_run(out_dir)
    predictions: dict[str, dict[str, list[dict]]] = {}
    models = {}
    for role in ROLES:
        if role not in run["models"]:
            continue
        files = {kind: out_dir / "predictions" / f"{role}.{kind}.jsonl" for kind in PREDICTION_KINDS}
        predictions[role] = {kind: read_jsonl(path) if path.is_file() else [] for kind, path in files.items()}
        kinds = predictions[role]
        models[role] = {
            **run["models"][role],
            "indomain": indomain_metrics(kinds["indomain"], kinds["indomain_no_think"]),
            "mcq": mcq_metrics(kinds["mcq_think"], kinds["mcq_likelihood"], kinds["mcq_no_think"]),
        }
    report = {key: value for key, value in run.items() if key != "models"}
    report["models"] = models
    report["comparison"] = mcq_comparison(predictions)
    return report, predictions


def write_report(out_dir: Path, samples: int) -> dict:
    from medsft.report import render_report

    report, predictions = compute_report(out_dir)
    report["report_created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    render_report(out_dir, report, predictions, samples=samples)
    write_json(out_dir / "report.json", report)
    log.info("report: %s", out_dir / "report.md")
    return report
