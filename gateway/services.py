"""What handlers need at run time, built by the app's lifespan and torn down by it."""

from __future__ import annotations

import dataclasses

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.ephemeral import EphemeralBus
from gateway.presence import Presence
from gateway.project_cache import ProjectCache
from gateway.ratelimit import DistinctLimiter, RateLimiter
from gateway.tokens import TokenSigner
from persistence.activity import Activity
from persistence.conversations import Conversations
from persistence.directory import Directory
from persistence.history import History
from streams.producer import KafkaEventProducer


@dataclasses.dataclass(frozen=True, kw_only=True)
class Services:
    engine: AsyncEngine
    redis: aioredis.Redis
    producer: KafkaEventProducer
    directory: Directory
    projects: ProjectCache  # the directory's projects, cached for connects
    history: History
    activity: Activity
    conversations: Conversations
    limiter: RateLimiter
    new_visitors: DistinctLimiter  # distinct visitor uids per project and client address
    signer: TokenSigner
    ephemeral: EphemeralBus
    presence: Presence
