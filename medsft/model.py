"""Model and tokenizer sources (ModelScope id, local folder, Hugging Face id); random-weight stand-ins (a tiny
Qwen3, or any architecture from a config.json)."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from importlib import resources
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from medsft.chat_format import END_OF_TURN, PAD_TOKEN
from medsft.errors import MedsftError
from medsft.paths import bundled_tokenizer_dir

RANDOM_MODEL_PREFIX = "random:"  # `random:<config.json>`: random weights of that architecture
REACHABILITY_TIMEOUT_S = 2.0  # one connection attempt instead of the hub clients' retries

log = logging.getLogger(__name__)


class ModelSourceError(MedsftError):
    """A model or tokenizer could not be found locally nor downloaded."""


class ModelSetting(NamedTuple):
    """How a command is pointed at a local model or tokenizer folder: its make variable and its option."""

    variable: str | None  # None: no make variable of its own, the option goes through ARGS
    option: str

    def advice(self) -> str:
        make = f"{self.variable}=/path/to/DIR" if self.variable else f'ARGS="{self.option} /path/to/DIR"'
        return f"{make} (without make: {self.option} /path/to/DIR)"


MODEL_SETTING = ModelSetting("MODEL", "--model")  # infer, demo, serve, the model of eval
BASELINE_SETTING = ModelSetting("BASELINE", "--baseline")
TRAIN_MODEL_SETTING = ModelSetting("MODEL", "--model_name_or_path")
TRAIN_TOKENIZER_SETTING = ModelSetting(None, "--tokenizer")
DATA_TOKENIZER_SETTING = ModelSetting("TOKENIZER", "--tokenizer")


class Hub(NamedTuple):
    """Where a hub id is downloaded from."""

    name: str
    endpoint: str
    download_command: str  # run on a machine with access, into DIR


def hub_of(source: str) -> Hub:
    """`hf:<id>`: the Hugging Face hub; any other id: ModelScope (with their clients' endpoint settings)."""
    if source.startswith("hf:"):
        from huggingface_hub import constants

        return Hub("the Hugging Face hub", constants.ENDPOINT, f"hf download {source[3:]} --local-dir DIR")
    from modelscope_hub import get_default_config

    endpoint = get_default_config().endpoint or "https://modelscope.cn"
    return Hub("ModelScope", endpoint, f"modelscope download --model {source} --local_dir DIR")


def reachable(url: str, timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host (or the proxy that serves it) opens within `timeout`.

    The connection runs in a daemon thread: name resolution has no timeout of its own.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or host, proxy_parts.port or 80
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def cached_download(source: str, cache_dir: str | Path | None, revision: str | None) -> Path | None:
    """A complete earlier download of a hub id, found without the network; None when there is none."""
    try:
        if source.startswith("hf:"):
            from huggingface_hub import snapshot_download as hf_snapshot_download

            return Path(
                hf_snapshot_download(
                    source[3:], cache_dir=cache_dir, revision=revision, local_files_only=True
                )
            )
        from modelscope import snapshot_download

        cache = str(cache_dir) if cache_dir else None
        return Path(snapshot_download(source, cache_dir=cache, revision=revision, local_files_only=True))
    except Exception:  # each client has its own "not in the cache" error
        return None


def unavailable(source: str, setting: ModelSetting, problem: str) -> ModelSourceError:
    """The one error for a model or tokenizer that cannot be had, with how to supply it for this command."""
    how = ""
    if not source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
        command = hub_of(source).download_command
        how = f" Download it where there is network access (`{command}`), copy DIR here,"
    return ModelSourceError(
        f"{problem}.{how} Pass the folder with {setting.advice()}; offline setup: docs/offline.md."
    )


def local_path(source: str | Path, setting: ModelSetting) -> Path | None:
    """A local folder as is; None for a hub id; an error for a path that is not a folder."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or str(source).startswith((".", "/", "~")):
        raise unavailable(
            str(source), setting, f"Model path {str(source)!r} is not a folder with a model in it"
        )
    return None


def check_model_source(
    source: str | Path,
    setting: ModelSetting = MODEL_SETTING,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
) -> None:
    """Fail at once, with the advice, when `source` cannot be had: a path that is no folder, or a hub id
    neither downloaded before nor reachable (one connection attempt)."""
    if local_path(source, setting) is not None:
        return
    source = str(source)
    hub = hub_of(source)
    if not reachable(hub.endpoint) and cached_download(source, cache_dir, revision) is None:
        raise unavailable(
            source, setting, f"Could not get {source!r}: {hub.name} ({hub.endpoint}) is unreachable"
        )


def resolve_model_dir(
    source: str | Path,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    setting: ModelSetting = MODEL_SETTING,
) -> Path:
    """A local folder as is; `hf:<id>` from the Hugging Face hub; else a ModelScope id (downloaded once).

    revision: a branch, tag or commit of the hub / ModelScope repository (default: its default branch).
    setting: how the command at hand takes a local folder instead (named in the error).
    An unreachable hub is found with one connection attempt; an earlier download is then used as it is.
    """
    path = local_path(source, setting)
    if path is not None:
        return path
    source = str(source)
    hub = hub_of(source)
    if not reachable(hub.endpoint):
        cached = cached_download(source, cache_dir, revision)
        if cached is None:
            raise unavailable(
                source, setting, f"Could not get {source!r}: {hub.name} ({hub.endpoint}) is unreachable"
            )
        log.info("%s is unreachable: using the earlier download of %s in %s", hub.name, source, cached)
        return cached
    try:
        if source.startswith("hf:"):
            from huggingface_hub import snapshot_download as hf_snapshot_download

            return Path(hf_snapshot_download(source[3:], cache_dir=cache_dir, revision=revision))
        from modelscope import snapshot_download

        return Path(
            snapshot_download(source, cache_dir=str(cache_dir) if cache_dir else None, revision=revision)
        )
    except Exception as error:  # auth, "not found", a connection lost midway: one clear message for all
        raise unavailable(
            source, setting, f"Could not get {source!r} ({type(error).__name__}: {error})"
        ) from error


def original_qwen3_chat_template() -> str:
    """Qwen3's own chat template as TRL ships it (used to restore it after TRL's training variant)."""
    return resources.files("trl").joinpath("chat_templates/qwen3.jinja").read_text(encoding="utf-8")


def load_tokenizer(
    source: str | Path, cache_dir: str | Path | None = None, setting: ModelSetting = MODEL_SETTING
) -> PreTrainedTokenizerBase:
    folder = resolve_model_dir(source, cache_dir, setting=setting)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:  # no tokenizer files, or damaged ones
        reason = " ".join(str(error).split())[:300]
        raise ModelSourceError(
            f"{folder} holds no usable tokenizer ({type(error).__name__}: {reason}). Pass a model folder "
            "with its tokenizer files (tokenizer.json, tokenizer_config.json)."
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD_TOKEN
    return tokenizer


def load_bundled_tokenizer() -> PreTrainedTokenizerBase:
    """The real Qwen3 tokenizer shipped with medsft: for models without their own (the tiny stand-in)."""
    return load_tokenizer(bundled_tokenizer_dir())


def build_tiny_qwen3(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    seed: int = 0,
) -> Qwen3ForCausalLM:
    """A random-weight Qwen3 with the real architecture and the tokenizer's vocabulary: a weights stand-in."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        eos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TURN),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config)


def random_model_config(source: str | Path | None) -> Path | None:
    """The config.json named by a `random:<path>` source (a folder means its config.json); None for any other
    source. A missing file is an error."""
    if not isinstance(source, str) or not source.startswith(RANDOM_MODEL_PREFIX):
        return None
    path = Path(source[len(RANDOM_MODEL_PREFIX) :]).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ModelSourceError(
            f"{source!r}: no config.json at {path}. Write `random:<path to a model's config.json>`, e.g. "
            "random:$MEDSFT_SHARED/models/Qwen3-1.7B-tokenizer/config.json."
        )
    return path.resolve()


# Random weights are drawn in chunks of this many values, each from its own generator seeded by (seed, chunk):
# the chunks fill in parallel threads (about 30 s for Qwen3-1.7B drawn serially) and the same seed gives the
# same weights however many threads there are.
RANDOM_CHUNK_VALUES = 1 << 22


def _draw_normal(tensors: list[torch.Tensor], std: float, seed: int) -> None:
    """Fill each tensor from N(0, std), chunk by chunk in threads; deterministic for a seed."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [
        flat[start : start + RANDOM_CHUNK_VALUES]
        for flat in (tensor.view(-1) for tensor in tensors)
        for start in range(0, flat.numel(), RANDOM_CHUNK_VALUES)
    ]

    def draw(index: int) -> None:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        chunks[index].normal_(0.0, std, generator=generator)

    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        list(pool.map(draw, range(len(chunks))))


def build_random_model(
    config_path: Path,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A random-weight causal LM of the exact architecture in `config_path`, in `dtype` (default: the
    config's), with `attn_implementation` as `from_pretrained` takes it (default: transformers' choice).

    Built in seconds at any size: the modules are created without storage, then each parameter is allocated
    once in `dtype` and drawn directly (matrices from N(0, initializer_range) in parallel chunks, 1-D weights
    such as norm scales 1, biases 0, as transformers initialises them) instead of transformers' per-module
    fp32 initialisation and cast. Tied weights stay one tensor.
    """
    from accelerate import init_empty_weights

    try:
        config = AutoConfig.from_pretrained(config_path)
    except (OSError, ValueError, KeyError) as error:
        raise ModelSourceError(f"{config_path} is not a model config.json ({error}).") from error
    dtype = dtype or getattr(config, "dtype", None) or torch.float32
    with init_empty_weights(include_buffers=False):  # buffers (rotary frequencies) are computed for real
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    model.tie_weights()  # before the storage: a tied output layer is then the embedding's one tensor
    std = getattr(config, "initializer_range", 0.02)
    materialised: dict[int, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}  # old (kept alive) -> new
    matrices = []
    for module in model.modules():
        for name, empty in list(module._parameters.items()):
            if empty is None:
                continue
            if id(empty) not in materialised:
                tensor = torch.empty(empty.shape, dtype=empty.dtype)
                if tensor.dim() > 1:
                    matrices.append(tensor)
                else:
                    tensor.fill_(0.0 if name == "bias" else 1.0)
                materialised[id(empty)] = (empty, torch.nn.Parameter(tensor, empty.requires_grad))
            module._parameters[name] = materialised[id(empty)][1]
    _draw_normal(matrices, std, seed)
    return model
