"""medsft.engine: prompts, batched == one-at-a-time greedy, streaming and stopping, backend choice, and the
vLLM engine driven through a stand-in for vLLM's own (vLLM itself needs a GPU)."""

from __future__ import annotations

import importlib.util
import threading
import time
from types import SimpleNamespace

import pytest
from tiny_chat_models import (
    THINKING_REPLY_ANSWER,
    THINKING_REPLY_REASONING,
    diverse_model_dir,
    thinking_model_dir,
)

from medsft import engine as generation_engine
from medsft.chat_format import (
    END_OF_TURN,
    PAD_TOKEN,
    assistant_content,
    render_prompt,
    special_token_ids,
    split_reasoning,
)
from medsft.engine import GenerationError, GenerationSettings, StreamUpdate, load_engine, resolve_backend
from medsft.transformers_engine import BATCH_THREAD_NAME
from medsft.vllm_engine import ENGINE_THREAD_NAME, VLLMEngine

QUESTIONS = [
    "你好",
    "我最近总是头痛，晚上睡不好，白天也很累，这是什么原因？应该去看哪个科？",
    "发烧三天了怎么办",
    "What should I do about a persistent cough that has lasted three weeks?",
    "孩子咳嗽有痰",
]


@pytest.fixture(scope="module")
def diverse_generator(tmp_path_factory, qwen3_tokenizer):
    return load_engine(diverse_model_dir(tmp_path_factory.getbasetemp(), qwen3_tokenizer))


@pytest.fixture(scope="module")
def thinking_generator(tmp_path_factory, qwen3_tokenizer):
    return load_engine(thinking_model_dir(tmp_path_factory.getbasetemp(), qwen3_tokenizer))


def test_split_reasoning_cases():
    assert split_reasoning("<think>\nstep 1\n</think>\n\nanswer") == ("step 1", "answer", True)
    assert split_reasoning("\n<think>a</think>b") == ("a", "b", True)
    # streaming: the think block is still open
    assert split_reasoning("<think>\nhalf a tho") == ("half a tho", "", False)
    assert split_reasoning("<think>\ndone\n</think>\n\n") == ("done", "", False)  # answer not started yet
    # no thinking at all (thinking disabled, or a model that skipped it)
    assert split_reasoning("just an answer") == ("", "just an answer", False)
    # opening tag missing (some templates put it in the prompt)
    assert split_reasoning("thought\n</think>\n\nanswer") == ("thought", "answer", False)
    # two think blocks / stray tags are not well formed
    assert split_reasoning("<think>a</think>b<think>c</think>d").well_formed is False
    assert split_reasoning("<think>a<think>b</think>c").well_formed is False
    assert split_reasoning("") == ("", "", False)


def test_build_prompt_uses_chat_template(diverse_generator):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    thinking = diverse_generator.build_prompt(messages, enable_thinking=True)
    plain = diverse_generator.build_prompt(messages, enable_thinking=False)
    assert (
        thinking == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )
    assert plain == thinking + "<think>\n\n</think>\n\n"
    # earlier reasoning is dropped by Qwen3's template
    history = messages + [
        {"role": "assistant", "content": assistant_content("old reasoning", "A1")},
        {"role": "user", "content": "Q2"},
    ]
    assert "old reasoning" not in diverse_generator.build_prompt(history)


MIN_MARGIN = 1e-2  # logits


def greedy_margin(generator, conversation, max_new_tokens: int) -> float:
    """The smallest gap between the best and second-best logit over a greedy generation."""
    prompt = generator.tokenizer(render_prompt(generator.tokenizer, conversation), return_tensors="pt")
    output = generator.model.generate(
        **prompt,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        output_logits=True,
        return_dict_in_generate=True,
    )
    return min(float(top[0] - top[1]) for top in (step[0].topk(2).values for step in output.logits))


def test_batched_greedy_equals_one_at_a_time(diverse_generator):
    conversations = [[{"role": "user", "content": question}] for question in QUESTIONS]
    settings = GenerationSettings.greedy(max_new_tokens=16)
    # Padding changes the kernels' blocking, so logits differ in the last bits; equality holds on every CPU
    # because no greedy choice here is closer than MIN_MARGIN, a hundred times that noise.
    for conversation in conversations:
        assert greedy_margin(diverse_generator, conversation, 16) > MIN_MARGIN
    batched = diverse_generator.generate(conversations, settings, batch_size=3)
    single = [diverse_generator.generate([conversation], settings)[0] for conversation in conversations]
    assert [g.text for g in batched] == [g.text for g in single]
    assert len({g.text for g in batched}) == len(QUESTIONS)  # outputs really depend on the prompt
    assert diverse_generator.generate([], settings) == []
    for conversation, generation in zip(conversations, batched, strict=True):
        assert generation.truncated  # a random model does not stop by itself within 16 tokens
        assert generation.reasoning_tokens + generation.answer_tokens == 16
        assert generation.prompt_tokens == diverse_generator.count_prompt_tokens(conversation)


def test_generate_splits_reasoning_and_counts_tokens(thinking_generator):
    settings = GenerationSettings.greedy(max_new_tokens=64)
    [generation] = thinking_generator.generate([[{"role": "user", "content": "肚子痛怎么回事"}]], settings)
    assert generation.reasoning == THINKING_REPLY_REASONING
    assert generation.answer == THINKING_REPLY_ANSWER
    assert generation.well_formed and not generation.truncated
    tokenizer = thinking_generator.tokenizer
    think_block = assistant_content(THINKING_REPLY_REASONING, "").rstrip()
    assert generation.reasoning_tokens == len(tokenizer(think_block, add_special_tokens=False)["input_ids"])
    answer_ids = tokenizer(f"\n\n{THINKING_REPLY_ANSWER}", add_special_tokens=False)["input_ids"]
    assert generation.answer_tokens == len(answer_ids)
    [cut] = thinking_generator.generate(
        [[{"role": "user", "content": "你好"}]], settings.greedy(max_new_tokens=4)
    )
    assert cut.truncated and not cut.well_formed and cut.answer == "" and cut.reasoning_tokens == 4


def test_sampling_with_seed_is_reproducible(diverse_generator):
    conversations = [[{"role": "user", "content": question}] for question in QUESTIONS[:2]]
    settings = GenerationSettings(max_new_tokens=8, seed=123)
    first = diverse_generator.generate(conversations, settings)
    second = diverse_generator.generate(conversations, settings)
    assert [g.text for g in first] == [g.text for g in second]


def test_stream_grows_and_ends_with_the_whole_generation(thinking_generator):
    messages = [{"role": "user", "content": "头痛怎么办？"}]
    settings = GenerationSettings.greedy(max_new_tokens=64)
    caller_stop = threading.Event()
    updates = list(thinking_generator.stream(messages, settings, caller_stop))
    assert len(updates) > 5 and all(isinstance(update, StreamUpdate) for update in updates)
    assert [u.done for u in updates] == [False] * (len(updates) - 1) + [True]
    assert all(u.generation is None for u in updates[:-1])
    combined = [u.reasoning + "|" + u.answer for u in updates]
    assert all(len(a) <= len(b) for a, b in zip(combined, combined[1:], strict=False))
    # reasoning is complete before the answer starts, and both are split while streaming
    assert any(u.reasoning and not u.answer for u in updates)
    partial_answers = [u.answer for u in updates if u.answer and not u.done]
    assert partial_answers and partial_answers[0] != THINKING_REPLY_ANSWER
    assert updates[-1][:2] == (THINKING_REPLY_REASONING, THINKING_REPLY_ANSWER)
    assert updates[-1].generation == thinking_generator.generate([messages], settings)[0]
    assert not caller_stop.is_set()  # a normal end leaves the caller's event alone


def test_stream_stops_on_event(thinking_generator):
    stop = threading.Event()
    updates = []
    for update in thinking_generator.stream(
        [{"role": "user", "content": "你好"}], GenerationSettings.greedy(max_new_tokens=500), stop
    ):
        updates.append(update)
        if len(updates) == 3:
            stop.set()
    assert updates[-1].done and updates[-1].generation.truncated
    assert len(updates) < 10  # stopped right away, not after the memorised reply or 500 tokens


def test_stream_closed_early_stops_the_model_thread(thinking_generator):
    stream = thinking_generator.stream(
        [{"role": "user", "content": "你好"}], GenerationSettings(max_new_tokens=500)
    )
    next(stream)
    stream.close()  # what a disconnected client does
    assert no_thread_named(BATCH_THREAD_NAME)  # the cancelled request left the batch and the thread ended


def test_output_without_thinking(thinking_generator):
    tokenizer = thinking_generator.tokenizer
    ids = tokenizer(f"plain answer{END_OF_TURN}{PAD_TOKEN}", add_special_tokens=False)["input_ids"]
    plain = thinking_generator.read_output(ids, enable_thinking=False)
    assert (plain.reasoning, plain.answer, plain.well_formed, plain.truncated) == (
        "",
        "plain answer",
        True,
        False,
    )
    assert plain.reasoning_tokens == 0 and plain.answer_tokens == len(ids) - 2
    # the same text is not well formed when a think block was expected
    assert thinking_generator.read_output(ids, enable_thinking=True).well_formed is False


def test_settings_are_checked():
    with pytest.raises(GenerationError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(GenerationError, match="temperature"):
        GenerationSettings(temperature=0.0)
    assert GenerationSettings.greedy(temperature=0.0).do_sample is False  # greedy ignores temperature
    with pytest.raises(GenerationError, match="top_p"):
        GenerationSettings(top_p=1.5)


def test_backend_choice(tiny_model_dir, monkeypatch):
    with pytest.raises(GenerationError, match="backend"):
        load_engine(tiny_model_dir, backend="tgi")
    monkeypatch.setattr(generation_engine, "vllm_usable", lambda: True)
    assert resolve_backend("auto", "cpu") == "hf"  # never vLLM on a CPU, even where it is installed
    assert resolve_backend("auto", "cuda") == "vllm"
    assert resolve_backend("hf", "cuda") == "hf"
    with pytest.raises(GenerationError, match="needs a GPU"):
        resolve_backend("vllm", "cpu")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a)
    )
    with pytest.raises(GenerationError, match="not installed"):
        resolve_backend("vllm", "cuda")
    monkeypatch.setattr(generation_engine, "vllm_usable", lambda: False)
    assert resolve_backend("auto", "cuda") == "hf"


# --- vLLM generator on a stand-in engine --------------------------------------------------------------------


class FakeEngine:
    """The part of vLLM's LLMEngine that VLLMEngine uses. Every request "generates" one scripted token
    per step and finishes on the stop token (left out of token_ids, as vLLM does) or at max_tokens."""

    def __init__(self, tokenizer, reply_ids: list[int], stop_id: int, step_s: float = 0.0):
        self.tokenizer, self.reply_ids, self.stop_id, self.step_s = tokenizer, reply_ids, stop_id, step_s
        self.model_config = SimpleNamespace(max_model_len=4096)
        self.requests: dict[str, dict] = {}
        self.prompts: list[list[int]] = []
        self.aborted: list[str] = []
        self.fail_with: Exception | None = None

    def add_request(self, request_id, prompt, params) -> str:
        self.prompts.append(prompt["prompt_token_ids"])
        self.requests[request_id] = {"params": params, "ids": []}
        return request_id

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def abort_request(self, request_ids: list[str]) -> None:
        self.aborted += request_ids
        for request_id in request_ids:
            self.requests.pop(request_id, None)

    def step(self) -> list:
        time.sleep(self.step_s)
        if self.fail_with is not None:
            raise self.fail_with
        outputs = []
        for request_id, request in list(self.requests.items()):
            token = self.reply_ids[len(request["ids"])]
            stopped = token == self.stop_id
            if not stopped:
                request["ids"].append(token)
            finished = stopped or len(request["ids"]) >= request["params"].max_tokens
            if finished:
                del self.requests[request_id]
            completion = SimpleNamespace(
                token_ids=list(request["ids"]),
                text=self.tokenizer.decode(request["ids"], skip_special_tokens=True),
                finish_reason=("stop" if stopped else "length") if finished else None,
            )
            outputs.append(SimpleNamespace(request_id=request_id, finished=finished, outputs=[completion]))
        return outputs


def fake_sampling_params(settings: GenerationSettings, stop_token_ids: list[int]):
    return SimpleNamespace(max_tokens=settings.max_new_tokens, stop=stop_token_ids)


@pytest.fixture
def fake_vllm(qwen3_tokenizer):
    end_of_turn = special_token_ids(qwen3_tokenizer)["end_of_turn"]
    reply = assistant_content(THINKING_REPLY_REASONING, THINKING_REPLY_ANSWER)
    reply_ids = qwen3_tokenizer(reply, add_special_tokens=False)["input_ids"] + [end_of_turn]
    engine = FakeEngine(qwen3_tokenizer, reply_ids, end_of_turn, step_s=0.002)
    generator = VLLMEngine(engine, qwen3_tokenizer, configured_eos=end_of_turn, params=fake_sampling_params)
    return generator, engine, reply_ids


def no_thread_named(name: str) -> bool:
    """Whether no thread of that name runs, within 5 seconds."""
    deadline = time.monotonic() + 5
    while any(t.name == name for t in threading.enumerate()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def no_engine_thread() -> bool:
    return no_thread_named(ENGINE_THREAD_NAME)


def test_vllm_generate_in_input_order(fake_vllm):
    generator, engine, reply_ids = fake_vllm
    conversations = [[{"role": "user", "content": question}] for question in QUESTIONS[:3]]
    short = GenerationSettings.greedy(max_new_tokens=5)
    results = generator.generate(conversations, GenerationSettings.greedy(max_new_tokens=200))
    assert engine.prompts == [generator.prompt_ids(c) for c in conversations]
    for conversation, result in zip(conversations, results, strict=True):
        assert (result.reasoning, result.answer) == (THINKING_REPLY_REASONING, THINKING_REPLY_ANSWER)
        assert result.well_formed and not result.truncated  # finished on the stop token
        assert result.reasoning_tokens + result.answer_tokens == len(reply_ids) - 1
        assert result.prompt_tokens == generator.count_prompt_tokens(conversation)
    [cut] = generator.generate(conversations[:1], short)
    assert cut.truncated and cut.reasoning_tokens == 5 and cut.answer == ""
    assert generator.max_context == 4096 and generator.backend == "vllm"
    assert no_engine_thread()


def test_vllm_stream_grows_and_ends_with_the_generation(fake_vllm):
    generator, engine, _ = fake_vllm
    messages = [{"role": "user", "content": "头痛怎么办？"}]
    settings = GenerationSettings.greedy(max_new_tokens=200)
    updates = list(generator.stream(messages, settings))
    assert len(updates) > 5 and [u.done for u in updates] == [False] * (len(updates) - 1) + [True]
    assert any(u.reasoning and not u.answer for u in updates)
    assert updates[-1].generation == generator.generate([messages], settings)[0]
    assert engine.aborted == []  # finished requests are not aborted


def test_vllm_stream_honours_the_stop_event_and_a_closed_stream(fake_vllm):
    generator, engine, _ = fake_vllm
    engine.step_s = 0.02
    stop = threading.Event()
    updates = []
    for update in generator.stream([{"role": "user", "content": "你好"}], GenerationSettings(), stop):
        updates.append(update)
        if len(updates) == 2:
            stop.set()
    assert len(updates) == 3 and updates[-1].done and updates[-1].generation.truncated
    assert len(engine.aborted) == 1 and not engine.requests  # the engine stopped working on it

    stream = generator.stream([{"role": "user", "content": "你好"}], GenerationSettings())
    next(stream)
    stream.close()  # a client went away
    assert len(engine.aborted) == 2 and not engine.requests
    assert no_engine_thread()


def test_vllm_concurrent_streams_each_get_their_own_answer(fake_vllm):
    generator, engine, _ = fake_vllm
    results = {}

    def ask(name: str, max_new_tokens: int) -> None:
        settings = GenerationSettings.greedy(max_new_tokens=max_new_tokens)
        results[name] = list(generator.stream([{"role": "user", "content": name}], settings))[-1].generation

    threads = [threading.Thread(target=ask, args=(name, n)) for name, n in (("a", 200), ("b", 6), ("c", 200))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results["a"].answer == results["c"].answer == THINKING_REPLY_ANSWER
    assert results["b"].truncated and results["b"].reasoning_tokens == 6


def test_vllm_engine_error_reaches_the_caller(fake_vllm):
    generator, engine, _ = fake_vllm
    engine.fail_with = RuntimeError("CUDA out of memory")
    with pytest.raises(RuntimeError, match="out of memory"):
        generator.generate([[{"role": "user", "content": "你好"}]], GenerationSettings())
    with pytest.raises(RuntimeError, match="out of memory"):
        list(generator.stream([{"role": "user", "content": "你好"}], GenerationSettings()))
    engine.fail_with = None
    add_request = engine.add_request

    def refuse(request_id, prompt, params):
        raise ValueError("the prompt is longer than the model context")

    engine.add_request = refuse
    with pytest.raises(ValueError, match="longer than"):
        generator.generate([[{"role": "user", "content": "你好"}]], GenerationSettings())
    engine.add_request = add_request  # the generator is still usable after each failure
    [result] = generator.generate([[{"role": "user", "content": "你好"}]], GenerationSettings.greedy())
    assert result.answer == THINKING_REPLY_ANSWER
