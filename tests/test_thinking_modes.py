"""Non-thinking rows train exactly as Qwen3 renders a turn generated with enable_thinking=False: checked on
the real tokenizer through the real trainer set-up, for both settings of `empty_think_loss`."""

from __future__ import annotations

import pytest

from medsft import train
from medsft.chat_format import (
    DEFAULT_SYSTEM_PROMPT,
    END_OF_TURN,
    NO_THINK_SWITCH,
    build_messages,
    prompt_messages,
    render_prompt,
    without_reasoning,
)
from medsft.model import build_tiny_qwen3, original_qwen3_chat_template
from medsft.recipe import load_recipe
from medsft.thinking_modes import split_examples, training_examples

QUESTION, THINK, ANSWER = (
    "发烧39度怎么办？",
    "先考虑常见病因，再看危险信号。",
    "多休息、补液；持续高热请就医。",
)
THINKING_ROW = {"messages": build_messages(QUESTION, THINK, ANSWER)}
PLAIN_ROW = {"messages": without_reasoning(build_messages(QUESTION, THINK, ANSWER))}


def trained_examples(tokenizer, tmp_path, rows: list[dict], empty_think_loss: bool) -> list[tuple[str, str]]:
    """(whole text, text of the tokens with a loss) of each row, via the real trainer set-up."""
    recipe = load_recipe(
        "smoke",
        ["--output_dir", str(tmp_path), "--report_to", "none", "--empty_think_loss", str(empty_think_loss)],
    )
    data = train.RunData(train_rows=rows, val_rows=rows, files={})
    trainer = train.build_trainer(recipe, build_tiny_qwen3(tokenizer), tokenizer, data)
    result = []
    for example in trainer.train_dataset:
        ids, labels = example["input_ids"], example["labels"]
        positions = [k for k, label in enumerate(labels) if label != -100]
        assert positions == list(range(positions[0], len(ids)))  # one span, up to the end
        result.append((tokenizer.decode(ids), tokenizer.decode([ids[k] for k in positions])))
    return result


@pytest.fixture
def original_template_tokenizer(qwen3_tokenizer):
    """The tokenizer with Qwen3's own template, as inference renders prompts."""
    assert qwen3_tokenizer.chat_template == original_qwen3_chat_template()
    return qwen3_tokenizer


def test_non_thinking_row_trains_from_where_generation_starts(original_template_tokenizer, tmp_path):
    tokenizer = original_template_tokenizer
    (think_text, think_trained), (plain_text, plain_trained) = trained_examples(
        tokenizer, tmp_path, [THINKING_ROW, PLAIN_ROW], empty_think_loss=False
    )
    # the prompt inference builds with enable_thinking=False is a prefix of the training text, and the loss
    # covers exactly what follows it: the answer and the end of the turn
    prompt = render_prompt(tokenizer, prompt_messages(QUESTION), enable_thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert plain_text.startswith(prompt)
    assert plain_trained == plain_text[len(prompt) :] == ANSWER + END_OF_TURN + "\n"
    # and it is the text Qwen3's own template renders for such a turn
    assert plain_text == tokenizer.apply_chat_template(PLAIN_ROW["messages"], tokenize=False)
    # the thinking row beside it trains as before: from <think> on, its prompt built with enable_thinking=True
    thinking_prompt = render_prompt(tokenizer, prompt_messages(QUESTION), enable_thinking=True)
    assert think_text.startswith(thinking_prompt)
    assert think_trained == think_text[len(thinking_prompt) :]
    assert think_trained.startswith(f"<think>\n{THINK}\n</think>\n\n{ANSWER}")


def test_empty_think_loss_trains_the_block_after_the_soft_switch(original_template_tokenizer, tmp_path):
    tokenizer = original_template_tokenizer
    (think_text, think_trained), (plain_text, plain_trained) = trained_examples(
        tokenizer, tmp_path, [THINKING_ROW, PLAIN_ROW], empty_think_loss=True
    )
    switched = prompt_messages(f"{QUESTION} {NO_THINK_SWITCH}")
    # the soft switch: the prompt is built with enable_thinking left True, the model writes the empty block
    prompt = render_prompt(tokenizer, switched, enable_thinking=True)
    assert plain_text.startswith(prompt)
    assert plain_trained == plain_text[len(prompt) :] == f"<think>\n\n</think>\n\n{ANSWER}{END_OF_TURN}\n"
    # a prompt built with enable_thinking=False is a prefix too: its empty block is the one trained
    assert plain_text.startswith(render_prompt(tokenizer, switched, enable_thinking=False))
    assert NO_THINK_SWITCH not in think_text  # thinking rows are left as they are


def test_rows_without_a_non_thinking_turn_keep_the_messages_form():
    assert training_examples([THINKING_ROW], empty_think_loss=False) == [THINKING_ROW]
    assert training_examples([THINKING_ROW], empty_think_loss=True) == [THINKING_ROW]
    mixed = training_examples([THINKING_ROW, PLAIN_ROW], empty_think_loss=False)
    assert [e["chat_template_kwargs"] for e in mixed] == [
        {"enable_thinking": True},
        {"enable_thinking": False},
    ]
    assert mixed[1]["prompt"][0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


@pytest.mark.parametrize("empty_think_loss", [False, True])
def test_a_mixture_with_both_modes_trains_end_to_end(tmp_path, empty_think_loss):
    """`medsft data --mixture` (the sample, a share of it non-thinking, and an answer-only source), then the
    smoke recipe on its output: training, evaluation, the final model and its answers."""
    import json
    import math

    import yaml

    from medsft.data import prepare_mixture
    from medsft.paths import sample_data_file

    answers = [{"q": f"第{i}个问题：如何预防感冒？", "a": f"勤洗手、规律作息（{i}）。"} for i in range(6)]
    (tmp_path / "answers.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in answers), encoding="utf-8"
    )
    mixture = {
        "datasets": [
            {"id": str(sample_data_file()), "no_think_ratio": 0.25},
            {"id": "./answers.jsonl", "columns": {"question": "q", "answer": "a"}, "thinking": False},
        ],
        "val_ratio": 0.25,
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(mixture, allow_unicode=True), encoding="utf-8")
    report = prepare_mixture(tmp_path / "mix.yaml", tmp_path / "data")
    assert report["splits"]["non_thinking"]["train"] > 0 and report["splits"]["non_thinking"]["val"] > 0

    out = tmp_path / "run"
    overrides = ["--output_dir", str(out), "--dataset", str(tmp_path / "data"), "--max_steps", "2"]
    overrides += ["--eval_steps", "2", "--save_strategy", "no", "--report_to", "none"]
    overrides += ["--val_questions", "1", "--val_max_new_tokens", "4"]
    overrides += ["--empty_think_loss", str(empty_think_loss).lower()]
    overrides += ["--per_device_eval_batch_size", "32"]  # one batch: eval_loss is token-weighted
    train.run(load_recipe("smoke", overrides))
    card = json.loads((out / "run_card.json").read_text(encoding="utf-8"))
    assert card["config"]["medsft"]["empty_think_loss"] is empty_think_loss
    losses = [entry["loss"] for entry in card["log_history"] if "loss" in entry]
    evaluations = [entry["eval_loss"] for entry in card["log_history"] if "eval_loss" in entry]
    assert len(losses) == 2 and evaluations and all(math.isfinite(x) for x in losses + evaluations)
    assert (out / "final" / "model.safetensors").is_file()

    # `medsft eval` on the same held-out rows: each in its own mode, the loss as the trainer scored it (the
    # setting read from the run card), in both modes side by side
    from medsft import evaluate

    argv = ["--model", str(out / "final"), "--data", str(tmp_path / "data" / "val.jsonl"), "--greedy"]
    argv += ["--thinking", "both", "--mcq-mode", "none", "--max-new-tokens", "4", "--out-dir", str(tmp_path)]
    assert evaluate.main([*argv, "--name", "modes"]) == 0
    report = json.loads((tmp_path / "modes" / "report.json").read_text(encoding="utf-8"))
    assert report["config"]["empty_think_loss"] is empty_think_loss
    indomain = report["models"]["model"]["indomain"]
    assert indomain["rows"] == len((tmp_path / "data" / "val.jsonl").read_text(encoding="utf-8").splitlines())
    parts = indomain["loss"].values()
    pooled = sum(part["loss"] * part["tokens"] for part in parts) / sum(part["tokens"] for part in parts)
    assert pooled == pytest.approx(evaluations[-1], rel=1e-4)  # the trainer's eval_loss of the final model
    assert set(indomain["loss_by_row_mode"]) == {"thinking", "non_thinking"}
    assert indomain["generation"]["rows"] == indomain["generation_no_think"]["rows"] == indomain["rows"]


def test_every_split_takes_one_form_when_any_holds_a_non_thinking_row():
    """TRL picks the loss mask from the train split's first example and applies it to the val split too: a
    val split with non-thinking rows beside an all-thinking train split must not take another form."""
    train, val = split_examples([[THINKING_ROW], [THINKING_ROW, PLAIN_ROW]], empty_think_loss=False)
    assert {tuple(sorted(example)) for example in [*train, *val]} == {
        ("chat_template_kwargs", "completion", "prompt")
    }
    train, val = split_examples([[THINKING_ROW], [THINKING_ROW]], empty_think_loss=False)
    assert train == val == [THINKING_ROW]  # no non-thinking row anywhere: the messages form, unchanged
