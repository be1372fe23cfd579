"""Every speed-up keeps the trained-token mask, the loss and the gradients of the plain path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from medsft.chat_format import END_OF_TURN
from medsft.trainer import (
    FastSFTTrainer,
    add_trained_token_loss,
    plain_causal_lm_loss,
    trained_token_cross_entropy,
)


def _random_case(seed: int = 0, batch: int = 2, seq: int = 23, hidden: int = 16, vocab: int = 300):
    generator = torch.Generator().manual_seed(seed)
    hidden_states = torch.randn(batch, seq, hidden, generator=generator)
    weight = torch.randn(vocab, hidden, generator=generator) * 0.5
    labels = torch.randint(0, vocab, (batch, seq), generator=generator)
    labels[0, :7] = -100  # a prompt
    labels[1, :3] = -100
    labels[1, 15:] = -100  # right padding
    return hidden_states, weight, labels


def _plain_loss_and_grads(hidden_states, weight, labels):
    h = hidden_states.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    loss = plain_causal_lm_loss(h @ w.t(), labels)
    loss.backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("tokens_per_chunk", [1, 5, 1024])
def test_trained_token_loss_and_gradients_equal_plain_masked_cross_entropy(tokens_per_chunk):
    hidden_states, weight, labels = _random_case()
    expected_loss, expected_h_grad, expected_w_grad = _plain_loss_and_grads(hidden_states, weight, labels)

    h = hidden_states.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    loss, num_trained = trained_token_cross_entropy(h, w, labels, tokens_per_chunk=tokens_per_chunk)
    loss.backward()

    assert int(num_trained) == int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.grad, expected_h_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w.grad, expected_w_grad, rtol=1e-4, atol=1e-6)
    assert h.grad[0, :6].abs().sum() == 0  # positions predicting prompt tokens get no gradient


def test_cpu_blocks_of_the_products_keep_the_loss_and_gradients(monkeypatch):
    """On CPU the logits are built a few tokens at a time and the weight gradient a block of the vocabulary
    at a time: blocks that do not divide the shapes give the plain path's values."""
    import medsft.trainer

    monkeypatch.setattr(medsft.trainer, "_TOKENS_PER_PRODUCT", 3)
    monkeypatch.setattr(medsft.trainer, "_VOCAB_ROWS_PER_PRODUCT", 7)
    hidden_states, weight, labels = _random_case(seed=5)
    expected_loss, expected_h_grad, expected_w_grad = _plain_loss_and_grads(hidden_states, weight, labels)
    h = hidden_states.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    loss, _ = trained_token_cross_entropy(h, w, labels, tokens_per_chunk=10)
    loss.backward()
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.grad, expected_h_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w.grad, expected_w_grad, rtol=1e-4, atol=1e-6)
    assert w.grad.is_contiguous()


def test_the_cpu_logits_buffer_is_kept_between_calls_until_released():
    import medsft.trainer

    hidden_states, weight, labels = _random_case(seed=6)
    trained_token_cross_entropy(hidden_states, weight, labels)
    buffer = medsft.trainer._workspace.buffer
    trained_token_cross_entropy(hidden_states, weight, labels)
    assert buffer is not None and medsft.trainer._workspace.buffer is buffer
    medsft.trainer.release_logits_workspace()
    assert medsft.trainer._workspace.buffer is None


def test_num_items_in_batch_divides_the_summed_loss_like_gradient_accumulation():
    hidden_states, weight, labels = _random_case(seed=1)
    mean_loss, count = trained_token_cross_entropy(hidden_states, weight, labels)
    loss, _ = trained_token_cross_entropy(hidden_states, weight, labels, num_items_in_batch=100)
    torch.testing.assert_close(loss, mean_loss * count / 100)


def test_bf16_autocast_stays_within_bf16_tolerance_of_fp32():
    hidden_states, weight, labels = _random_case(seed=2, hidden=32, vocab=2000)
    expected_loss, expected_h_grad, expected_w_grad = _plain_loss_and_grads(hidden_states, weight, labels)
    h = hidden_states.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = trained_token_cross_entropy(h, w, labels)
    loss.backward()
    assert w.grad.dtype == torch.float32
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(h.grad, expected_h_grad, rtol=5e-2, atol=5e-3)
    torch.testing.assert_close(w.grad, expected_w_grad, rtol=5e-2, atol=5e-3)


def test_bf16_confident_token_keeps_its_loss_and_target_gradient():
    """bf16 rounds a target probability above 1 - 2^-9 to 1 (its loss and p - 1 would be 0): the loss and the
    target's gradient column come from the other columns, summed in fp32, to bf16's relative precision."""
    vocab = 64
    weight = torch.eye(vocab, dtype=torch.bfloat16)  # the hidden state is the logits row
    logits = torch.zeros(2, vocab)
    logits[0, 5] = 13.375  # exactly bf16: p(5) = 1 - 9.8e-5
    hidden_states = torch.zeros(2, 2, vocab, dtype=torch.bfloat16)
    hidden_states[:, 0] = logits.bfloat16()
    labels = torch.tensor([[-100, 5], [-100, 7]])  # row 1: all logits equal, p = 1/64
    h = hidden_states.clone().requires_grad_()
    loss, _ = trained_token_cross_entropy(h, weight, labels, num_items_in_batch=1)
    loss.backward()
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    expected_loss = -(log_probs[0, 5] + log_probs[1, 7])
    expected_target_grad = log_probs[0, 5].exp() - 1  # -9.8e-5
    assert -expected_target_grad.item() == pytest.approx(9.8e-5, rel=1e-2)
    torch.testing.assert_close(loss.double(), expected_loss, rtol=2e-3, atol=0)
    assert h.grad[0, 0, 5].item() == pytest.approx(expected_target_grad.item(), rel=1e-2)
    assert h.grad[1, 0, 7].item() == pytest.approx(1 / vocab - 1, rel=1e-2)


def test_vanishing_target_probability_keeps_an_exact_finite_loss():
    labels = torch.tensor([[-100, 2, 3, 4]])
    weight = torch.zeros(10, 4)
    weight[0] = 60.0  # token 0 dominates every position by ~240 nats: p(target) underflows in fp32
    hidden_states = torch.ones(1, 4, 4)
    loss, _ = trained_token_cross_entropy(hidden_states, weight, labels)
    expected = plain_causal_lm_loss(hidden_states @ weight.t(), labels)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, expected)


def test_batch_without_trained_tokens_gives_zero_loss_and_backpropagates():
    hidden_states, weight, labels = _random_case(seed=4)
    labels[:] = -100
    h = hidden_states.clone().requires_grad_()
    loss, count = trained_token_cross_entropy(h, weight, labels)
    loss.backward()
    assert int(count) == 0 and float(loss.detach()) == 0.0
    assert h.grad is not None and h.grad.abs().sum() == 0


# ---------------------------------------------------------------- through the real model and TRL


@pytest.fixture(scope="module")
def messages_rows(real_val_rows):
    from medsft.conversion import convert_row

    raw = [json.loads(line) for line in real_val_rows.read_text(encoding="utf-8").splitlines()[:3]]
    # short rows keep the test fast; the mask logic does not depend on length
    for row in raw:
        row["think"], row["answer"] = row["think"][:60], row["answer"][:40]
    return [{"messages": convert_row(row)} for row in raw]


def _trainer(trainer_class, model, tokenizer, rows, tmp_path, peft_config=None, **overrides):
    from datasets import Dataset
    from trl import SFTConfig

    config = SFTConfig(
        output_dir=str(tmp_path / trainer_class.__name__),
        assistant_only_loss=True,
        per_device_train_batch_size=len(rows),
        max_length=None if overrides.get("padding_free") else 2048,
        report_to="none",
        use_cpu=True,
        bf16=False,
        **overrides,
    )
    return trainer_class(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def _tiny(tokenizer, seed=0):
    from medsft.model import build_tiny_qwen3

    return build_tiny_qwen3(tokenizer, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=seed)


def _loss_and_grads(trainer, batch):
    model = trainer.model
    model.zero_grad()
    num_items = int((batch["labels"][:, 1:] != -100).sum())
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fast_trainer_matches_sft_trainer_loss_gradients_and_assistant_mask(
    qwen3_tokenizer, messages_rows, tmp_path
):
    from trl import SFTTrainer

    plain = _trainer(SFTTrainer, _tiny(qwen3_tokenizer), qwen3_tokenizer, messages_rows, tmp_path)
    fast = _trainer(FastSFTTrainer, _tiny(qwen3_tokenizer), qwen3_tokenizer, messages_rows, tmp_path)
    items = [plain.train_dataset[i] for i in range(len(messages_rows))]
    batch = plain.data_collator(items)
    fast_batch = fast.data_collator([fast.train_dataset[i] for i in range(len(messages_rows))])
    assert torch.equal(batch["labels"], fast_batch["labels"])  # identical trained-token mask

    # The mask is exactly the assistant turn <think>…<|im_end|>\n of each row
    for row, ids, labels in zip(messages_rows, batch["input_ids"], batch["labels"], strict=True):
        trained = ids[labels != -100].tolist()
        expected = qwen3_tokenizer(
            row["messages"][-1]["content"] + END_OF_TURN + "\n", add_special_tokens=False
        )
        assert trained == expected["input_ids"]

    plain_loss, plain_grads = _loss_and_grads(plain, batch)
    fast_loss, fast_grads = _loss_and_grads(fast, batch)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == fast_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fast_trainer_releases_the_logits_buffer_after_training(
    qwen3_tokenizer, messages_rows, tmp_path, monkeypatch
):
    import medsft.trainer

    fast = _trainer(
        FastSFTTrainer, _tiny(qwen3_tokenizer), qwen3_tokenizer, messages_rows, tmp_path, max_steps=1
    )
    held: list[bool] = []
    original = medsft.trainer._softmax_of_logits

    def recording(hidden, weight):
        probs = original(hidden, weight)
        held.append(medsft.trainer._workspace.buffer is not None)
        return probs

    monkeypatch.setattr(medsft.trainer, "_softmax_of_logits", recording)
    fast.train()
    assert held and all(held)  # the loss ran in the buffer during training
    assert getattr(medsft.trainer._workspace, "buffer", None) is None


def test_padding_free_batch_keeps_sequences_apart(qwen3_tokenizer, messages_rows, tmp_path):
    """One flattened row (position_ids restart per sequence) gives the loss of the padded batch."""
    padded = _trainer(FastSFTTrainer, _tiny(qwen3_tokenizer), qwen3_tokenizer, messages_rows, tmp_path)
    packed = _trainer(
        FastSFTTrainer, _tiny(qwen3_tokenizer), qwen3_tokenizer, messages_rows, tmp_path, padding_free=True
    )
    items = [padded.train_dataset[i] for i in range(len(messages_rows))]
    padded_batch = padded.data_collator(items)
    packed_batch = packed.data_collator(items)
    assert packed_batch["input_ids"].shape[0] == 1 and "attention_mask" not in packed_batch
    padded_loss, padded_grads = _loss_and_grads(padded, padded_batch)
    packed_loss, packed_grads = _loss_and_grads(packed, packed_batch)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_patched_forward_without_the_flag_is_the_original_forward(qwen3_tokenizer):
    model = _tiny(qwen3_tokenizer)
    input_ids = torch.tensor([[1, 2, 3, 4, 5]])
    before = model(input_ids=input_ids, labels=input_ids)
    add_trained_token_loss(model)
    after = model(input_ids=input_ids, labels=input_ids)
    torch.testing.assert_close(after.logits, before.logits)
    torch.testing.assert_close(after.loss, before.loss)
    fast = model(input_ids=input_ids, labels=input_ids, trained_token_loss=True)
    torch.testing.assert_close(fast.loss, before.loss, rtol=1e-5, atol=1e-5)


def test_reference_reproduces_the_original_masking(qwen3_tokenizer, real_val_rows):
    """benchmarks/original_recipe.py: prompt masked, `<think>{think}</think> \\n {answer}` + pad trained."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "original_recipe.py"
    spec = importlib.util.spec_from_file_location("original_recipe", path)
    original = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(original)
    row = json.loads(real_val_rows.read_text(encoding="utf-8").splitlines()[0])
    example = original.original_example(row)
    tokenized = original.process_func(example, qwen3_tokenizer)
    response = qwen3_tokenizer(example["output"], add_special_tokens=False)["input_ids"]
    trained = [t for t in tokenized["labels"] if t != -100]
    assert trained == response + [qwen3_tokenizer.pad_token_id]
    assert tokenized["input_ids"][-len(trained) :] == trained
    short = original.process_func(example, qwen3_tokenizer, max_length=64)
    assert len(short["input_ids"]) == len(short["labels"]) == 64


def test_fast_trainer_matches_sft_trainer_with_a_lora_adapter(qwen3_tokenizer, messages_rows, tmp_path):
    """With LoRA the output layer is frozen: only the adapters' gradients, equal to the plain path's."""
    from peft import LoraConfig
    from trl import SFTTrainer

    def lora():
        return LoraConfig(
            task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0
        )

    rows = messages_rows[:2]
    plain, fast = (
        _trainer(cls, _tiny(qwen3_tokenizer), qwen3_tokenizer, rows, tmp_path, peft_config=lora())
        for cls in (SFTTrainer, FastSFTTrainer)
    )
    batch = plain.data_collator([plain.train_dataset[i] for i in range(len(rows))])
    plain_loss, plain_grads = _loss_and_grads(plain, batch)
    fast_loss, fast_grads = _loss_and_grads(fast, batch)
    assert plain_grads and all("lora_" in name for name in plain_grads)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_zero3_falls_back_to_sft_trainer_loss(qwen3_tokenizer, messages_rows, tmp_path, monkeypatch):
    """Under ZeRO-3 the output layer's weight is sharded outside its forward: the fast loss must not run."""
    import medsft.trainer

    fast = _trainer(FastSFTTrainer, _tiny(qwen3_tokenizer), qwen3_tokenizer, messages_rows, tmp_path)
    batch = fast.data_collator([fast.train_dataset[i] for i in range(len(messages_rows))])
    assert fast._fast_path_applies(batch, return_outputs=False)
    monkeypatch.setattr(medsft.trainer, "is_deepspeed_zero3_enabled", lambda: True)
    assert not fast._fast_path_applies(batch, return_outputs=False)
    flags = []
    patched_forward = fast.model.forward

    def recording_forward(*args, **kwargs):
        flags.append(kwargs.get("trained_token_loss"))
        return patched_forward(*args, **kwargs)

    fast.model.forward = recording_forward
    loss = fast.compute_loss(fast.model, dict(batch))
    assert flags == [None]  # SFTTrainer's own call, without the trained_token_loss flag
    assert torch.isfinite(loss)
