"""``submitForm``: the seed's widget sends pre-chat forms; Parley has no forms yet.

Until it does, the widget gets a clean refusal it can show, instead of an ack
that never comes (a Socket.IO event without a handler is silently dropped).
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.errors import GatewayError

logger = logging.getLogger("parley.forms")


class NotSupported(GatewayError):
    code = "not_supported"


async def submit_form(sid: str, *args: Any) -> dict[str, Any]:
    logger.info("a widget submitted a form", extra={"action": "forms.not_supported"})
    return NotSupported("forms are not supported yet; send the answer as a message").as_ack()
