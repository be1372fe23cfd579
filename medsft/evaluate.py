"""`medsft eval`: in-domain loss and generation metrics, a medical MCQ benchmark, and a base-vs-tuned report.

Stages: (1) each model writes its predictions (JSONL) under <out>/predictions/; (2) metrics are computed from
those files only; (3) report.md, report.json and the charts are written. `--from-predictions DIR` reruns (2)
and (3) without loading any model.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from medsft import metrics
from medsft.generate import (
    Generation,
    GenerationSettings,
    Generator,
    load_generator,
    split_reasoning,
    vllm_usable,
)
from medsft.mcq import (
    BenchmarkFormatError,
    Question,
    accuracy_table,
    extract_choice,
    load_questions,
    score_by_likelihood,
    select_questions,
    thinking_conversation,
)
from medsft.metrics import SegmentLoss
from medsft.model import ModelSourceError, resolve_model_dir
from medsft.paths import DEFAULT_SYSTEM_PROMPT, OUTPUT_DIR, PROCESSED_DIR, shared_dir

DEFAULT_SPLIT_NAME = "delicate_medical_r1_data"
MCQ_DIR = Path("benchmarks") / "xmedbench_zh"
MCQ_SUBSETS = ("cmb-single", "cmexam", "cmmlu-medical", "medqa-mcmle")
THINK_CLOSE_ID_NAME = "</think>"
END_OF_TURN = "<|im_end|>"
ROLES = ("baseline", "model")  # report order: the reference point first


class EvaluationError(RuntimeError):
    """An input the evaluation cannot use; the message says what to do."""


def log(message: str) -> None:
    print(f"[eval] {message}", file=sys.stderr, flush=True)


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


def default_data_path() -> Path:
    preferred = PROCESSED_DIR / DEFAULT_SPLIT_NAME / "val.jsonl"
    if preferred.is_file():
        return preferred
    candidates = sorted(
        PROCESSED_DIR.glob("*/val.jsonl"), key=lambda path: path.stat().st_mtime, reverse=True
    )
    if not candidates:
        raise EvaluationError(
            f"No held-out split found ({PROCESSED_DIR}/*/val.jsonl). Run `make data` first, "
            "or pass --data FILE "
            "(processed {messages} rows, or raw {question, think, answer} rows)."
        )
    log(f"--data not given and {preferred} absent: using the newest split, {candidates[0]}")
    return candidates[0]


def _example(row: dict, index: int) -> Example:
    if "messages" in row:
        messages = [dict(message) for message in row["messages"]]
        if len(messages) < 2 or messages[-1].get("role") != "assistant" or messages[-2].get("role") != "user":
            raise EvaluationError(
                f"row {index}: messages must end with a user turn and the assistant reference"
            )
        if messages[-1].get("reasoning_content"):
            reasoning, answer = messages[-1].pop("reasoning_content").strip(), messages[-1]["content"].strip()
            messages[-1]["content"] = f"<think>\n{reasoning}\n</think>\n\n{answer}"
        else:
            reasoning, answer, _ = split_reasoning(messages[-1]["content"])
    elif {"question", "answer"} <= row.keys():  # a raw row, as the original dataset ships it
        reasoning, answer = str(row.get("think") or "").strip(), str(row["answer"]).strip()
        messages = [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": str(row["question"]).strip()},
            {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"},
        ]
    else:
        raise EvaluationError(
            f"row {index}: expected `messages` or `question`/`think`/`answer`, got {sorted(row)}"
        )
    return Example(index=index, messages=messages, reference_reasoning=reasoning, reference_answer=answer)


def load_examples(path: Path, limit: int | None = None) -> list[Example]:
    if not path.is_file():
        raise EvaluationError(f"data file not found: {path}")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if limit is not None and len(examples) >= limit:
                break
            if line.strip():
                examples.append(_example(json.loads(line), index))
    if not examples:
        raise EvaluationError(f"{path} has no rows")
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
        if not sep or key.strip() not in {"question", "options", "answer", "source"}:
            raise EvaluationError(
                f"--mcq-columns: bad item {item!r} (use question=…,options=…,answer=…,source=…)"
            )
        columns[key.strip()] = value.strip()
    return columns


def load_mcq(args) -> tuple[list[Question], Path | None, str | None]:
    """The selected questions, the file, and a note when the benchmark is skipped."""
    if args.mcq_mode == "none":
        return [], None, "MCQ benchmark not requested (--mcq-mode none)."
    path = Path(args.mcq_file) if args.mcq_file else default_mcq_path(args.mcq_split)
    if not path.is_file():
        if args.mcq_file:
            raise EvaluationError(f"--mcq-file not found: {path}")
        note = (
            f"MCQ benchmark skipped: {path} not found. Get XMedBench (Chinese split, `test_zh.json` / "
            "`dev_zh.json`) from the Apollo project's public release (FreedomIntelligence/Apollo, XMedBench) "
            "and "
            f"put it under $MEDSFT_SHARED/{MCQ_DIR}/, or pass --mcq-file."
        )
        log(note)
        return [], path, note
    subsets = [name.strip() for name in args.mcq_subset.split(",")] if args.mcq_subset else None
    try:
        questions = load_questions(path, parse_columns(args.mcq_columns))
        questions = select_questions(questions, subsets, args.mcq_limit, args.seed)
    except BenchmarkFormatError as error:
        raise EvaluationError(str(error)) from error
    log(f"MCQ: {len(questions)} questions from {path}")
    return questions, path, None


# --- teacher-forced loss ------------------------------------------------------------------------------------


@torch.inference_mode()
def teacher_forced_losses(
    model, tokenizer, conversations: list[list[dict]], batch_size: int = 4, chunk: int = 512
) -> list[tuple[SegmentLoss, SegmentLoss]]:
    """(reasoning, answer) summed NLL and token counts of each conversation's last (assistant) turn.

    The conversation is rendered with the tokenizer's chat template; the assistant turn starts after the
    generation prompt; the reasoning part runs from `<think>` to `</think>` inclusive, the answer part from
    after `</think>` to `<|im_end|>` inclusive. Logits are computed in chunks of positions so a 150k
    vocabulary never materialises for a whole batch.
    """
    think_close_id = tokenizer.convert_tokens_to_ids(THINK_CLOSE_ID_NAME)
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    encoded = []
    for messages in conversations:
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        if not full.startswith(prompt):
            raise EvaluationError(
                "the chat template does not render the prompt as a prefix of the conversation"
            )
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        reasoning, answer = metrics.assistant_segments(ids, start, think_close_id, end_id)
        encoded.append((ids[: answer.stop], reasoning, answer))

    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    results: list[tuple[SegmentLoss, SegmentLoss] | None] = [None] * len(encoded)
    for begin in range(0, len(order), batch_size):
        indices = order[begin : begin + batch_size]
        width = max(len(encoded[i][0]) for i in indices)
        input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            ids = encoded[i][0]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        hidden = model.base_model(input_ids=input_ids.to(device), attention_mask=attention.to(device))[0]
        for row, i in enumerate(indices):
            ids, reasoning, answer = encoded[i]
            first = reasoning.start if len(reasoning) else answer.start
            targets = torch.tensor(ids[first : answer.stop], device=device)
            token_nll = [0.0] * first
            for offset in range(0, len(targets), chunk):
                positions = slice(first - 1 + offset, first - 1 + min(offset + chunk, len(targets)))
                logits = head(hidden[row, positions]).float()
                nll = torch.nn.functional.cross_entropy(
                    logits, targets[offset : offset + chunk], reduction="none"
                )
                token_nll.extend(nll.tolist())
            results[i] = metrics.segment_losses(token_nll, reasoning, answer)
    return results  # type: ignore[return-value]


# --- running one model --------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def generation_settings(args) -> GenerationSettings:
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    return (
        GenerationSettings.greedy(max_new_tokens=args.max_new_tokens, seed=args.seed)
        if args.greedy
        else settings
    )


def _release(generator: Generator) -> None:
    generator.model = None
    if hasattr(generator, "llm"):  # vLLM engine
        generator.llm = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def likelihood_records(model, tokenizer, questions: list[Question], batch_size: int) -> list[dict]:
    results = score_by_likelihood(model, tokenizer, questions, batch_size)
    return [
        {
            "index": question.index,
            "source": question.source,
            "gold": question.answer,
            "predicted": result.predicted,
            "scored": result.scored,
            "correct": result.predicted == question.answer,
            "letter_logprobs": result.letter_logprobs,
        }
        for question, result in zip(questions, results, strict=True)
    ]


def indomain_records(
    examples: list[Example], generations: list[Generation], losses: list[tuple[SegmentLoss, SegmentLoss]]
) -> list[dict]:
    records = []
    for example, generation, (reasoning_loss, answer_loss) in zip(examples, generations, losses, strict=True):
        records.append(
            {
                "index": example.index,
                "question": example.question,
                "reference_reasoning": example.reference_reasoning,
                "reference_answer": example.reference_answer,
                # reference lengths counted like a generation's: <think>…</think>; answer without <|im_end|>
                "reference_reasoning_tokens": reasoning_loss.tokens,
                "reference_answer_tokens": max(answer_loss.tokens - 1, 0),
                "loss": {"reasoning": asdict(reasoning_loss), "answer": asdict(answer_loss)},
                **asdict(generation),
            }
        )
    return records


def think_records(questions: list[Question], generations: list[Generation]) -> list[dict]:
    records = []
    for question, generation in zip(questions, generations, strict=True):
        extraction = extract_choice(generation.answer, "".join(question.options))  # the answer part only
        records.append(
            {
                "index": question.index,
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
        log(f"{self.role}: {what}, {self.seconds[f'{stage}_s']:.1f}s")
        return result


def evaluate_model(
    role: str, source: str, examples: list[Example], questions: list[Question], args, predictions_dir: Path
) -> dict[str, float]:
    """Score and generate with one model, write its predictions files; returns seconds per stage.

    Loss and likelihood need the Hugging Face model; generation uses it too, or vLLM when asked for.
    """
    clock = _Stopwatch(role)
    generator = clock.time(
        "load", f"loaded {source}", lambda: load_generator(source, args.device, args.dtype, backend="hf")
    )
    tokenizer = generator.tokenizer
    conversations = [e.messages for e in examples]
    losses = clock.time(
        "loss",
        f"loss on {len(examples)} rows",
        lambda: teacher_forced_losses(generator.model, tokenizer, conversations, batch_size=args.batch_size),
    )
    if questions and args.mcq_mode in {"likelihood", "both"}:
        records = clock.time(
            "mcq_likelihood",
            f"MCQ likelihood on {len(questions)} questions",
            lambda: likelihood_records(generator.model, tokenizer, questions, args.batch_size),
        )
        write_jsonl(predictions_dir / f"{role}.mcq_likelihood.jsonl", records)
    if args.backend == "vllm" or (args.backend == "auto" and vllm_usable()):
        _release(generator)
        generator = load_generator(source, args.device, args.dtype, backend="vllm")

    settings = generation_settings(args)
    generations = clock.time(
        "generate",
        f"generated {len(examples)} answers",
        lambda: generator.generate([e.prompt for e in examples], settings, args.batch_size, args.progress),
    )
    write_jsonl(predictions_dir / f"{role}.indomain.jsonl", indomain_records(examples, generations, losses))
    if questions and args.mcq_mode in {"think", "both"}:
        prompts = [thinking_conversation(q) for q in questions]
        outputs = clock.time(
            "mcq_think",
            f"MCQ thinking mode on {len(questions)} questions",
            lambda: generator.generate(prompts, settings, args.batch_size, args.progress),
        )
        write_jsonl(predictions_dir / f"{role}.mcq_think.jsonl", think_records(questions, outputs))
    _release(generator)
    return clock.seconds


# --- metrics from predictions -------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return None if value != value else round(value, 6)  # NaN → null in JSON


def indomain_metrics(records: list[dict]) -> dict:
    reasoning = SegmentLoss()
    answer = SegmentLoss()
    for record in records:
        reasoning = reasoning.add(SegmentLoss(**record["loss"]["reasoning"]))
        answer = answer.add(SegmentLoss(**record["loss"]["answer"]))
    rouge = [metrics.rouge_f(r["answer"], r["reference_answer"]) for r in records]
    return {
        "rows": len(records),
        "loss": {
            "reasoning": {
                "loss": _finite(reasoning.mean),
                "ppl": _finite(reasoning.perplexity),
                "tokens": reasoning.tokens,
            },
            "answer": {
                "loss": _finite(answer.mean),
                "ppl": _finite(answer.perplexity),
                "tokens": answer.tokens,
            },
        },
        "generation": {
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
        },
        "reference": {
            "reasoning_tokens_mean": _finite(metrics.mean(r["reference_reasoning_tokens"] for r in records)),
            "answer_tokens_mean": _finite(metrics.mean(r["reference_answer_tokens"] for r in records)),
        },
    }


def _accuracy(records: list[dict]) -> dict:
    return {
        name: {k: _finite(v) if isinstance(v, float) else v for k, v in row.items()}
        for name, row in accuracy_table(records).items()
    }


def mcq_metrics(think: list[dict], likelihood: list[dict]) -> dict:
    result: dict = {}
    if think:
        result["think"] = {
            "accuracy": _accuracy(think),
            "truncated": _finite(metrics.share(r["truncated"] for r in think)),
            "think_compliance": _finite(metrics.share(metrics.think_compliant(r["text"]) for r in think)),
            "multi_answer_questions": sum(len(r["gold"]) > 1 for r in think),
        }
    if likelihood:
        result["likelihood"] = {
            "accuracy": _accuracy(likelihood),
            "multi_answer_excluded": sum(not r["scored"] for r in likelihood),
        }
    return result


def compute_report(out_dir: Path) -> tuple[dict, dict[str, dict[str, list[dict]]]]:
    """report.json content and the predictions per role, from <out_dir>/run.json and predictions/."""
    run_path = out_dir / "run.json"
    if not run_path.is_file():
        raise EvaluationError(f"{run_path} not found: not an evaluation folder (run `medsft eval` first)")
    run = json.loads(run_path.read_text(encoding="utf-8"))
    predictions: dict[str, dict[str, list[dict]]] = {}
    models = {}
    for role in ROLES:
        if role not in run["models"]:
            continue
        folder = out_dir / "predictions"
        predictions[role] = {
            kind: read_jsonl(folder / f"{role}.{kind}.jsonl")
            for kind in ("indomain", "mcq_think", "mcq_likelihood")
        }
        models[role] = {
            **run["models"][role],
            "indomain": indomain_metrics(predictions[role]["indomain"]),
            "mcq": mcq_metrics(predictions[role]["mcq_think"], predictions[role]["mcq_likelihood"]),
        }
    report = {key: value for key, value in run.items() if key != "models"}
    report["models"] = models
    return report, predictions


# --- CLI ----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsft eval",
        description="Evaluate a model (and optionally a baseline): held-out split and a medical MCQ set.",
    )
    parser.add_argument(
        "--model", help="model folder, ModelScope id or hf:<id> (e.g. output/full_1epoch/final)"
    )
    parser.add_argument("--baseline", help="a second model evaluated the same way (e.g. Qwen/Qwen3-1.7B)")
    parser.add_argument("--data", help="held-out JSONL (default: data/processed/<name>/val.jsonl)")
    parser.add_argument("--limit", type=int, help="first N held-out rows only (loss and generation)")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of Qwen3's sampling")
    parser.add_argument("--max-new-tokens", type=int, default=2048, help="generation limit per answer (2048)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward/generate batch (8)")
    parser.add_argument("--mcq-file", help="benchmark file: .json (XMedBench), .csv (CMMLU/C-Eval), .jsonl")
    parser.add_argument(
        "--mcq-split",
        choices=["dev", "test"],
        default="dev",
        help="XMedBench file under $MEDSFT_SHARED/benchmarks/xmedbench_zh when no --mcq-file (dev)",
    )
    parser.add_argument("--mcq-columns", help="column names, e.g. question=stem,options=choices,answer=label")
    parser.add_argument("--mcq-subset", help=f"comma-separated sources, e.g. {','.join(MCQ_SUBSETS[:2])}")
    parser.add_argument("--mcq-limit", type=int, help="N questions: seeded sample stratified by source")
    parser.add_argument(
        "--mcq-mode",
        choices=["think", "likelihood", "both", "none"],
        default="both",
        help="reasoning then letter extraction, option-letter likelihood, both, or no MCQ (both)",
    )
    parser.add_argument("--seed", type=int, default=42, help="sampling and MCQ sample seed (42)")
    parser.add_argument("--name", help="report folder name (default: the model folder's name)")
    parser.add_argument("--out-dir", help=f"parent folder of reports ({OUTPUT_DIR / 'eval'})")
    parser.add_argument("--samples", type=int, default=3, help="sample answers shown in the report (3)")
    parser.add_argument("--device", help="cuda, cpu, … (default: cuda when available)")
    parser.add_argument("--dtype", help="bfloat16, float16, float32 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument(
        "--backend",
        choices=["hf", "vllm", "auto"],
        default="auto",
        help="generation backend; auto: vLLM when it is installed and a GPU is present, else hf (auto)",
    )
    parser.add_argument("--progress", action="store_true", help="progress bars while generating")
    parser.add_argument(
        "--from-predictions",
        metavar="DIR",
        help="recompute metrics, report and charts from an earlier run's folder (no model)",
    )
    return parser


def report_name(args) -> str:
    if args.name:
        return args.name
    path = Path(args.model.rstrip("/"))
    return path.name if path.name not in {"final", ""} else f"{path.parent.name}-{path.name}"


def write_report(out_dir: Path, samples: int) -> dict:
    from medsft.report import render_report

    report, predictions = compute_report(out_dir)
    report["report_created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    render_report(out_dir, report, predictions, samples=samples)
    (out_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    log(f"report: {out_dir / 'report.md'}")
    return report


def run(args) -> Path:
    if args.from_predictions:
        out_dir = Path(args.from_predictions)
        write_report(out_dir, args.samples)
        return out_dir
    if not args.model:
        raise EvaluationError(
            "--model is required (a folder such as output/full_1epoch/final, or a model id)"
        )
    # resolve (download) both models first: a wrong second path should not surface after the first one's run
    sources = {
        role: str(resolve_model_dir(source))
        for role, source in (("baseline", args.baseline), ("model", args.model))
        if source
    }
    data_path = Path(args.data) if args.data else default_data_path()
    examples = load_examples(data_path, args.limit)
    log(f"in-domain: {len(examples)} rows from {data_path}")
    questions, mcq_path, mcq_note = load_mcq(args)
    out_dir = Path(args.out_dir) if args.out_dir else OUTPUT_DIR / "eval"
    out_dir = out_dir / report_name(args)
    predictions_dir = out_dir / "predictions"
    predictions_dir.mkdir(parents=True, exist_ok=True)
    for stale in predictions_dir.glob("*.jsonl"):
        stale.unlink()
    settings = generation_settings(args)
    run_info = {
        "name": out_dir.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": str(data_path),
        "rows": len(examples),
        "mcq_file": str(mcq_path) if mcq_path else None,
        "mcq_note": mcq_note,
        "mcq_questions": len(questions),
        "mcq_mode": args.mcq_mode,
        "mcq_limit": args.mcq_limit,
        "mcq_subset": args.mcq_subset,
        "seed": args.seed,
        "generation": asdict(settings),
        "backend": args.backend,
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "models": {},
    }
    for role in ROLES:
        if role in sources:
            timings = evaluate_model(role, sources[role], examples, questions, args, predictions_dir)
            given = args.model if role == "model" else args.baseline
            run_info["models"][role] = {
                "source": given,
                "timings_s": timings,
            }
            (out_dir / "run.json").write_text(
                json.dumps(run_info, ensure_ascii=False, indent=2), encoding="utf-8"
            )
    write_report(out_dir, args.samples)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (EvaluationError, ModelSourceError, FileNotFoundError) as error:
        print(f"medsft eval: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
