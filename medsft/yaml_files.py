"""Reading the YAML files medsft takes (recipes, mixture files): safe loading, and a key set twice in one
mapping is an error, not the last value silently kept (PyYAML's default)."""

from __future__ import annotations

import typing
from typing import Any

import yaml


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, second_line: int):
        super().__init__(f"key {key!r} is set twice (lines {first_line} and {second_line})")


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a mapping may not repeat a key (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable):  # an unhashable key is PyYAML's own error below
                if key in seen:
                    raise DuplicateKey(key, seen[key], line)
                seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """The YAML document in `text`; DuplicateKey for a repeated key, yaml.YAMLError for invalid YAML."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader
