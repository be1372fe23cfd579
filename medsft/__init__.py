"""medsft: fine-tune Qwen3-1.7B into a Chinese medical assistant that reasons before it answers."""

__version__ = "0.1.0"
