"""Serving throughput: N streaming requests sent at once against the same N sent one after another.

    python benchmarks/serve_bench.py                                   # tiny random-weight Qwen3, CPU
    python benchmarks/serve_bench.py --model output/smoke/final --max-tokens 128

Runs `medsft serve`'s app in this process (uvicorn on a free port, the transformers request batcher) and
sends the requests with the official `openai` client: streamed, greedy, the same question, a fixed max_tokens.
Reports completion tokens per second of each phase (counted from each reply's `usage`) and the
concurrent/sequential ratio, per round and as the median over the rounds. Without --model it builds a tiny
random-weight Qwen3 with the bundled Qwen3 tokenizer: its replies run to max_tokens, so every request does the
same work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai
import uvicorn

from medsft.serve import Server, ServerSettings, build_app, load_model

NAME = "bench"
QUESTION = "我最近总是头痛，晚上睡不好，白天也很累，这是什么原因？"


def tiny_model(folder: Path) -> Path:
    from medsft.model import build_tiny_qwen3, load_bundled_tokenizer

    tokenizer = load_bundled_tokenizer()
    model = build_tiny_qwen3(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def ask(api: openai.AsyncOpenAI, max_tokens: int) -> int:
    stream = await api.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    tokens = 0
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return tokens


async def phase(base_url: str, requests: int, max_tokens: int, concurrent: bool) -> dict:
    api = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="bench", max_retries=0, timeout=600)
    async with api:
        started = time.perf_counter()
        if concurrent:
            counts = await asyncio.gather(*(ask(api, max_tokens) for _ in range(requests)))
        else:
            counts = [await ask(api, max_tokens) for _ in range(requests)]
        seconds = time.perf_counter() - started
    tokens = sum(counts)
    return {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: a tiny random-weight Qwen3)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or tiny_model(Path(scratch) / "tiny-qwen3")
        served = load_model(model, NAME, backend="hf", device=args.device, max_batch_size=args.requests)
        server = Server(served, ServerSettings(max_queue=0))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        uvicorn_server = uvicorn.Server(uvicorn.Config(build_app(server), port=port, log_level="warning"))
        thread = threading.Thread(target=uvicorn_server.run, daemon=True)
        thread.start()
        while not uvicorn_server.started:
            time.sleep(0.05)
        base_url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(phase(base_url, 2, args.max_tokens, concurrent=True))  # warm-up
            rounds = []
            for _ in range(args.rounds):
                sequential = asyncio.run(phase(base_url, args.requests, args.max_tokens, concurrent=False))
                concurrent = asyncio.run(phase(base_url, args.requests, args.max_tokens, concurrent=True))
                ratio = round(concurrent["tokens_per_s"] / sequential["tokens_per_s"], 2)
                rounds.append({"sequential": sequential, "concurrent": concurrent, "ratio": ratio})
                print(json.dumps(rounds[-1]), flush=True)
        finally:
            uvicorn_server.should_exit = True
            thread.join(10)
    result = {
        "model": str(args.model or "tiny random-weight Qwen3 (hidden 64, 2 layers, Qwen3 tokenizer)"),
        "device": args.device,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "largest_batch": served.engine.largest_batch,
        "median_ratio": statistics.median(entry["ratio"] for entry in rounds),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
