"""`medsft demo`: a real browser session, 20 parallel API clients, bad input, history handling, --check."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tiny_chat_models import (
    THINKING_REPLY_ANSWER,
    THINKING_REPLY_REASONING,
    diverse_model_dir,
)

from medsft import demo
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT
from medsft.generate import GenerationSettings, load_generator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_INPUT_TOKENS = 200  # small, so an over-long question is cheap to build


@pytest.fixture(scope="module")
def generator(thinking_model):
    return load_generator(thinking_model)


@pytest.fixture(scope="module")
def server(generator):
    """The demo app served on a free local port (one request generating at a time, as by default)."""
    config = demo.DemoConfig(
        DEFAULT_SYSTEM_PROMPT, MAX_INPUT_TOKENS, GenerationSettings(max_new_tokens=64, do_sample=False)
    )
    app = demo.build_app(generator, config)
    app.queue(default_concurrency_limit=1)
    port = demo.free_port("127.0.0.1")
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def ask(url: str, question: str, max_new_tokens: int = 64, chat: list | None = None):
    from gradio_client import Client

    client = Client(url, verbose=False)
    job = client.submit(question, chat or [], True, 0.0, 0.95, max_new_tokens, api_name="/chat")
    updates = [update[0] for update in job]
    return updates, job.result()


def wait_for(condition, what: str, limit_s: float = 120) -> None:
    """Poll until condition() holds; fail (instead of hanging) if it never does."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def texts(chat: list, role: str = "assistant") -> list[str]:
    return [demo.bubble_text(bubble) for bubble in chat if bubble["role"] == role]


def test_api_streams_reasoning_then_answer(server):
    updates, (chat, textbox, notice) = ask(server, "头痛怎么办？")
    assert notice == "" and textbox == ""
    thought, answer = [bubble for bubble in chat if bubble["role"] == "assistant"]
    assert thought["metadata"]["title"] == demo.TEXT["zh"]["thought_title"]
    assert demo.bubble_text(thought) == THINKING_REPLY_REASONING
    assert demo.bubble_text(answer) == THINKING_REPLY_ANSWER
    # streamed: the thought is pending before the answer starts, then the answer grows token by token
    pending = [u for u in updates if any((b.get("metadata") or {}).get("status") == "pending" for b in u)]
    assert pending and all(len(texts(u)) == 1 for u in pending)
    partial_answers = {texts(u)[-1] for u in updates if len(texts(u)) == 2}
    assert len(partial_answers) > 3 and THINKING_REPLY_ANSWER in partial_answers


def test_twenty_parallel_clients_all_complete(server):
    questions = [f"第{i}位用户：头痛怎么办？" for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda q: ask(server, q, max_new_tokens=32), questions))
    for question, (_, (chat, _, notice)) in zip(questions, results, strict=True):
        assert notice == ""
        assert texts(chat, "user") == [question]
        assert texts(chat)[-1]  # an answer (or the reasoning) came back for every user


def test_empty_and_overlong_input_get_a_clear_message(server):
    _, (chat, _, notice) = ask(server, "   \n ")
    assert chat == [] and notice == demo.TEXT["zh"]["empty"]
    long_question = "我头痛。" * 150
    _, (chat, textbox, notice) = ask(server, long_question)
    assert chat == [] and "太长" in notice and str(MAX_INPUT_TOKENS) in notice
    assert textbox == long_question  # kept, so the user can shorten it


def test_history_keeps_answers_only_and_drops_oldest_turns(generator):
    config = demo.DemoConfig("", MAX_INPUT_TOKENS, GenerationSettings())
    settings = GenerationSettings(max_new_tokens=16)
    history = [{"role": "user", "content": "问题一"}, {"role": "assistant", "content": "回答一"}]
    messages, dropped, _, _ = demo.fit_history(generator, history, "问题二", config, settings)
    assert dropped == 0 and [m["content"] for m in messages] == ["问题一", "回答一", "问题二"]
    long_history = [
        {"role": "user", "content": "很长的问题" * 80},
        {"role": "assistant", "content": "很长的回答" * 80},
        *history,
    ]
    messages, dropped, length, limit = demo.fit_history(generator, long_history, "问题二", config, settings)
    assert dropped == 1 and length <= limit and messages[0]["content"] == "问题一"
    assert demo.fit_history(generator, [], "痛" * 400, config, settings)[0] is None


def test_ui_texts_exist_in_both_languages():
    assert demo.TEXT["zh"].keys() == demo.TEXT["en"].keys()
    assert (
        "不构成医疗建议" in demo.TEXT["zh"]["disclaimer"]
        and "not medical advice" in demo.TEXT["en"]["disclaimer"]
    )


def test_demo_check_mode(thinking_model, capsys):
    port = demo.free_port("127.0.0.1")
    assert demo.main(["--model", str(thinking_model), "--check", "--port", str(port), "--greedy"]) == 0
    out = capsys.readouterr().out
    assert "demo check passed" in out and THINKING_REPLY_ANSWER in out


def test_safe_launch_defaults():
    args = demo.build_parser().parse_args([])
    assert (args.host, args.port, args.share, args.concurrency) == ("127.0.0.1", 6006, False, 1)


@pytest.mark.slow
def test_real_browser_chat(server, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (see .ci/run)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(server)
        expect(page.get_by_text("不构成医疗建议")).to_be_visible()
        question = page.locator("#question textarea")

        # Record every text the chat shows, to see the answer arrive piece by piece.
        page.evaluate(
            """() => {
                window.__chatTexts = [];
                const chat = document.querySelector('#chatbot');
                new MutationObserver(() => window.__chatTexts.push(chat.innerText))
                    .observe(chat, {childList: true, subtree: true, characterData: true});
            }"""
        )
        question.fill("我最近总是头痛，晚上睡不好，这是什么原因？")
        question.press("Enter")
        chat = page.locator("#chatbot")
        expect(chat.get_by_text(THINKING_REPLY_ANSWER)).to_be_visible(timeout=60_000)
        expect(chat.get_by_text(demo.TEXT["zh"]["thought_title"])).to_be_visible()
        seen = page.evaluate("window.__chatTexts")
        partial = {text for text in seen if "建议" in text and THINKING_REPLY_ANSWER not in text}
        assert partial, "the answer appeared at once, not streamed"
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

        # The thinking block is collapsible: opening it shows the reasoning.
        chat.get_by_text(demo.TEXT["zh"]["thought_title"]).first.click()
        expect(chat.get_by_text(THINKING_REPLY_REASONING)).to_be_visible()
        page.wait_for_timeout(500)  # let the opening animation finish before the screenshot
        page.screenshot(path=str(tmp_path / "demo-thinking-open.png"), full_page=True)

        # Retry answers the same question again in place: still one question and one answer in the chat.
        page.evaluate("window.__chatTexts = []")
        page.locator("#retry").click()

        def answer_was_replaced() -> bool:
            return any(THINKING_REPLY_ANSWER not in text for text in page.evaluate("window.__chatTexts"))

        wait_for(answer_was_replaced, "the retried answer to be replaced")
        expect(chat.get_by_text(THINKING_REPLY_ANSWER)).to_have_count(1, timeout=60_000)
        expect(chat.get_by_text("我最近总是头痛，晚上睡不好，这是什么原因？")).to_have_count(1)

        # HTML and scripts typed by the user are shown as text and never run.
        injection = '<img src=x onerror="window.__xss=1;alert(1)"><script>window.__xss=2</script><b>粗体</b>'
        question.fill(injection)
        question.press("Enter")
        expect(chat.get_by_text("<img src=x onerror=", exact=False)).to_be_visible(timeout=60_000)
        expect(chat.get_by_text(THINKING_REPLY_ANSWER)).to_have_count(2, timeout=60_000)
        assert page.evaluate("window.__xss") is None and not dialogs
        assert page.locator("#chatbot img[src='x'], #chatbot script").count() == 0
        assert "<b>粗体</b>" in chat.inner_text()

        # Empty input: a friendly message, nothing sent.
        page.locator("#send").click()
        expect(page.locator("#notice")).to_contain_text(demo.TEXT["zh"]["empty"])

        # Clear empties the chat.
        page.locator("#clear").click()
        expect(chat.get_by_text(THINKING_REPLY_ANSWER)).to_have_count(0)
        browser.close()


def test_stop_cancel_and_closed_page_stop_the_model(tmp_path_factory, qwen3_tokenizer):
    """The stop button, an API cancel and a closed page each end generation, not max new tokens later."""
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    from medsft.generate import STREAM_THREAD_NAME

    endless = load_generator(diverse_model_dir(tmp_path_factory.getbasetemp(), qwen3_tokenizer))
    last_answer: list[str] = []
    stream = endless.stream

    def recording_stream(*args, **kwargs):
        for update in stream(*args, **kwargs):
            last_answer[:] = [update[1]]
            yield update

    def generating() -> bool:
        return any(thread.name == STREAM_THREAD_NAME for thread in threading.enumerate())

    def wait_until_stopped() -> int:
        wait_for(lambda: not generating(), "the model thread to end")
        return len(qwen3_tokenizer(last_answer[0])["input_ids"])

    endless.stream = recording_stream  # a random model never ends its turn: it would run to max new tokens
    config = demo.DemoConfig("", None, GenerationSettings(max_new_tokens=4000, do_sample=False))
    app = demo.build_app(endless, config)
    app.queue(default_concurrency_limit=1)
    port = demo.free_port("127.0.0.1")
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        job = client.submit("你好", [], False, 0.0, 0.95, 4000, api_name="/chat")
        wait_for(lambda: len(job.outputs()) >= 3, "streamed updates")
        assert generating()
        job.cancel()
        assert wait_until_stopped() < 1000  # far from the 4000 new tokens allowed

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for ending in ("stop button", "closed page"):
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator("#question textarea").fill("你好")
                page.locator("#question textarea").press("Enter")
                wait_for(generating, f"generation to start ({ending})")
                if ending == "stop button":
                    page.locator("#stop").click()
                else:
                    page.close()
                assert wait_until_stopped() < 1000, ending
            browser.close()
    finally:
        app.close()
