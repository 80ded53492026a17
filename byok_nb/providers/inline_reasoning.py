"""Reasoning a model writes inline, as ``<think>...</think>`` at the start of its answer.

DeepSeek-R1 and its distillations do this when the server runs no reasoning parser (the
HuggingFace router's providers, a plain vLLM or TGI). When the call asked for reasoning, that
block is the model's reasoning, not its answer: it is moved out of the text. Only a block at the
very start (after whitespace) counts — a ``<think>`` later in an answer is the answer's own text.
An unclosed block (the answer cut by ``max_tokens`` while still thinking) is all reasoning.
"""
from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def split_think(text: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a whole answer; ``("", text)`` when it has no leading block."""
    stripped = text.lstrip()
    if not stripped.startswith(OPEN):
        return "", text
    body = stripped[len(OPEN):]
    reasoning, closed, answer = body.partition(CLOSE)
    if not closed:
        return reasoning.strip(), ""
    return reasoning.strip(), answer.lstrip()


class ThinkSplitter:
    """:func:`split_think` for a streamed answer: ``feed(delta) -> (reasoning, text)`` pieces.

    Holds back only what may still turn out to be a tag (a ``<thi`` at the start, a ``</th`` at
    the end of what is in the block), so text flows as soon as it is known to be text.
    """

    def __init__(self) -> None:
        self._state = "start"     # start -> (think -> after) | text
        self._held = ""
        self._started = False     # some reasoning text seen after <think>

    def feed(self, delta: str) -> tuple[str, str]:
        if self._state == "text":
            return "", delta
        self._held += delta
        if self._state == "start":
            stripped = self._held.lstrip()
            if not stripped:
                return "", ""
            if stripped.startswith(OPEN):
                self._state, self._held = "think", stripped[len(OPEN):]
            elif OPEN.startswith(stripped):
                return "", ""                     # "<thi": not known yet
            else:
                self._state, held, self._held = "text", self._held, ""
                return "", held
        if self._state == "think":
            if not self._started:                 # whitespace after <think> is dropped
                self._held = self._held.lstrip()
                self._started = bool(self._held)
            reasoning, closed, answer = self._held.partition(CLOSE)
            if closed:
                self._state, self._held = "after", answer
                return reasoning.rstrip(), self._after()
            # Held back: a possible start of the closing tag, and trailing whitespace (it is
            # dropped if the tag follows, as split_think drops it).
            cut = len(self._held) - _partial_suffix(self._held, CLOSE)
            body = self._held[:cut]
            out = body.rstrip()
            self._held = body[len(out):] + self._held[cut:]
            return out, ""
        return "", self._after()                  # "after": the answer, leading space dropped

    def _after(self) -> str:
        text, self._held = self._held.lstrip(), ""
        if text:
            self._state = "text"
        return text

    def close(self) -> tuple[str, str]:
        """What is still held when the stream ends (an unfinished tag is text, or reasoning)."""
        held, self._held = self._held, ""
        if self._state == "think":
            return held.rstrip(), ""
        return "", held if self._state != "after" else held.lstrip()


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
