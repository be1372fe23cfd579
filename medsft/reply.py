"""Reading one request's generated tokens back as they arrive: an API client's reply (medsft serve) and a
streamed answer (medsft.engine)."""

from __future__ import annotations

from medsft.chat_format import reasoning_token_count, special_token_ids, split_reasoning


class Reply:
    """Generated token ids read back as the client sees them: decoded incrementally, cut at a stop string,
    split into reasoning and answer, with the token counts for `usage`."""

    def __init__(self, tokenizer, eos_ids: set[int], stops: list[str], max_tokens: int):
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.stops = stops
        self.max_tokens = max_tokens
        self.think_close_id = special_token_ids(tokenizer)["think_close"]
        self.ids: list[int] = []  # every generated token, the end-of-turn token included
        self.text = ""
        self.finish_reason: str | None = None
        self._text_ids: list[int] = []
        self._prefix = self._read = 0  # incremental decoding offsets into _text_ids
        self._sent = ("", "")

    def feed(self, tokens: list[int]) -> None:
        for token in tokens:
            if self.finish_reason:
                break
            self.ids.append(token)
            if token in self.eos_ids:
                self.finish_reason = "stop"
            else:
                self._text_ids.append(token)
        before = len(self.text)
        self.text += self._decode_new(final=self.finish_reason is not None)
        self._apply_stops(before)
        if not self.finish_reason and len(self.ids) >= self.max_tokens:
            self.finish_reason = "length"
            self.text += self._decode_new(final=True)
            self._apply_stops(before)

    def ended(self) -> None:
        """The engine had nothing more (a stop or the token limit it was given)."""
        if not self.finish_reason:
            self.finish_reason = "length"
            self.text += self._decode_new(final=True)

    def _decode_new(self, final: bool) -> str:
        """Text of the tokens since the last call; a character whose bytes are not all there yet waits."""
        ids = self._text_ids
        if self._read == len(ids):
            return ""
        decode = self.tokenizer.decode
        done = decode(ids[self._prefix : self._read], skip_special_tokens=True)
        full = decode(ids[self._prefix :], skip_special_tokens=True)
        if len(full) <= len(done) or (full.endswith("\ufffd") and not final):
            return ""
        self._prefix, self._read = self._read, len(ids)
        return full[len(done) :]

    def _apply_stops(self, searched_up_to: int) -> None:
        if not self.stops:
            return
        start = max(0, searched_up_to - max(map(len, self.stops)) + 1)
        found = [index for stop in self.stops if (index := self.text.find(stop, start)) >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.finish_reason = "stop"

    def _visible(self) -> str:
        """The text a stream may show: the end of it that could still become a stop string is held back."""
        if self.finish_reason or not self.stops:
            return self.text
        for length in range(min(len(self.text), max(map(len, self.stops)) - 1), 0, -1):
            if any(stop.startswith(self.text[-length:]) for stop in self.stops):
                return self.text[:-length]
        return self.text

    def deltas(self) -> tuple[str, str]:
        """(reasoning, answer) text that is new since the last call."""
        reasoning, answer, _ = split_reasoning(self._visible())
        sent_reasoning, sent_answer = self._sent
        new_reasoning = reasoning[len(sent_reasoning) :] if reasoning.startswith(sent_reasoning) else ""
        new_answer = answer[len(sent_answer) :] if answer.startswith(sent_answer) else ""
        self._sent = (sent_reasoning + new_reasoning, sent_answer + new_answer)
        return new_reasoning, new_answer

    def reasoning_and_answer(self) -> tuple[str, str]:
        reasoning, answer, _ = split_reasoning(self.text)
        return reasoning, answer

    @property
    def reasoning_tokens(self) -> int:
        """Tokens up to and including the closing think tag (all of them while the think block is open)."""
        return reasoning_token_count(self._text_ids, self.think_close_id, self.text)
