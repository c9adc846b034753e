"""The bounds of one catch-up answer, and the answer being filled within them.

A dashboard that was away pages through ``sync`` answers until ``hasMore`` is
false (see :meth:`persistence.conversations.Conversations.sync`). Each answer
holds at most :attr:`SyncLimits.conversations` conversations, at most
:attr:`SyncLimits.messages` messages per conversation and about
:attr:`SyncLimits.bytes` bytes of JSON; what does not fit comes in the next one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from persistence.cursors import SyncResume

SYNC_MAX_CONVERSATIONS = 50  # conversations per answer
SYNC_MAX_MESSAGES = 200  # messages per conversation per answer
SYNC_MAX_BYTES = 1_000_000  # bytes of JSON per answer (ASCII-escaped, so an upper bound)
# The answer's keys, its cursor (at most 512 characters) and hasMore fit in this.
ENVELOPE_BYTES = 1_024


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncLimits:
    conversations: int = SYNC_MAX_CONVERSATIONS
    messages: int = SYNC_MAX_MESSAGES
    bytes: int = SYNC_MAX_BYTES

    def __post_init__(self) -> None:
        if self.conversations < 1 or self.messages < 1 or self.bytes <= ENVELOPE_BYTES:
            raise ValueError("sync limits must allow one conversation and one message")


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON with every non-ASCII character escaped.

    That is how python-socketio sends it, and never less than the UTF-8 that
    Starlette's JSONResponse sends, so it bounds both.
    """
    return len(json.dumps(value, separators=(",", ":")))


class SyncAnswer:
    """The conversations and messages of one answer, refusing what would exceed the bytes.

    The first conversation and the first message always fit, so every answer
    makes progress (a single message is far below the default bound).
    """

    def __init__(self, *, limit: int) -> None:
        self._room = limit - ENVELOPE_BYTES
        self._used = 0
        self._messages = 0
        self.conversations: list[dict[str, Any]] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}

    def add_conversation(self, item: dict[str, Any]) -> bool:
        key = str(item["id"])
        # The item, a comma, and its `"<id>":[],` entry in the messages map.
        cost = json_size(item) + 1 + len(key) + 6
        if self.conversations and self._used + cost > self._room:
            return False
        self._used += cost
        self.conversations.append(item)
        self.messages.setdefault(key, [])
        return True

    def add_message(self, conversation_id: int, message: dict[str, Any]) -> bool:
        cost = json_size(message) + 1
        if self._messages and self._used + cost > self._room:
            return False
        self._used += cost
        self._messages += 1
        self.messages[str(conversation_id)].append(message)
        return True


@dataclasses.dataclass(frozen=True, kw_only=True)
class Planned:
    """One conversation of an answer: its item and its messages in ``(after, up_to]``."""

    item: dict[str, Any]
    key: int  # its keyset position: the conversation's id
    after: int
    up_to: int
    last_seq: int
    messages: list[dict[str, Any]]  # seq ascending


def fill_answer(
    plan: list[Planned],
    *,
    limits: SyncLimits,
    resume: SyncResume | None,
    more: bool,
    next_since: dt.datetime,
) -> tuple[SyncAnswer, SyncResume | None]:
    """Fill one answer in plan order; return it and where the next one resumes (None: done).

    ``plan[0]`` is the conversation ``resume`` left unfinished, when there is
    one: it keeps ``resume``'s keyset position, for the keyset already lies past it.
    ``more`` says that conversations beyond the plan changed too.
    """
    answer = SyncAnswer(limit=limits.bytes)
    # The keyset position of the last conversation wholly in the answer.
    position = resume.id if resume is not None else None
    for index, planned in enumerate(plan):
        resumed = index == 0 and resume is not None and resume.partial_id == planned.item["id"]
        if not answer.add_conversation(planned.item):
            break  # the bytes are spent: this conversation starts the next answer
        reached, spent = planned.after, False
        for message in planned.messages:
            if not answer.add_message(planned.item["id"], message):
                spent = True
                break
            reached = message["seq"]
        mark = position if resumed else planned.key
        assert mark is not None
        if spent or planned.up_to < planned.last_seq:
            # Cut by the bytes or by the per-conversation bound: finish it next time.
            cut = planned.up_to if not spent else reached
            return answer, SyncResume(
                next_since=next_since,
                id=mark,
                partial_id=planned.item["id"],
                partial_seq=cut,
            )
        position = mark
    else:
        if not more:
            return answer, None
    assert position is not None  # the first conversation always fits
    return answer, SyncResume(next_since=next_since, id=position)
