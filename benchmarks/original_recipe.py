"""The original Qwen3-Medical-SFT training and inference path, reproduced as the benchmark's baseline.

Its train.py builds the ChatML prompt by hand, tokenizes `<think>{think}</think> \\n {answer}` separately,
appends a pad token (trained too), masks the prompt with -100, truncates at 2048 tokens, pads with
`DataCollatorForSeq2Seq(padding=True)` and trains with transformers' `Trainer` (batch 1 x gradient
accumulation 4, gradient checkpointing, model loaded in bf16, learning rate 1e-4). Its inference.py answers
one question at a time (chat template, `model.generate`, decode). Only what a benchmark must change is
changed: no evaluation, saving or SwanLab reporting during the timed steps, a step limit, and a fixed row
order so both paths see the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase, Trainer, TrainingArguments

PROMPT = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
MAX_LENGTH = 2048


def original_example(row: dict) -> dict:
    """`dataset_jsonl_transfer`: one raw {question, think, answer} row → {instruction, input, output}."""
    return {
        "instruction": PROMPT,
        "input": row["question"],
        "output": f"<think>{row['think']}</think> \n {row['answer']}",
    }


def process_func(example: dict, tokenizer: PreTrainedTokenizerBase, max_length: int = MAX_LENGTH) -> dict:
    """The original tokenization: ChatML prompt built by hand (on purpose, as it was), -100 on the prompt."""
    instruction = tokenizer(
        f"<|im_start|>system\n{PROMPT}<|im_end|>\n<|im_start|>user\n{example['input']}<|im_end|>\n"
        "<|im_start|>assistant\n",
        add_special_tokens=False,
    )
    response = tokenizer(f"{example['output']}", add_special_tokens=False)
    input_ids = instruction["input_ids"] + response["input_ids"] + [tokenizer.pad_token_id]
    attention_mask = instruction["attention_mask"] + response["attention_mask"] + [1]
    labels = [-100] * len(instruction["input_ids"]) + response["input_ids"] + [tokenizer.pad_token_id]
    if len(input_ids) > max_length:
        input_ids, attention_mask, labels = (
            input_ids[:max_length],
            attention_mask[:max_length],
            labels[:max_length],
        )
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def original_dataset(
    raw_rows: Sequence[dict], tokenizer: PreTrainedTokenizerBase, max_length: int = MAX_LENGTH
) -> Dataset:
    examples = Dataset.from_list([original_example(row) for row in raw_rows])
    return examples.map(
        process_func,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
        remove_columns=examples.column_names,
    )


def original_training_arguments(
    output_dir: str, max_steps: int, learning_rate: float = 1e-4, **run_settings
) -> TrainingArguments:
    """The original's TrainingArguments; `run_settings`: what a timed run changes (logging, no saving)."""
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=4,
        activation_checkpointing=True,  # the original's gradient_checkpointing=True (transformers 5 name)
        learning_rate=learning_rate,
        max_steps=max_steps,
        **run_settings,
    )


def build_original_trainer(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    raw_rows: Sequence[dict],
    output_dir: str,
    max_steps: int,
    learning_rate: float = 1e-4,
    callbacks: list | None = None,
    max_length: int = MAX_LENGTH,
    run_settings: dict | None = None,
) -> Trainer:
    """The original train.py's Trainer around `model` (already bf16, as the original loads it)."""
    model.enable_input_require_grads()
    return Trainer(
        model=model,
        args=original_training_arguments(output_dir, max_steps, learning_rate, **(run_settings or {})),
        train_dataset=original_dataset(raw_rows, tokenizer, max_length),
        data_collator=DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True),
        callbacks=callbacks,
    )


@torch.inference_mode()
def original_generate_one_by_one(
    model, tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], max_new_tokens: int
) -> list[list[int]]:
    """inference.py's `predict`, once per question: chat template, greedy generate, keep the new tokens."""
    outputs = []
    for question in questions:
        messages = [{"role": "system", "content": PROMPT}, {"role": "user", "content": question}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        model_inputs = tokenizer([text], return_tensors="pt").to(model.device)
        generated = model.generate(
            model_inputs.input_ids,
            attention_mask=model_inputs.attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_ids = generated[0][len(model_inputs.input_ids[0]) :].tolist()
        tokenizer.decode(new_ids, skip_special_tokens=True)
        outputs.append(new_ids)
    return outputs
