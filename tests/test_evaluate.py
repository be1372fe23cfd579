"""`medsft eval`: the loss split against an independent masked loss and the trainer's eval_loss, inputs,
provenance, the whole report end to end (XMedBench and a CMMLU-style folder of subjects)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from medsft import cli, engine, evaluate
from medsft.chat_format import (
    DEFAULT_SYSTEM_PROMPT,
    assistant_content,
    build_messages,
    special_token_ids,
    without_reasoning,
)
from medsft.jsonl import read_jsonl, write_jsonl
from medsft.mcq import THINKING_REQUEST, BenchmarkError, describe_formats
from medsft.model import ModelSourceError
from medsft.paths import sample_data_file


def _sample_rows(count: int) -> list[dict]:
    raw = read_jsonl(sample_data_file())[:count]
    return [{"messages": build_messages(row["question"], row["think"], row["answer"])} for row in raw]


@pytest.fixture(scope="module")
def val_file(smoke_data) -> Path:
    """The held-out split `medsft data` writes for the sample data."""
    return smoke_data / "val.jsonl"


def test_loss_split_matches_masked_mean_loss(tiny_lm):
    model, tokenizer = tiny_lm
    conversations = [row["messages"] for row in _sample_rows(2)]
    conversations[1][2]["content"] = assistant_content("短", "短答。")  # a much shorter row: padding
    results = evaluate.teacher_forced_losses(model, tokenizer, conversations, batch_size=2, chunk=7)
    token = special_token_ids(tokenizer)
    for messages, (reasoning, answer, answer_text_tokens) in zip(conversations, results, strict=True):
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        ids = list(ids)
        open_at, close_at = ids.index(token["think_open"]), ids.index(token["think_close"])
        end_at = ids.index(token["end_of_turn"], close_at)
        assert tokenizer.decode(ids[end_at + 1 :]) == "\n"  # the template's newline after the end of turn
        turn_end = len(ids) - 1
        assert reasoning.tokens == close_at - open_at + 1
        assert answer.tokens == turn_end - close_at and answer_text_tokens == end_at - close_at - 1
        input_ids = torch.tensor([ids])
        parts = (((open_at, close_at), reasoning), ((close_at + 1, turn_end), answer))
        for (first, last), segment in parts:
            labels = torch.full_like(input_ids, -100)
            labels[0, first : last + 1] = input_ids[0, first : last + 1]
            with torch.no_grad():
                expected = model(input_ids=input_ids, labels=labels).loss.item()
            assert segment.mean == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("empty_think_loss", [None, False, True])
def test_loss_equals_the_trainers_eval_loss(tmp_path, empty_think_loss):
    """The held-out loss covers exactly the tokens training learns from: pooled over both parts it is the
    trainer's eval_loss on the same rows and model. With non-thinking rows among them (an empty think block),
    each is scored in its own mode, for either setting of the recipe's empty_think_loss."""
    from medsft import train
    from medsft.recipe import load_recipe

    rows = _sample_rows(3)
    rows[2]["messages"][2]["content"] = assistant_content(
        "短", "短答。"
    )  # rows of different lengths: padding
    overrides = ["--output_dir", str(tmp_path), "--report_to", "none", "--per_device_eval_batch_size", "8"]
    if empty_think_loss is not None:
        rows.append({"messages": without_reasoning(rows[0]["messages"])})
        rows.append({"messages": without_reasoning(rows[2]["messages"])})
        overrides += ["--empty_think_loss", str(empty_think_loss).lower()]
    recipe = load_recipe("smoke", overrides)
    tokenizer, model_dir = train.load_tokenizer_and_model_dir(recipe)
    model = train.load_model(recipe, model_dir, tokenizer)
    # the train split holds a row of each mode present, as a mixture's splits do (its last row)
    trainer = train.build_trainer(recipe, model, tokenizer, train.RunData(rows[-1:], rows, {}))
    assert len(rows) <= recipe.sft.per_device_eval_batch_size  # one batch: eval_loss is token-weighted
    eval_loss = trainer.evaluate()["eval_loss"]
    losses = evaluate.teacher_forced_losses(
        trainer.model,
        tokenizer,
        [r["messages"] for r in rows],
        batch_size=2,
        empty_think_loss=bool(empty_think_loss),
    )
    scored = [loss.reasoning.tokens + loss.answer.tokens for loss in losses]
    learned = [sum(label != -100 for label in row["labels"]) for row in trainer.eval_dataset]
    assert scored == learned
    nll = sum(loss.reasoning.nll + loss.answer.nll for loss in losses)
    assert nll / sum(scored) == pytest.approx(eval_loss, rel=1e-5)
    if empty_think_loss is not None:
        # the non-thinking rows' empty block: scored as reasoning only when training learns it
        empty_block = [loss.reasoning.tokens for loss in losses[3:]]
        assert empty_block == ([3, 3] if empty_think_loss else [0, 0])
        # the answer counted as a generation in that mode counts it: the "\n\n" after </think> belongs to
        # the prompt when the empty block does
        shift = 0 if empty_think_loss else 1
        assert [loss.answer_text_tokens for loss in losses[3:]] == [
            loss.answer_text_tokens - shift for loss in (losses[0], losses[2])
        ]


def test_examples_from_processed_raw_and_reasoning_content_rows(tmp_path):
    processed = _sample_rows(1)[0]
    raw = {"question": "头痛怎么办？", "think": "先问诱因。", "answer": "休息，必要时就医。"}
    reasoning_field = {
        "messages": [
            {"role": "user", "content": "头痛怎么办？"},
            {"role": "assistant", "content": "休息。", "reasoning_content": "先问诱因。"},
        ]
    }
    path = tmp_path / "val.jsonl"
    rows = [processed, raw, reasoning_field]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    first, second, third = evaluate.load_examples(path)
    assert first.reference_answer in processed["messages"][2]["content"] and first.reference_reasoning
    assert second.messages[0]["content"] == DEFAULT_SYSTEM_PROMPT and second.question == "头痛怎么办？"
    assert (second.reference_reasoning, second.reference_answer) == ("先问诱因。", "休息，必要时就医。")
    assert third.messages[-1]["content"] == assistant_content("先问诱因。", "休息。")
    assert [e.index for e in evaluate.load_examples(path, limit=2)] == [0, 1]
    path.write_text("\n" + json.dumps({"prompt": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(evaluate.EvaluationError, match="line 2: expected `messages`"):
        evaluate.load_examples(path)


def test_default_data_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSFT_DATA_DIR", str(tmp_path))
    with pytest.raises(evaluate.EvaluationError, match="make data"):
        evaluate.default_data_path()
    for name, mtime in (("older", 1_000), ("newer", 2_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "val.jsonl").write_text("{}\n")
        os.utime(tmp_path / name / "val.jsonl", (mtime, mtime))
    assert evaluate.default_data_path() == tmp_path / "newer" / "val.jsonl"
    (tmp_path / evaluate.DEFAULT_SPLIT_NAME).mkdir()
    (tmp_path / evaluate.DEFAULT_SPLIT_NAME / "val.jsonl").write_text("{}\n")
    assert evaluate.default_data_path() == tmp_path / evaluate.DEFAULT_SPLIT_NAME / "val.jsonl"


def test_missing_inputs_give_clear_errors(tmp_path, val_file, tiny_model_dir, monkeypatch):
    argv = ["--data", str(val_file), "--mcq-mode", "none", "--out-dir", str(tmp_path / "reports")]
    with pytest.raises(ModelSourceError, match="not a folder"):
        evaluate.main(["--model", str(tmp_path / "nope"), *argv])
    argv = [
        "--model",
        str(tiny_model_dir),
        "--data",
        str(val_file),
        "--mcq-file",
        str(tmp_path / "none.json"),
    ]
    with pytest.raises(BenchmarkError, match="Benchmark file not found"):
        evaluate.main(argv)
    with pytest.raises(evaluate.EvaluationError, match="run.json"):
        evaluate.main(["--from-predictions", str(tmp_path)])
    (tmp_path / "run.json").write_text('{"name": "old", "models": {}}', encoding="utf-8")
    with pytest.raises(evaluate.EvaluationError, match="run the evaluation again"):
        evaluate.main(["--from-predictions", str(tmp_path)])
    monkeypatch.setenv("MEDSFT_OUTPUT_DIR", str(tmp_path / "no_runs"))
    with pytest.raises(ModelSourceError, match="MODEL="):  # no --model and no trained model to fall back to
        evaluate.main(["--data", str(val_file)])
    assert not (tmp_path / "reports").exists()  # nothing was written before the errors


def test_command_line_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    medsft_log = logging.getLogger("medsft")
    for name in ("handlers", "propagate", "level"):  # run_command configures the logger: restore it after
        monkeypatch.setattr(medsft_log, name, getattr(medsft_log, name))
    monkeypatch.delenv("MEDSFT_DEBUG", raising=False)
    assert cli.run_command("eval", evaluate.main, ["--from-predictions", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medsft eval: ") and "run.json" in err and len(err.strip().splitlines()) == 1
    assert cli.run_command("eval", evaluate.main, ["--model", "m", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # an unknown flag: argparse's usage error
        evaluate.main(["--model", "m", "--temperature", "0.5"])
    assert exit_info.value.code == 2


@pytest.fixture(scope="module")
def models_to_compare(request, tiny_model_dir, qwen3_tokenizer, tmp_path_factory) -> tuple[Path, Path]:
    """(model, baseline): the smoke training run's final model and a checkpoint when that fixture exists,
    else the tiny model and a second tiny model with other random weights."""
    try:
        smoke_run = request.getfixturevalue("smoke_run")
    except pytest.FixtureLookupError:
        smoke_run = None
    if smoke_run is not None:
        checkpoints = sorted(Path(smoke_run).glob("checkpoint-*"))
        return Path(smoke_run) / "final", checkpoints[0]
    from medsft.model import build_tiny_qwen3

    baseline = tmp_path_factory.mktemp("tiny-baseline")
    model = build_tiny_qwen3(qwen3_tokenizer, seed=1)
    model.generation_config.eos_token_id = [qwen3_tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.save_pretrained(baseline)
    qwen3_tokenizer.save_pretrained(baseline)
    return tiny_model_dir, baseline


@pytest.fixture(scope="module")
def report_dir(models_to_compare, val_file, tmp_path_factory) -> Path:
    dev = Path(require_dev())
    model, baseline = models_to_compare
    out = tmp_path_factory.mktemp("eval")
    argv = ["--model", str(model), "--baseline", str(baseline), "--data", str(val_file), "--limit", "2"]
    argv += ["--mcq-file", str(dev), "--mcq-limit", "4", "--max-new-tokens", "8", "--batch-size", "4"]
    argv += ["--name", "smoke", "--out-dir", str(out), "--samples", "2"]
    assert evaluate.main(argv) == 0
    return out / "smoke"


def require_dev() -> Path:
    from conftest import require_shared

    return require_shared("benchmarks/xmedbench_zh/dev_zh.json")


SECTIONS = [
    "# Evaluation report: smoke",
    "## Setup",
    "## In-domain: loss and perplexity",
    "## In-domain: generation",
    "## Medical MCQ: thinking mode",
    "## Medical MCQ: likelihood mode (no reasoning)",
    "## Samples",
    "## How the metrics are computed",
]
CHARTS = ["loss.png", "similarity.png", "format.png", "lengths.png", "mcq_accuracy.png"]


def test_end_to_end_report(report_dir):
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in markdown
    for chart in CHARTS:
        assert (report_dir / chart).stat().st_size > 1000
        assert f"({chart})" in markdown
    assert markdown.count("<details>") == 2 * 3  # 2 samples × (reference, baseline, model)
    assert "Δ (model − baseline)" in markdown and "BLEU-4 corpus (characters)" in markdown

    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert list(report["models"]) == ["baseline", "model"]
    for role in ("baseline", "model"):
        result = report["models"][role]
        assert result["indomain"]["rows"] == 2
        for segment in ("reasoning", "answer"):
            loss = result["indomain"]["loss"][segment]
            assert loss["tokens"] > 0 and loss["ppl"] == pytest.approx(math.exp(loss["loss"]), rel=1e-4)
        generation = result["indomain"]["generation"]
        for key in (
            "think_compliance",
            "truncated",
            "rouge-1",
            "rouge-2",
            "rouge-l",
            "bleu4_corpus",
            "bleu4_sentence",
            "reasoning_tokens_mean",
            "answer_tokens_mean",
            "loop_share",
            "distinct4",
        ):
            assert generation[key] is not None and generation[key] >= 0, key  # fmt: skip
        think = result["mcq"]["think"]["accuracy"]
        likelihood = result["mcq"]["likelihood"]["accuracy"]
        assert think["overall"]["questions"] == likelihood["overall"]["questions"] == 4
        assert set(think) == {"cmb-single", "cmexam", "cmmlu-medical", "medqa-mcmle", "overall"}
        assert 0 <= likelihood["overall"]["accuracy"] <= 1
        assert set(result["timings_s"]) >= {"loss_s", "generate_s", "mcq_think_s", "mcq_likelihood_s"}
        for mode in ("think", "likelihood"):
            assert_accuracy_rows(result["mcq"][mode])
    assert set(report["comparison"]) == {"think", "likelihood"}
    assert set(report["comparison"]["think"]) == set(think)
    assert report["comparison"]["think"]["overall"]["pairs"] == 4

    run = json.loads((report_dir / "run.json").read_text(encoding="utf-8"))
    config = run["config"]
    assert config == report["config"]
    assert (config["max_new_tokens"], config["batch_size"], config["mcq_limit"]) == (8, 4, 4)
    assert run["generation"]["max_new_tokens"] == 8 and run["models"]["model"]["backend"] == "hf"
    assert_provenance(run)

    predictions = report_dir / "predictions"
    rows = [json.loads(line) for line in (predictions / "model.indomain.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert {"text", "reasoning", "answer", "truncated", "reference_answer", "loss"} <= set(rows[0])
    # truncated exactly when all 8 new tokens were used without an end of turn
    for row in rows:
        assert row["truncated"] == (row["reasoning_tokens"] + row["answer_tokens"] == 8)
    shares = report["models"]["model"]["indomain"]["generation"]
    assert shares["truncated"] == pytest.approx(sum(row["truncated"] for row in rows) / 2)
    think_rows = [
        json.loads(line) for line in (predictions / "model.mcq_think.jsonl").read_text().splitlines()
    ]
    assert all(row["correct"] == (row["predicted"] == row["gold"]) for row in think_rows)


def assert_accuracy_rows(mode_result: dict) -> None:
    """Every accuracy has its interval and chance level, and the answer distributions are there."""
    for name, row in mode_result["accuracy"].items():
        low, high = row["ci95"]
        assert 0 <= low <= row["accuracy"] <= high <= 1, name
        chance = row["chance"]
        assert chance["level"] == max(chance["uniform"], chance["majority"]) and 0 < chance["level"] <= 1
        assert row["above_chance"] == (low > chance["level"])
        assert sum(row["gold"].values()) == sum(row["predicted"].values()) == row["scored"]
        assert row["dominant"] is None or row["dominant"]["share"] > 0.6
    sources = [row for name, row in mode_result["accuracy"].items() if name != "overall"]
    macro = mode_result["macro"]
    assert macro["sources"] == len(sources)
    assert macro["accuracy"] == pytest.approx(
        sum(row["accuracy"] for row in sources) / len(sources), abs=1e-5
    )


def assert_provenance(run: dict) -> None:
    """run.json says what ran: the backend (never "auto"), dtype, device, code commit, package versions."""
    assert run["backend"] in {"hf", "vllm"} and run["config"]["backend"] == "auto"
    assert all(model["backend"] == run["backend"] for model in run["models"].values())
    assert run["dtype"] == ("float32" if run["device"] == "cpu" else run["dtype"])
    assert run["device"] == engine.pick_device() and run["device_name"]
    assert re.fullmatch(r"[0-9a-f]{40}", run["code"]["sha"]) and isinstance(run["code"]["dirty"], bool)
    versions = run["versions"]
    assert versions["torch"] == torch.__version__ and versions["medsft"] and versions["python"]
    assert set(versions) >= {"transformers", "vllm", "jieba", "rouge-chinese"}


def test_metrics_recomputed_from_predictions(report_dir):
    before = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    (report_dir / "loss.png").unlink()
    assert evaluate.main(["--from-predictions", str(report_dir)]) == 0
    after = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert after["models"] == before["models"]
    assert (report_dir / "loss.png").is_file()


def test_without_model_the_newest_trained_model_is_evaluated(tiny_model_dir, val_file, tmp_path, monkeypatch):
    runs = tmp_path / "output"
    for run, mtime in (("older", 1_000), ("newer", 2_000)):
        shutil.copytree(tiny_model_dir, runs / run / "final")
        os.utime(runs / run / "final" / "config.json", (mtime, mtime))
    monkeypatch.setenv("MEDSFT_OUTPUT_DIR", str(runs))
    argv = ["--data", str(val_file), "--limit", "1", "--max-new-tokens", "4", "--mcq-mode", "none"]
    assert evaluate.main(argv) == 0
    run = json.loads((runs / "eval" / "newer-final" / "run.json").read_text(encoding="utf-8"))
    assert run["config"]["model"] == str(runs / "newer" / "final")


def test_missing_benchmark_is_reported_not_fatal(tiny_model_dir, val_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSFT_SHARED", str(tmp_path / "no-shared"))
    argv = ["--model", str(tiny_model_dir), "--data", str(val_file), "--limit", "1", "--max-new-tokens", "4"]
    assert evaluate.main([*argv, "--out-dir", str(tmp_path), "--name", "no-mcq"]) == 0
    markdown = (tmp_path / "no-mcq" / "report.md").read_text(encoding="utf-8")
    assert "MCQ benchmark skipped" in markdown and "Apollo" in markdown
    assert not (tmp_path / "no-mcq" / "mcq_accuracy.png").exists()
    report = json.loads((tmp_path / "no-mcq" / "report.json").read_text(encoding="utf-8"))
    assert list(report["models"]) == ["model"] and report["models"]["model"]["mcq"] == {}


def test_skipped_benchmark_rows_are_counted_in_the_report(tiny_model_dir, val_file, tmp_path):
    good = {"question": "属于上皮组织的是", "options": "(A) 表皮\n(B) 肌层", "answer": "A"}
    lines = [good, '{"question": "broken", ', {**good, "answer": None}, '{"question": "broken", ', good]
    benchmark = tmp_path / "mine.jsonl"
    benchmark.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines),
        encoding="utf-8",
    )
    argv = ["--model", str(tiny_model_dir), "--data", str(val_file), "--limit", "1", "--max-new-tokens", "4"]
    argv += ["--mcq-file", str(benchmark), "--mcq-mode", "likelihood", "--out-dir", str(tmp_path)]
    assert evaluate.main([*argv, "--name", "skips"]) == 0
    report = json.loads((tmp_path / "skips" / "report.json").read_text(encoding="utf-8"))
    skipped = report["mcq_skipped"]
    assert report["mcq_questions"] == 2 and skipped["rows"] == 3
    assert skipped["by_reason"]["answer is missing (null)"] == 1
    (json_reason,) = [reason for reason in skipped["by_reason"] if reason.startswith("line N is not JSON")]
    assert skipped["by_reason"][json_reason] == 2  # lines 2 and 4: one reason
    assert [(row["file"], row["row"]) for row in skipped["first"]] == [(str(benchmark), i) for i in (1, 2, 3)]
    assert skipped["first"][0]["reason"].startswith("line 2 is not JSON")
    markdown = (tmp_path / "skips" / "report.md").read_text(encoding="utf-8")
    assert "3 benchmark rows skipped as unusable" in markdown


@pytest.fixture(scope="module")
def cmmlu_report(models_to_compare, val_file, tmp_path_factory) -> Path:
    """Baseline and model on a CMMLU-style folder of three subject CSVs, in one run."""
    from test_mcq import write_cmmlu_folder

    folder = write_cmmlu_folder(tmp_path_factory.mktemp("cmmlu") / "data" / "test")
    model, baseline = models_to_compare
    out = tmp_path_factory.mktemp("eval-cmmlu")
    argv = ["--model", str(model), "--baseline", str(baseline), "--data", str(val_file), "--limit", "1"]
    argv += ["--mcq-file", str(folder), "--max-new-tokens", "4", "--greedy", "--batch-size", "9"]
    argv += ["--name", "cmmlu", "--out-dir", str(out), "--samples", "1"]
    assert evaluate.main(argv) == 0
    return out / "cmmlu"


SUBJECTS = ["anatomy", "clinical_knowledge", "virology"]


def test_cmmlu_folder_in_one_run_per_subject_and_macro(cmmlu_report):
    report = json.loads((cmmlu_report / "report.json").read_text(encoding="utf-8"))
    for role in ("baseline", "model"):
        for mode, questions in (("think", 9), ("likelihood", 9)):
            result = report["models"][role]["mcq"][mode]
            assert list(result["accuracy"]) == [*SUBJECTS, "overall"]
            assert [result["accuracy"][s]["questions"] for s in SUBJECTS] == [3, 2, 4]
            assert result["accuracy"]["overall"]["questions"] == questions
            assert result["macro"]["sources"] == 3
            assert_accuracy_rows(result)
            # four options, gold letters spread: uniform guessing or the commonest gold letter
            assert result["accuracy"]["virology"]["chance"]["level"] == 0.5  # C twice of four
    for mode in ("think", "likelihood"):
        assert list(report["comparison"][mode]) == [*SUBJECTS, "overall"]
        assert report["comparison"][mode]["overall"]["pairs"] == 9
    markdown = (cmmlu_report / "report.md").read_text(encoding="utf-8")
    for subject in SUBJECTS:
        assert f"| {subject} |" in markdown
    assert markdown.count("**overall (macro, 3 sources)**") == 2  # one per mode
    assert markdown.count("McNemar p") == 2 and "Answer distribution" in markdown
    assert "baseline accuracy [95 % CI]" in markdown and "3 files under" in markdown
    run = json.loads((cmmlu_report / "run.json").read_text(encoding="utf-8"))
    assert [Path(f).name for f in run["mcq_files"]] == [f"{s}.csv" for s in SUBJECTS]
    assert (run["mcq_questions"], run["mcq_sources"]) == (9, 3)
    assert_provenance(run)


def _rewrite_think(path: Path, answer_of) -> None:
    records = read_jsonl(path)
    for record in records:
        record["predicted"] = answer_of(record)
        record["parsed"] = record["predicted"] is not None
        record["correct"] = record["predicted"] == record["gold"]
    write_jsonl(path, records)


def test_report_flags_letter_bias_and_says_whether_the_change_is_noise(cmmlu_report, tmp_path):
    folder = tmp_path / "biased"
    shutil.copytree(cmmlu_report, folder)
    # the baseline answers every question right; the model always answers A (gold A: 3 of 9)
    _rewrite_think(folder / "predictions" / "baseline.mcq_think.jsonl", lambda record: record["gold"])
    _rewrite_think(folder / "predictions" / "model.mcq_think.jsonl", lambda record: "A")
    assert evaluate.main(["--from-predictions", str(folder)]) == 0
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    think = report["models"]["model"]["mcq"]["think"]
    assert think["accuracy"]["overall"]["dominant"] == {"answer": "A", "share": 1.0}
    assert think["accuracy"]["overall"]["predicted"] == {"A": 9}
    assert think["accuracy"]["overall"]["gold"] == {"A": 3, "B": 3, "C": 3}
    assert think["accuracy"]["overall"]["above_chance"] is False  # 3/9 right: no better than guessing
    assert report["models"]["baseline"]["mcq"]["think"]["accuracy"]["overall"]["dominant"] is None
    overall = report["comparison"]["think"]["overall"]
    # 6 questions only the baseline got right, none the other way: exact p = 2 / 2^6
    assert (overall["base_only"], overall["tuned_only"], overall["method"]) == (6, 0, "exact binomial")
    assert overall["p_value"] == pytest.approx(2 / 64) and overall["beyond_noise"] is True
    assert overall["difference"] == pytest.approx(-6 / 9)
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "**Letter bias**: model answers A for 100% of the overall questions (gold A: 33%)" in markdown
    assert "**the change is beyond noise** (p < 0.05)" in markdown
    assert "-66.7 pt" in markdown and "0.0312 (beyond noise)" in markdown
    assert "A 100% **⚠ A 100%**" in markdown  # the flag sits next to the distribution
    assert "33.3% [12.1–64.6] †" in markdown  # 3/9 with its Wilson interval, not above chance


def test_list_benchmarks_needs_no_model(capsys):
    assert evaluate.main(["--list-benchmarks"]) == 0
    assert capsys.readouterr().out.strip() == describe_formats()


def test_ceval_test_files_are_refused_with_one_message(
    tiny_model_dir, val_file, tmp_path, capsys, monkeypatch
):
    from test_mcq import write_ceval_folders

    medsft_log = logging.getLogger("medsft")
    for name in ("handlers", "propagate", "level"):
        monkeypatch.setattr(medsft_log, name, getattr(medsft_log, name))
    root = write_ceval_folders(tmp_path / "ceval")
    argv = ["--model", str(tiny_model_dir), "--data", str(val_file), "--mcq-file", str(root / "test")]
    assert cli.run_command("eval", evaluate.main, [*argv, "--out-dir", str(tmp_path / "out")]) == 2
    *progress, message = capsys.readouterr().err.strip().splitlines()  # the error is one line, the last
    assert all("no answers" not in line for line in progress) and message.startswith("medsft eval: ")
    assert "physician_test.csv has no answers" in message and "val/" in message and "row" not in message
    assert not (tmp_path / "out").exists()


def test_cpu_device_never_runs_vllm(monkeypatch):
    """On a GPU machine with vLLM installed, --device cpu stays on transformers; `vllm` there is an error."""
    monkeypatch.setattr(engine, "vllm_usable", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engine.resolve_backend("auto", "cpu") == "hf"
    assert engine.resolve_backend("auto", None) == "vllm"  # the same machine, device unset: the GPU
    assert engine.resolve_backend("hf", None) == "hf"
    with pytest.raises(engine.GenerationError, match="vLLM needs a GPU"):
        engine.resolve_backend("vllm", "cpu")


class RecordingGenerator:
    """The tiny model for scoring and canned outputs for generation: records what evaluate asks for."""

    backend = "hf"

    def __init__(self, model, tokenizer, outputs):
        self.model, self.tokenizer, self.outputs, self.calls = model, tokenizer, outputs, []
        self.loads: list[dict] = []

    def load(self, source, device=None, dtype=None, backend="hf", max_batch_size=16):
        self.loads.append({"device": device, "backend": backend})
        return self

    def generate(self, conversations, settings, batch_size=8, progress=False):
        from medsft.chat_format import split_reasoning
        from medsft.engine import Generation

        self.calls.append((conversations, settings, batch_size))
        results = []
        for text in self.outputs[: len(conversations)]:
            reasoning, answer, well_formed = split_reasoning(text)
            results.append(Generation(reasoning, answer, well_formed, False, 5, 3, text, prompt_tokens=9))
        return results

    def close(self) -> None:
        pass


def test_generation_requests_and_answer_part_extraction(tiny_lm, val_file, tmp_path, monkeypatch):
    model, tokenizer = tiny_lm
    dev = tmp_path / "dev.json"
    rows = [
        {
            "question": "问题一",
            "options": "(A) 甲\n(B) 乙\n(C) 丙\n(D) 丁",
            "answer": "(C)",
            "source": "cmexam",
        },
        {
            "question": "问题二",
            "options": "(A) 甲\n(B) 乙\n(C) 丙\n(D) 丁",
            "answer": "(A)",
            "source": "cmexam",
        },
    ]
    dev.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    outputs = [
        "<think>\n答案：A？\n</think>\n\n答案：C",
        "<think>\n应该选A\n</think>\n\n无法确定。",
        "<think>\n未完",
    ]
    generator = RecordingGenerator(model, tokenizer, outputs)
    monkeypatch.setattr(evaluate, "load_engine", generator.load)
    monkeypatch.setattr(engine, "vllm_usable", lambda: True)  # as on a GPU box with vLLM installed
    argv = [
        "--device",
        "cpu",
        "--model",
        str(tmp_path),
        "--data",
        str(val_file),
        "--mcq-file",
        str(dev),
        "--greedy",
        "--seed",
        "7",
    ]
    argv += ["--max-new-tokens", "99", "--batch-size", "3", "--out-dir", str(tmp_path / "out"), "--name", "r"]
    assert evaluate.main(argv) == 0

    (indomain, settings, batch_size), (mcq, mcq_settings, _) = generator.calls
    assert [m["role"] for m in indomain[0]] == [
        "system",
        "user",
    ]  # the reference answer is never in the prompt
    assert len(indomain) == len(val_file.read_text(encoding="utf-8").splitlines()) and batch_size == 3
    assert (settings.do_sample, settings.max_new_tokens, settings.seed, settings.enable_thinking) == (
        False, 99, 7, True
    )  # fmt: skip
    assert mcq_settings == settings and "问题一" in mcq[0][1]["content"]
    records = [json.loads(line) for line in (tmp_path / "out/r/predictions/model.mcq_think.jsonl").open()]
    # the letters in the reasoning (A) are ignored: C from the answer part, nothing from "无法确定"
    assert [(r["predicted"], r["correct"], r["parsed"]) for r in records] == [
        ("C", True, True),
        (None, False, False),
    ]
    report = json.loads((tmp_path / "out/r/report.json").read_text(encoding="utf-8"))
    overall = report["models"]["model"]["mcq"]["think"]["accuracy"]["overall"]
    assert {key: overall[key] for key in ("questions", "scored", "excluded", "correct", "unparseable")} == {
        "questions": 2, "scored": 2, "excluded": 0, "correct": 1, "unparseable": 1
    }  # fmt: skip
    assert overall["accuracy"] == 0.5 and overall["predicted"] == {"C": 1, "unparseable": 1}
    assert overall["gold"] == {"A": 1, "C": 1} and overall["dominant"] is None
    # four options, gold A once and C once: always answering A scores 1/2, above uniform guessing (1/4)
    assert overall["chance"] == {"uniform": 0.25, "majority": 0.5, "majority_answer": "A", "level": 0.5}
    assert report["models"]["model"]["indomain"]["generation"]["think_compliance"] == pytest.approx(2 / 3)
    # --backend auto on --device cpu: transformers only, never vLLM
    assert generator.loads == [{"device": "cpu", "backend": "hf"}]
    assert report["backend"] == report["models"]["model"]["backend"] == "hf" and report["device"] == "cpu"
    assert report["dtype"] == "float32"
    # the prompt asks for the final answer line; the report counts its use and audits the grader's reasons
    assert mcq[0][1]["content"].endswith(THINKING_REQUEST)
    think = report["models"]["model"]["mcq"]["think"]
    assert think["answer_line"] == {
        "cmexam": {"share": 0.5, "answers": 2},
        "overall": {"share": 0.5, "answers": 2},
    }
    # "无法确定。" declines to choose: the grader's reason says so
    assert think["extraction_reasons"] == {"answer line": 1, "unresolved": 1}
    markdown = (tmp_path / "out/r/report.md").read_text(encoding="utf-8")
    assert "| answers in the asked-for line `答案：X` | 50.0% |" in markdown
    assert "| cmexam | 50.0% |" in markdown
    assert "| answer line | 1 |" in markdown and "| unresolved | 1 |" in markdown
    assert "Examples read as `answer line` (1 of 1, drawn at random):" in markdown
    assert "- model q0: read C, gold C: `答案：C`" in markdown
    assert "- model q1: read –, gold A: `无法确定。`" in markdown


def test_option_parsing_helpers():
    assert evaluate.parse_columns("question=stem, answer=label") == {"question": "stem", "answer": "label"}
    assert evaluate.parse_columns(None) == {}
    with pytest.raises(evaluate.EvaluationError, match="bad item"):
        evaluate.parse_columns("prompt=x")
    with pytest.raises(evaluate.EvaluationError, match="bad item"):  # checked while parsing the options
        evaluate.parse_config(["--model", "m", "--mcq-columns", "prompt=x"])
    assert evaluate.parse_config(["--model", "output/full_1epoch/final"]).report_name() == "full_1epoch-final"
    assert evaluate.parse_config(["--model", "Qwen/Qwen3-1.7B"]).report_name() == "Qwen3-1.7B"
    assert evaluate.parse_config(["--model", "m", "--name", "cmp"]).report_name() == "cmp"


def test_options_are_one_typed_config(capsys):
    config = evaluate.parse_config(
        ["--model", "m", "--max-new-tokens", "64", "--greedy", "--mcq-subset", "cmexam, cmb-single"]
    )
    assert isinstance(config, evaluate.EvalConfig)
    assert (config.max_new_tokens, config.greedy, config.batch_size, config.backend) == (64, True, 8, "auto")
    assert config.mcq_subsets == ["cmexam", "cmb-single"]
    assert config.generation_settings() == engine.GenerationSettings.greedy(max_new_tokens=64, seed=42)
    underscored = evaluate.parse_config(["--model", "m", "--max_new_tokens", "64", "--batch_size", "2"])
    assert (underscored.max_new_tokens, underscored.batch_size) == (64, 2)  # both spellings of a flag
    as_json = evaluate.parse_config(["--model", "m", "--data", "d/val.jsonl"]).as_json()
    assert as_json["data"] == "d/val.jsonl" and json.loads(json.dumps(as_json)) == as_json
    with pytest.raises(SystemExit) as exit_info:
        evaluate.parse_config(["--mcq-mode", "all"])  # not one of the choices
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        evaluate.parse_config(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag, words in (
        ("--max-new-tokens", "generation limit per answer"),
        ("--from-predictions DIR", "recompute metrics"),
        ("--backend {hf,vllm,auto}", "vLLM when it is installed"),
        ("--mcq-limit N", "stratified by source"),
    ):
        assert flag in help_text and words in help_text, flag


@pytest.mark.parametrize("max_new_tokens", ["9000", "1000000000000"])
def test_eval_keeps_the_generation_length_rule_of_every_command(
    tiny_model_dir, val_file, tmp_path, monkeypatch, capsys, max_new_tokens
):
    """The tiny model's context is 8192 tokens: eval refuses what infer refuses, before generating."""
    medsft_log = logging.getLogger("medsft")
    for name in ("handlers", "propagate", "level"):  # run_command configures the logger: restore it after
        monkeypatch.setattr(medsft_log, name, getattr(medsft_log, name))
    monkeypatch.setenv("MEDSFT_SHARED", str(tmp_path / "no-shared"))
    argv = ["--model", str(tiny_model_dir), "--data", str(val_file), "--limit", "1"]
    argv += ["--max-new-tokens", max_new_tokens, "--out-dir", str(tmp_path), "--name", "long"]
    assert cli.run_command("eval", evaluate.main, argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--max-new-tokens {max_new_tokens} does not fit" in line and "model context 8192" in line
    assert not (tmp_path / "long" / "report.json").exists()


class ModeRecordingGenerator(RecordingGenerator):
    """RecordingGenerator with canned outputs for each mode: {enable_thinking: outputs}."""

    def generate(self, conversations, settings, batch_size=8, progress=False):
        self.outputs = self.mode_outputs[settings.enable_thinking]
        return super().generate(conversations, settings, batch_size, progress)


@pytest.fixture
def mixed_val_file(tmp_path) -> Path:
    """Two thinking rows and one row trained without reasoning (an empty think block)."""
    rows = _sample_rows(3)
    rows[2] = {"messages": without_reasoning(rows[2]["messages"])}
    path = tmp_path / "val.jsonl"
    write_jsonl(path, rows)
    return path


def _two_questions(tmp_path) -> Path:
    dev = tmp_path / "dev.json"
    options = "(A) 甲\n(B) 乙\n(C) 丙\n(D) 丁"
    rows = [
        {"question": "问题一", "options": options, "answer": "(C)", "source": "cmexam"},
        {"question": "问题二", "options": options, "answer": "(A)", "source": "cmexam"},
    ]
    dev.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return dev


THINKING_OUTPUTS = [
    "<think>\n分析。\n</think>\n\n答案：C",  # well-formed reasoning
    "<think>\n\n</think>\n\n答案：A",  # an empty block: the non-thinking mode leaking in
    "<think>\n未完",  # never closed
]
NON_THINKING_OUTPUTS = [
    "答案：C",  # a clean direct answer
    "<think>\n\n</think>\n\n答案：A",  # a leftover empty block
    "答案：B\n</think>",  # a stray tag
]


def _run_modes(tiny_lm, val, tmp_path, monkeypatch, *flags: str) -> tuple[ModeRecordingGenerator, dict]:
    model, tokenizer = tiny_lm
    generator = ModeRecordingGenerator(model, tokenizer, [])
    generator.mode_outputs = {True: THINKING_OUTPUTS, False: NON_THINKING_OUTPUTS}
    monkeypatch.setattr(evaluate, "load_engine", generator.load)
    argv = ["--device", "cpu", "--model", str(tmp_path), "--data", str(val), "--seed", "7"]
    argv += ["--mcq-file", str(_two_questions(tmp_path)), "--mcq-mode", "think"]
    argv += ["--out-dir", str(tmp_path / "out"), "--name", "r", *flags]
    assert evaluate.main(argv) == 0
    return generator, json.loads((tmp_path / "out/r/report.json").read_text(encoding="utf-8"))


def test_held_out_non_thinking_rows_answer_in_their_own_mode(tiny_lm, mixed_val_file, tmp_path, monkeypatch):
    generator, report = _run_modes(tiny_lm, mixed_val_file, tmp_path, monkeypatch)  # --thinking on
    (thinking, think_settings, _), (plain, plain_settings, _), (mcq, mcq_settings, _) = generator.calls
    assert [m[-1]["content"] for m in thinking] == [r["messages"][1]["content"] for r in _sample_rows(2)]
    assert len(plain) == 1 and plain[0][-1]["role"] == "user"  # the reference is never in the prompt
    assert (think_settings.enable_thinking, plain_settings.enable_thinking) == (True, False)
    assert mcq_settings.enable_thinking and len(mcq) == 2  # the benchmark in thinking mode only
    # Qwen3's recommended sampling of each mode
    assert (think_settings.temperature, think_settings.top_p) == (0.6, 0.95)
    assert (plain_settings.temperature, plain_settings.top_p, plain_settings.top_k) == (0.7, 0.8, 20)
    indomain = report["models"]["model"]["indomain"]
    assert indomain["rows"] == 3 and indomain["generation"]["rows"] == 2
    assert indomain["generation_no_think"]["rows"] == 1
    assert indomain["generation_no_think"]["mode_adherence"] == 1.0  # "答案：C": no reasoning text
    assert indomain["generation"]["mode_adherence"] == 0.5  # the empty block is not reasoning
    assert {mode: part["rows"] for mode, part in indomain["loss_by_row_mode"].items()} == {
        "thinking": 2,
        "non_thinking": 1,
    }
    assert indomain["loss_by_row_mode"]["non_thinking"]["reasoning"]["tokens"] == 0  # empty block: prompt
    records = read_jsonl(tmp_path / "out/r/predictions/model.indomain_no_think.jsonl")
    assert [(r["index"], r["mode"], r["row_mode"]) for r in records] == [(2, "no_think", "non_thinking")]
    assert set(report["models"]["model"]["mcq"]) == {"think"}
    markdown = (tmp_path / "out/r/report.md").read_text(encoding="utf-8")
    assert "### Thinking mode" in markdown and "### Non-thinking mode" in markdown
    assert "| non-thinking rows: answer loss |" in markdown
    assert "## Thinking modes side by side" not in markdown  # different rows: not compared side by side


def test_both_modes_side_by_side_with_mode_adherence(tiny_lm, mixed_val_file, tmp_path, monkeypatch):
    from medsft.mcq import DIRECT_REQUEST

    (tmp_path / "run_card.json").write_text(  # the model was trained with the empty block carrying loss
        json.dumps({"config": {"medsft": {"empty_think_loss": True}}}), encoding="utf-8"
    )
    generator, report = _run_modes(tiny_lm, mixed_val_file, tmp_path, monkeypatch, "--thinking", "both")
    modes = [(len(conversations), settings.enable_thinking) for conversations, settings, _ in generator.calls]
    assert modes == [(3, True), (3, False), (2, True), (2, False)]  # every row and question in each mode
    direct = generator.calls[3][0]
    assert direct[0][-1]["content"].endswith(DIRECT_REQUEST) and "问题一" in direct[0][-1]["content"]
    assert report["config"]["empty_think_loss"] is True  # read from the run card next to the model
    indomain = report["models"]["model"]["indomain"]
    # 1 of 3 keeps to each mode: well-formed reasoning / an answer with no reasoning text
    assert indomain["generation"]["mode_adherence"] == indomain["generation_no_think"]["mode_adherence"]
    assert indomain["generation"]["mode_adherence"] == pytest.approx(1 / 3)
    assert indomain["loss_by_row_mode"]["non_thinking"]["reasoning"]["tokens"] == 3  # the empty block
    mcq = report["models"]["model"]["mcq"]
    assert set(mcq) == {"think", "no_think"}
    assert mcq["think"]["mode_adherence"] == mcq["no_think"]["mode_adherence"] == 0.5
    assert mcq["no_think"]["accuracy"]["overall"]["correct"] == 2  # "答案：C", then the A after the block
    markdown = (tmp_path / "out/r/report.md").read_text(encoding="utf-8")
    for heading in (
        "## Thinking modes side by side",
        "### Non-thinking mode",
        "## Medical MCQ: non-thinking",
    ):
        assert heading in markdown
    assert "| held-out answers that keep to the mode | 33.3% | 33.3% |" in markdown
    assert "| MCQ answers that keep to the mode | 50.0% | 50.0% |" in markdown
    assert "non-thinking mode sampling (temperature 0.7, top-p 0.8, top-k 20)" in markdown
    before = report["models"]
    assert evaluate.main(["--from-predictions", str(tmp_path / "out/r")]) == 0
    after = json.loads((tmp_path / "out/r/report.json").read_text(encoding="utf-8"))["models"]
    assert after == before


def test_non_thinking_mode_only(tiny_lm, mixed_val_file, tmp_path, monkeypatch):
    generator, report = _run_modes(tiny_lm, mixed_val_file, tmp_path, monkeypatch, "--thinking", "off")
    assert [settings.enable_thinking for _, settings, _ in generator.calls] == [False, False]
    indomain = report["models"]["model"]["indomain"]
    assert indomain["generation"] is None and indomain["generation_no_think"]["rows"] == 3
    assert set(report["models"]["model"]["mcq"]) == {"no_think"}
    markdown = (tmp_path / "out/r/report.md").read_text(encoding="utf-8")
    assert "### Non-thinking mode" in markdown and "## Medical MCQ: non-thinking mode" in markdown
    assert evaluate.trained_empty_think_loss(tmp_path) is None  # no run card: the recipe default, false
    assert report["config"]["empty_think_loss"] is False


def test_both_modes_end_to_end_for_model_and_baseline(models_to_compare, mixed_val_file, tmp_path):
    """Real models, real engine: every held-out row and question answered in each mode by both models, and
    the report sets the modes side by side for each."""
    model, baseline = models_to_compare
    argv = ["--model", str(model), "--baseline", str(baseline), "--data", str(mixed_val_file)]
    argv += ["--mcq-file", str(_two_questions(tmp_path)), "--max-new-tokens", "6", "--batch-size", "4"]
    argv += ["--thinking", "both", "--name", "modes", "--out-dir", str(tmp_path / "out"), "--greedy"]
    assert evaluate.main(argv) == 0
    folder = tmp_path / "out" / "modes"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    for role in ("baseline", "model"):
        result = report["models"][role]
        for key in ("generation", "generation_no_think"):
            assert result["indomain"][key]["rows"] == 3
            assert 0 <= result["indomain"][key]["mode_adherence"] <= 1
        for mode in ("think", "no_think", "likelihood"):
            assert result["mcq"][mode]["accuracy"]["overall"]["questions"] == 2
        records = read_jsonl(folder / "predictions" / f"{role}.indomain_no_think.jsonl")
        assert [r["mode"] for r in records] == ["no_think"] * 3
        # what the engine wrote after the empty block of the prompt is read as the answer, never as reasoning
        assert all(r["reasoning_tokens"] == 0 or "</think>" in r["text"] for r in records)
    assert set(report["comparison"]) == {"think", "no_think", "likelihood"}
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert (
        "| metric | baseline, thinking | baseline, non-thinking | model, thinking | model, non-thinking |"
        in (markdown)
    )
    assert "## Medical MCQ: non-thinking mode" in markdown and "McNemar" in markdown


def test_each_model_is_asked_with_the_prompt_it_was_trained_with(tiny_lm, val_file, tmp_path, monkeypatch):
    """The model folder records a custom system prompt (final/medsft.json): held-out generation, the MCQ
    answers and the MCQ likelihood prompts use it, the baseline keeps medsft's default, run.json records
    both; an explicit --system-prompt wins ("" for none)."""
    from medsft.mcq import score_by_likelihood
    from medsft.trained_prompt import write_trained_system_prompt

    write_trained_system_prompt(tmp_path, "你是儿科医生。")
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    likelihood_prompts = []

    def recording_likelihood(model, tokenizer, questions, batch_size, system_prompt):
        likelihood_prompts.append(system_prompt)
        return score_by_likelihood(model, tokenizer, questions, batch_size, system_prompt)

    monkeypatch.setattr(evaluate, "score_by_likelihood", recording_likelihood)
    both = ("--mcq-mode", "both", "--baseline", str(baseline))
    generator, report = _run_modes(tiny_lm, val_file, tmp_path, monkeypatch, *both)
    system_turns = [conversation[0] for prompts, _, _ in generator.calls for conversation in prompts]
    baseline_calls = len(generator.calls) // 2  # the baseline runs first, then the model, the same requests
    default = {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    trained = {"role": "system", "content": "你是儿科医生。"}
    per_call = [prompts for prompts, _, _ in generator.calls]
    assert all(c[0] == default for prompts in per_call[:baseline_calls] for c in prompts)
    assert all(c[0] == trained for prompts in per_call[baseline_calls:] for c in prompts)
    assert len(system_turns) == 2 * (len(val_file.read_text(encoding="utf-8").splitlines()) + 2)
    assert likelihood_prompts == [DEFAULT_SYSTEM_PROMPT, "你是儿科医生。"]
    run = json.loads((tmp_path / "out/r/run.json").read_text(encoding="utf-8"))
    assert run["config"]["system_prompt"] is None
    assert run["models"]["model"]["system_prompt"] == "你是儿科医生。"
    assert run["models"]["baseline"]["system_prompt"] == DEFAULT_SYSTEM_PROMPT

    likelihood_prompts.clear()
    generator, _ = _run_modes(tiny_lm, val_file, tmp_path, monkeypatch, *both, "--system-prompt", "")
    assert all(c[0]["role"] == "user" for prompts, _, _ in generator.calls for c in prompts)
    assert likelihood_prompts == ["", ""]
    run = json.loads((tmp_path / "out/r/run.json").read_text(encoding="utf-8"))
    assert run["config"]["system_prompt"] == "" and run["models"]["model"]["system_prompt"] == ""


def test_thinking_options():
    config = evaluate.parse_config(["--model", "m", "--thinking", "both", "--empty-think-loss", "false"])
    assert config.thinking_modes == ("think", "no_think") and config.empty_think_loss is False
    assert evaluate.parse_config(["--model", "m"]).thinking_modes == ("think",)  # today's behaviour
    assert config.generation_settings("no_think").enable_thinking is False
    greedy = evaluate.parse_config(["--model", "m", "--greedy"]).generation_settings("no_think")
    assert not greedy.do_sample and not greedy.enable_thinking
    for bad in (["--thinking", "maybe"], ["--empty-think-loss", "perhaps"]):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.parse_config(["--model", "m", *bad])
        assert exit_info.value.code == 2


def test_empty_think_loss_from_the_training_run_card(tmp_path):
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    assert evaluate.trained_empty_think_loss(final) is None
    card = tmp_path / "run" / "run_card.json"
    for value in (True, False):
        card.write_text(json.dumps({"config": {"medsft": {"empty_think_loss": value}}}), encoding="utf-8")
        assert evaluate.trained_empty_think_loss(final) is value
    card.write_text("{not json", encoding="utf-8")
    with pytest.raises(evaluate.EvaluationError, match="pass --empty-think-loss"):
        evaluate.trained_empty_think_loss(final)
