"""Serving throughput: N streaming requests sent at once against the same N sent one after another.

    python benchmarks/serve_bench.py                                   # tiny random-weight Qwen3, CPU
    python benchmarks/serve_bench.py --model output/smoke/final --max-tokens 128

Starts `medsft serve` as its own process (transformers backend, --max-batch-size N) on a free port and sends
the requests from this process with the official `openai` client: streamed, greedy, the same question, a fixed
max_tokens. Reports completion tokens per second of each phase (counted from each reply's `usage`) and the
concurrent/sequential ratio, per round and as the median over the rounds. Without --model it builds a tiny
random-weight Qwen3 with the bundled Qwen3 tokenizer: its replies run to max_tokens, so every request does the
same work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

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


def wait_for_health(base_url: str, server: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"medsft serve exited with status {server.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("medsft serve did not come up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: a tiny random-weight Qwen3)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="OMP_NUM_THREADS of the server (default: torch's own)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or tiny_model(Path(scratch) / "tiny-qwen3")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "medsft.cli", "serve", "--model", str(model), "--port", str(port)]
        command += ["--served-model-name", NAME, "--backend", "hf", "--device", args.device]
        command += ["--max-batch-size", str(args.requests), "--max-queue", "0"]
        env = {**os.environ, "MEDSFT_API_KEY": ""}
        if args.torch_threads:
            env["OMP_NUM_THREADS"] = str(args.torch_threads)
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(base_url, server)
            asyncio.run(phase(base_url, 2, args.max_tokens, concurrent=True))  # warm-up
            rounds = []
            for _ in range(args.rounds):
                sequential = asyncio.run(phase(base_url, args.requests, args.max_tokens, concurrent=False))
                concurrent = asyncio.run(phase(base_url, args.requests, args.max_tokens, concurrent=True))
                ratio = round(concurrent["tokens_per_s"] / sequential["tokens_per_s"], 2)
                rounds.append({"sequential": sequential, "concurrent": concurrent, "ratio": ratio})
                print(json.dumps(rounds[-1]), flush=True)
            health = httpx.get(f"{base_url}/health", timeout=10).json()
        finally:
            server.terminate()
            server.wait(30)
    result = {
        "model": str(args.model or "tiny random-weight Qwen3 (hidden 64, 2 layers, Qwen3 tokenizer)"),
        "device": args.device,
        "torch_threads": args.torch_threads,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "largest_batch": health["largest_batch"],
        "median_ratio": statistics.median(entry["ratio"] for entry in rounds),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
