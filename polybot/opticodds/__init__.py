"""The OpticOdds adapter: REST + SSE client, wire parsing, and the odds feed task.

Public face: `OpticOddsClient` and its errors, `OddsFeed` / `OddsFeedConfig` / `MarketTarget`.
Market matching lives in `polybot.matching`.
"""

from polybot.opticodds.client import (
    AuthError,
    BadRequestError,
    ForbiddenError,
    MalformedResponseError,
    NotFoundError,
    OpticOddsClient,
    OpticOddsError,
    OpticOddsTransportError,
    RateLimitedError,
    ServerError,
)
from polybot.opticodds.feed import FeedState, FeedStatus, MarketTarget, OddsFeed, OddsFeedConfig
from polybot.opticodds.wire import Fixture, FixtureOdds, Odd, Sportsbook

__all__ = [
    "AuthError",
    "BadRequestError",
    "FeedState",
    "FeedStatus",
    "Fixture",
    "FixtureOdds",
    "ForbiddenError",
    "MalformedResponseError",
    "MarketTarget",
    "NotFoundError",
    "Odd",
    "OddsFeed",
    "OddsFeedConfig",
    "OpticOddsClient",
    "OpticOddsError",
    "OpticOddsTransportError",
    "RateLimitedError",
    "ServerError",
    "Sportsbook",
]
