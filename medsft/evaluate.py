"""`medsft eval`: in-domain loss and generation metrics, a medical MCQ benchmark (one file, or a folder of
subject files), and a base-vs-tuned report with intervals, chance levels and paired tests.

Stages: (1) each model writes its predictions (JSONL) under <out>/predictions/, and run.json records what ran
(options, files, backend, dtype, device, commit, versions); (2) metrics are computed from those files only;
(3) report.md, report.json and the charts are written. `--from-predictions DIR` reruns (2) and (3) without
loading any model.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, NamedTuple

from transformers import HfArgumentParser

from medsft.answer_choice import extract_choice
from medsft.arguments import WholeNumber, check_range, command_parser, option
from medsft.chat_format import (
    assistant_content,
    build_messages,
    is_non_thinking,
    replace_system_turn,
    split_reasoning,
)
from medsft.engine import (
    Generation,
    GenerationSettings,
    load_engine,
    pick_device,
    pick_dtype,
    resolve_backend,
)
from medsft.eval_metrics import (
    INDOMAIN_KINDS,
    MCQ_MODES,
    MODE_NAMES,
    ROLES,
    ROW_MODES,
    THINKING_MODES,
    EvaluationError,
    write_report,
)
from medsft.jsonl import iter_jsonl, write_json, write_jsonl
from medsft.mcq import (
    Question,
    SkippedRow,
    benchmark_files,
    describe_formats,
    direct_conversation,
    load_benchmark,
    score_by_likelihood,
    select_questions,
    thinking_conversation,
)
from medsft.model import BASELINE_SETTING, MODEL_SETTING, resolve_model_dir
from medsft.options import GenerationArguments, resolve_model_argument, system_prompt_for
from medsft.paths import name_problem, output_dir, processed_dir, shared_dir
from medsft.provenance import describe_device, git_state, package_versions
from medsft.turn_loss import TurnLoss, teacher_forced_losses

DEFAULT_SPLIT_NAME = "delicate_medical_r1_data"
MCQ_DIR = Path("benchmarks") / "xmedbench_zh"
MCQ_SUBSETS = ("cmb-single", "cmexam", "cmmlu-medical", "medqa-mcmle")
MCQ_COLUMNS = ("question", "options", "answer", "source")
THINKING_CHOICES = {"on": ("think",), "off": ("no_think",), "both": ("think", "no_think")}  # --thinking
RUN_CARD = "run_card.json"  # `medsft train` writes it next to the final/ model folder
SKIPPED_ROWS_LISTED = 10  # skipped benchmark rows written out one by one; the rest are counted
VERSIONED_PACKAGES = ("medsft", "torch", "transformers", "vllm", "jieba", "rouge-chinese", "numpy")

log = logging.getLogger(__name__)


# --- options ------------------------------------------------------------------------------------------------


@dataclass
class EvalConfig(GenerationArguments):
    """Every option of `medsft eval`: the generation options every command shares (medsft.options), with
    eval's own defaults where they differ, and eval's own. Parsed from the command line by HfArgumentParser
    (each field is a flag, `--max-new-tokens` and `--max_new_tokens` alike) and written to run.json as it was
    used."""

    max_new_tokens: WholeNumber = option(
        "generation limit per answer, reasoning included", 2048, aliases=["--max-tokens"], metavar="N"
    )
    seed: int = option("sampling seed and MCQ sample seed", 42, metavar="N")
    system_prompt: str | None = option(
        "system turn of the generated answers and the MCQ prompts (default: the one each model was trained "
        'with, as recorded in its folder, else medsft\'s default; "" for none)'
    )
    baseline: str | None = option("a second model evaluated the same way (e.g. Qwen/Qwen3-1.7B)")
    data: Path | None = option("held-out JSONL; unset: data/processed/<name>/val.jsonl", metavar="FILE")
    limit: WholeNumber | None = option("first N held-out rows only (loss and generation)", metavar="N")
    batch_size: WholeNumber = option("prompts per forward/generate batch", 8, metavar="N")
    mcq_file: list[Path] | None = option(
        "benchmark files, folders (e.g. CMMLU's data/test/) or glob patterns, each file a subject: .json "
        "(XMedBench), .csv (CMMLU/C-Eval), .jsonl; see --list-benchmarks; unset: XMedBench, see --mcq-split",
        metavar="PATH",
    )
    mcq_split: Literal["dev", "test"] = option(
        "XMedBench file under $MEDSFT_SHARED/benchmarks/xmedbench_zh when no --mcq-file", "dev"
    )
    mcq_columns: str | None = option(
        "column names, e.g. question=stem,options=choices,answer=label", metavar="SPEC"
    )
    mcq_subset: str | None = option(
        f"comma-separated sources, e.g. {','.join(MCQ_SUBSETS[:2])}", metavar="A,B"
    )
    mcq_limit: WholeNumber | None = option("N questions: a seeded sample stratified by source", metavar="N")
    mcq_mode: Literal["think", "likelihood", "both", "none"] = option(
        "generated answers then letter extraction (in the modes of --thinking), option-letter likelihood, "
        "both, or no MCQ",
        "both",
    )
    thinking: Literal["on", "off", "both"] = option(
        "Qwen3's mode for generated answers: on (thinking; held-out rows trained without reasoning answer "
        "in their own, non-thinking mode), off (enable_thinking=False for every answer), both (every row "
        "and question in each mode, side by side, with mode adherence)",
        "on",
    )
    empty_think_loss: bool | None = option(
        "how the model's non-thinking rows were trained (the recipe key; the held-out loss scores them the "
        "same way); unset: from the run_card.json next to the model folder, else false",
        metavar="true|false",
    )
    name: str | None = option("report folder name; unset: the model folder's name")
    out_dir: Path | None = option("parent folder of reports; unset: output/eval", metavar="DIR")
    samples: WholeNumber = option("sample answers shown in the report", 3, metavar="N")
    progress: bool = option("progress bars while generating", False)
    from_predictions: Path | None = option(
        "recompute metrics, report and charts from an earlier run's folder (no model)", metavar="DIR"
    )
    list_benchmarks: bool = option("print the benchmark formats --mcq-file understands, and exit", False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name is not None and (problem := name_problem(self.name)):
            raise EvaluationError(f"--name {self.name!r}: {problem}; it names one folder inside output/eval.")
        check_range(self, "limit", 1)
        check_range(self, "batch_size", 1)
        check_range(self, "mcq_limit", 1)
        check_range(self, "samples", 0)
        parse_columns(self.mcq_columns)  # a bad spec fails here, before any model is loaded

    @property
    def mcq_subsets(self) -> list[str] | None:
        return (
            [name.strip() for name in self.mcq_subset.split(",") if name.strip()] if self.mcq_subset else None
        )

    def generation_settings(self, mode: str = "think") -> GenerationSettings:
        """The decoding settings of generated answers in one of THINKING_MODES."""
        options = {"max_new_tokens": self.max_new_tokens, "seed": self.seed}
        options["enable_thinking"] = THINKING_MODES[mode]
        if self.greedy:
            return GenerationSettings.greedy(**options)
        if not THINKING_MODES[mode]:
            return GenerationSettings.non_thinking(**options)
        return GenerationSettings(**options)

    @property
    def thinking_modes(self) -> tuple[str, ...]:
        return THINKING_CHOICES[self.thinking]

    def report_name(self) -> str:
        if self.name:
            return self.name
        path = Path(str(self.model or self.from_predictions).rstrip("/"))
        return path.name if path.name not in {"final", ""} else f"{path.parent.name}-{path.name}"

    def as_json(self) -> dict:
        def plain(value):
            if isinstance(value, list):
                return [plain(item) for item in value]
            return str(value) if isinstance(value, Path) else value

        return {key: plain(value) for key, value in asdict(self).items()}


def build_parser() -> HfArgumentParser:
    return command_parser(
        "medsft eval",
        "Evaluate a model (and optionally a baseline): held-out split and a medical MCQ set.",
        EvalConfig,
    )


def parse_config(argv: list[str] | None = None) -> EvalConfig:
    """The options of a command line; a bad flag exits 2 with argparse's usage, a bad value raises (one
    line, exit 2, as eval's other errors)."""
    return EvalConfig(**vars(build_parser().parse_args(argv)))


# --- inputs -------------------------------------------------------------------------------------------------


@dataclass
class Example:
    index: int
    messages: list[dict]  # system + user + assistant (reference)
    reference_reasoning: str
    reference_answer: str

    @property
    def prompt(self) -> list[dict]:
        return self.messages[:-1]

    @property
    def question(self) -> str:
        return self.messages[-2]["content"]

    @property
    def thinking(self) -> bool:
        """The row's own mode: False for a row trained without reasoning (an empty think block)."""
        return not is_non_thinking(self.messages)


def rows_per_mode(examples: list[Example], thinking: str) -> dict[str, list[Example]]:
    """The held-out rows answered in each mode. --thinking on: each row in its own mode (the thinking mode,
    or the non-thinking mode for a row trained without reasoning); off and both: every row in each mode."""
    if thinking == "on":
        plan = {mode: [e for e in examples if e.thinking == on] for mode, on in THINKING_MODES.items()}
    else:
        plan = {mode: list(examples) for mode in THINKING_CHOICES[thinking]}
    return {mode: rows for mode, rows in plan.items() if rows}


def trained_empty_think_loss(model_dir: Path) -> bool | None:
    """The recipe's `empty_think_loss` recorded by `medsft train` in the run card next to a final/ model
    folder (or in the folder itself); None when there is none to read."""
    for path in (model_dir / RUN_CARD, model_dir.parent / RUN_CARD):
        if path.is_file():
            try:
                card = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as error:
                raise EvaluationError(f"{path} cannot be read ({error}): pass --empty-think-loss.") from error
            value = ((card.get("config") or {}).get("medsft") or {}).get("empty_think_loss")
            return value if isinstance(value, bool) else None
    return None


def default_data_path() -> Path:
    folder = processed_dir()
    preferred = folder / DEFAULT_SPLIT_NAME / "val.jsonl"
    if preferred.is_file():
        return preferred
    candidates = sorted(folder.glob("*/val.jsonl"), key=lambda path: path.stat().st_mtime, reverse=True)
    if not candidates:
        raise EvaluationError(
            f"No held-out split found ({folder}/*/val.jsonl). Run `make data` first, or pass --data FILE "
            "(processed {messages} rows, or raw {question, think, answer} rows)."
        )
    log.info("--data not given and %s absent: using the newest split, %s", preferred, candidates[0])
    return candidates[0]


def _example(row: dict, index: int) -> Example:
    if not isinstance(row, dict):
        raise EvaluationError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        messages = [dict(message) for message in row["messages"]]
        if len(messages) < 2 or messages[-1].get("role") != "assistant" or messages[-2].get("role") != "user":
            raise EvaluationError("messages must end with a user turn and the assistant reference")
        if messages[-1].get("reasoning_content"):
            reasoning, answer = messages[-1].pop("reasoning_content").strip(), messages[-1]["content"].strip()
            messages[-1]["content"] = assistant_content(reasoning, answer)
        else:
            reasoning, answer, _ = split_reasoning(messages[-1]["content"])
    elif {"question", "answer"} <= row.keys():  # a raw row, as the original dataset ships it
        reasoning, answer = str(row.get("think") or "").strip(), str(row["answer"]).strip()
        messages = build_messages(str(row["question"]).strip(), reasoning, answer)
    else:
        raise EvaluationError(f"expected `messages` or `question`/`think`/`answer`, got {sorted(row)}")
    return Example(index=index, messages=messages, reference_reasoning=reasoning, reference_answer=answer)


def load_examples(path: Path, limit: int | None = None) -> list[Example]:
    """The rows of a held-out file; `index` is the row's 0-based line number."""
    if not path.is_file():
        raise EvaluationError(f"Data file not found: {path}.")
    examples = []
    for number, row in iter_jsonl(path):
        if limit is not None and len(examples) >= limit:
            break
        try:
            examples.append(_example(row, number - 1))
        except EvaluationError as error:
            raise EvaluationError(f"{path}, line {number}: {error}") from error
    if not examples:
        raise EvaluationError(f"{path} has no rows.")
    return examples


def default_mcq_path(split: str) -> Path:
    return shared_dir() / MCQ_DIR / f"{split}_zh.json"


def parse_columns(spec: str | None) -> dict[str, str]:
    """`question=stem,answer=label` → {"question": "stem", "answer": "label"}."""
    if not spec:
        return {}
    columns = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in MCQ_COLUMNS:
            raise EvaluationError(
                f"--mcq-columns: bad item {item!r} (use question=…,options=…,answer=…,source=…)."
            )
        columns[key.strip()] = value.strip()
    return columns


class McqInput(NamedTuple):
    questions: list[Question]  # the selected ones
    files: list[Path]
    note: str | None  # why there are no questions, when the benchmark is not run
    skipped: list[SkippedRow]  # rows of the files that are not usable questions


def load_mcq(config: EvalConfig) -> McqInput:
    """The selected questions, the files they come from, a note when the benchmark is not run, and the rows
    left out of it."""
    if config.mcq_mode == "none":
        return McqInput([], [], "MCQ benchmark not requested (--mcq-mode none).", [])
    if config.mcq_file:
        files = benchmark_files(config.mcq_file)
    else:
        path = default_mcq_path(config.mcq_split)
        if not path.is_file():
            note = (
                f"MCQ benchmark skipped: {path} not found. Get XMedBench (Chinese split, `test_zh.json` "
                "/ `dev_zh.json`) from the Apollo project's public release (FreedomIntelligence/Apollo, "
                f"XMedBench) and put it under $MEDSFT_SHARED/{MCQ_DIR}/, or pass --mcq-file."
            )
            log.warning(note)
            return McqInput([], [path], note, [])
        files = [path]
    skipped: list[SkippedRow] = []
    questions = load_benchmark(files, parse_columns(config.mcq_columns), skipped=skipped)
    questions = select_questions(questions, config.mcq_subsets, config.mcq_limit, config.seed)
    where = files[0] if len(files) == 1 else f"{len(files)} files"
    log.info("MCQ: %d questions from %s (%d rows skipped)", len(questions), where, len(skipped))
    return McqInput(questions, files, None, skipped)


def skipped_summary(skipped: list[SkippedRow]) -> dict:
    """run.json's account of the benchmark rows left out: how many, how many for each reason (reasons that
    differ only in numbers, such as a line or column, count together), and the first rows with their
    file, row index (as question indexes count) and reason."""
    reasons = Counter(re.sub(r"\d+", "N", row.reason) for row in skipped)
    return {
        "rows": len(skipped),
        "by_reason": dict(reasons.most_common()),
        "first": [asdict(row) for row in skipped[:SKIPPED_ROWS_LISTED]],
    }


# --- records of one model ----------------------------------------------------------------------------------


def likelihood_records(
    model, tokenizer, questions: list[Question], batch_size: int, system_prompt: str
) -> list[dict]:
    results = score_by_likelihood(model, tokenizer, questions, batch_size, system_prompt)
    return [
        {
            "index": question.index,
            "source": question.source,
            "gold": question.answer,
            "predicted": result.predicted,
            "scored": result.scored,
            "correct": result.predicted == question.answer,
            "options": question.options,
            "letter_logprobs": result.letter_logprobs,
        }
        for question, result in zip(questions, results, strict=True)
    ]


def indomain_records(
    examples: list[Example], generations: list[Generation], losses: list[TurnLoss], mode: str = "think"
) -> list[dict]:
    records = []
    for example, generation, loss in zip(examples, generations, losses, strict=True):
        records.append(
            {
                "index": example.index,
                "mode": mode,
                "row_mode": ROW_MODES[example.thinking],
                "question": example.question,
                "reference_reasoning": example.reference_reasoning,
                "reference_answer": example.reference_answer,
                # counted like a generation's: the think block; the answer without the end of turn
                "reference_reasoning_tokens": loss.reasoning.tokens,
                "reference_answer_tokens": loss.answer_text_tokens,
                "loss": {"reasoning": asdict(loss.reasoning), "answer": asdict(loss.answer)},
                **asdict(generation),
            }
        )
    return records


def think_records(
    questions: list[Question], generations: list[Generation], mode: str = "think"
) -> list[dict]:
    records = []
    for question, generation in zip(questions, generations, strict=True):
        # the answer part; the reasoning only where the answer restates its conclusion without a letter
        extraction = extract_choice(generation.answer, question.options, reasoning=generation.reasoning)
        records.append(
            {
                "index": question.index,
                "mode": mode,
                "source": question.source,
                "question": question.question,
                "options": question.options,
                "gold": question.answer,
                "predicted": extraction.letters,
                "parsed": extraction.letters is not None,
                "extraction": extraction.reason,
                "correct": extraction.letters == question.answer,
                **asdict(generation),
            }
        )
    return records


class _Stopwatch:
    def __init__(self, role: str):
        self.role = role
        self.seconds: dict[str, float] = {}

    def time(self, stage: str, what: str, call):
        started = time.perf_counter()
        result = call()
        self.seconds[f"{stage}_s"] = round(time.perf_counter() - started, 2)
        log.info("%s: %s, %.1fs", self.role, what, self.seconds[f"{stage}_s"])
        return result


def evaluate_model(
    role: str,
    source: str,
    examples: list[Example],
    questions: list[Question],
    config: EvalConfig,
    predictions_dir: Path,
    system_prompt: str,
) -> dict:
    """Score and generate with one model and write its predictions files, asking with `system_prompt` (the
    held-out loss scores each row as it was converted); returns the generation backend and the seconds per
    stage. Loss and likelihood need the transformers model; generation uses it too, or
    vLLM when the backend resolves to it (the transformers model is freed first)."""
    clock = _Stopwatch(role)
    engine = clock.time(
        "load",
        f"loaded {source}",
        lambda: load_engine(source, config.device, config.dtype, "hf", config.batch_size),
    )
    tokenizer = engine.tokenizer
    losses = clock.time(
        "loss",
        f"loss on {len(examples)} rows",
        lambda: teacher_forced_losses(
            engine.model,
            tokenizer,
            [e.messages for e in examples],
            batch_size=config.batch_size,
            empty_think_loss=bool(config.empty_think_loss),
        ),
    )
    loss_of = {example.index: loss for example, loss in zip(examples, losses, strict=True)}
    if questions and config.mcq_mode in {"likelihood", "both"}:
        records = clock.time(
            "mcq_likelihood",
            f"MCQ likelihood on {len(questions)} questions",
            lambda: likelihood_records(engine.model, tokenizer, questions, config.batch_size, system_prompt),
        )
        write_jsonl(predictions_dir / f"{role}.mcq_likelihood.jsonl", records)
    backend = resolve_backend(config.backend, config.device)
    if backend != engine.backend:
        engine.close()
        engine = clock.time(
            f"load_{backend}",
            f"loaded {source} for {backend}",
            lambda: load_engine(source, config.device, config.dtype, backend, config.batch_size),
        )

    for mode, rows in rows_per_mode(examples, config.thinking).items():
        settings = config.generation_settings(mode)
        prompts = [replace_system_turn(e.prompt, system_prompt) for e in rows]
        generations = clock.time(
            "generate" + ("" if mode == "think" else f"_{mode}"),
            f"generated {len(rows)} answers ({MODE_NAMES[mode]})",
            lambda prompts=prompts, settings=settings: engine.generate(
                prompts, settings, config.batch_size, config.progress
            ),
        )
        records = indomain_records(rows, generations, [loss_of[e.index] for e in rows], mode)
        write_jsonl(predictions_dir / f"{role}.{INDOMAIN_KINDS[mode]}.jsonl", records)
    if questions and config.mcq_mode in {"think", "both"}:
        for mode in config.thinking_modes:
            ask = thinking_conversation if THINKING_MODES[mode] else direct_conversation
            prompts = [ask(q, system_prompt) for q in questions]
            outputs = clock.time(
                MCQ_MODES[mode],
                f"MCQ {MODE_NAMES[mode]} on {len(questions)} questions",
                lambda prompts=prompts, mode=mode: engine.generate(
                    prompts, config.generation_settings(mode), config.batch_size, config.progress
                ),
            )
            records = think_records(questions, outputs, mode)
            write_jsonl(predictions_dir / f"{role}.{MCQ_MODES[mode]}.jsonl", records)
    engine.close()
    return {"backend": engine.backend, "timings_s": clock.seconds}


# --- running ------------------------------------------------------------------------------------------------


def environment(config: EvalConfig, backend: str) -> dict:
    """What ran, for run.json: the generation backend that runs (never "auto"), the dtype and device the
    models load with, the code commit and the package versions."""
    device = pick_device(config.device)
    return {
        "backend": backend,
        "dtype": str(pick_dtype(device, config.dtype)).removeprefix("torch."),
        **describe_device(device),
        "code": git_state(),
        "versions": package_versions(VERSIONED_PACKAGES),
    }


def run(config: EvalConfig) -> Path:
    """Evaluate the model (and the baseline) and write the report; returns the report folder."""
    if config.from_predictions is not None:
        write_report(config.from_predictions, config.samples)
        return config.from_predictions
    backend = resolve_backend(config.backend, config.device)  # an unusable backend fails before any work
    config.model = str(resolve_model_argument(config.model))  # unset: the newest output/*/final
    # resolve (download) both models first: a wrong second path should not surface after the first one's run
    given = {"baseline": config.baseline, "model": config.model}
    setting = {"baseline": BASELINE_SETTING, "model": MODEL_SETTING}  # each error names its own setting
    sources = {role: str(resolve_model_dir(src, setting=setting[role])) for role, src in given.items() if src}
    if config.empty_think_loss is None:  # both models' loss is scored the way the tuned model was trained
        config.empty_think_loss = bool(trained_empty_think_loss(Path(sources["model"])))
    data_path = config.data or default_data_path()
    examples = load_examples(data_path, config.limit)
    log.info("in-domain: %d rows from %s", len(examples), data_path)
    mcq = load_mcq(config)
    questions = mcq.questions
    out_dir = (config.out_dir or output_dir() / "eval") / config.report_name()
    predictions_dir = out_dir / "predictions"
    predictions_dir.mkdir(parents=True, exist_ok=True)
    for stale in predictions_dir.glob("*.jsonl"):
        stale.unlink()
    run_info = {
        "name": out_dir.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.as_json(),
        "data": str(data_path),
        "rows": len(examples),
        "mcq_files": [str(path) for path in mcq.files],
        "mcq_note": mcq.note,
        "mcq_questions": len(questions),
        "mcq_sources": len({q.source for q in questions}),
        "mcq_skipped": skipped_summary(mcq.skipped),
        "generation": asdict(config.generation_settings()),
        "generation_no_think": asdict(config.generation_settings("no_think")),
        **environment(config, backend),
        "models": {},
    }
    for role in ROLES:
        if role in sources:
            # each model is asked as it was trained (a baseline: medsft's default) unless --system-prompt says
            system_prompt = system_prompt_for(sources[role], config.system_prompt)
            result = evaluate_model(
                role, sources[role], examples, questions, config, predictions_dir, system_prompt
            )
            run_info["models"][role] = {"source": given[role], "system_prompt": system_prompt, **result}
            write_json(out_dir / "run.json", run_info)
    write_report(out_dir, config.samples)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    if config.list_benchmarks:
        print(describe_formats())
        return 0
    run(config)
    return 0


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("eval", main, sys.argv[1:]))
