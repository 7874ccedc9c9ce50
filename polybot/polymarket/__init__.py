"""The Polymarket US exchange adapter: signed REST, self-healing websockets, wire conversion.

Nothing past this package sees raw exchange JSON: everything arrives as `polybot.model` values
or the event types re-exported here.
"""

from polybot.polymarket.auth import InvalidSecretKey, PolymarketAuth, Signer
from polybot.polymarket.errors import (
    ApiStatusError,
    AuthError,
    BadRequest,
    CredentialsRejected,
    NotFound,
    OutcomeUnknown,
    PolymarketError,
    RateLimited,
    ServerError,
    Timeout,
    TransportError,
)
from polybot.polymarket.fastorder import FastConfig, FastCreate, PendingCreate, SendFailed
from polybot.polymarket.rest import (
    PolymarketRestClient,
    RestConfig,
    client_from_settings,
    rest_config_from_settings,
    signer_from_settings,
)
from polybot.polymarket.stream import (
    ContinuityLost,
    MarketsStream,
    PrivateStream,
    StreamConfig,
    StreamConnected,
    StreamStatus,
    stream_config_from_settings,
)
from polybot.polymarket.wire import (
    Activity,
    BalanceChanged,
    BalancesSnapshotted,
    Bbo,
    BboUpdated,
    BookReplaced,
    ExchangePosition,
    ExecutionReported,
    OrdersSnapshotted,
    PositionChanged,
    SubscriptionFailed,
    TradePrinted,
)

__all__ = [
    "Activity",
    "ApiStatusError",
    "AuthError",
    "BadRequest",
    "BalanceChanged",
    "BalancesSnapshotted",
    "Bbo",
    "BboUpdated",
    "BookReplaced",
    "ContinuityLost",
    "CredentialsRejected",
    "ExchangePosition",
    "ExecutionReported",
    "FastConfig",
    "FastCreate",
    "InvalidSecretKey",
    "MarketsStream",
    "NotFound",
    "OrdersSnapshotted",
    "OutcomeUnknown",
    "PendingCreate",
    "PolymarketAuth",
    "PolymarketError",
    "PolymarketRestClient",
    "PositionChanged",
    "PrivateStream",
    "RateLimited",
    "RestConfig",
    "SendFailed",
    "ServerError",
    "Signer",
    "StreamConfig",
    "StreamConnected",
    "StreamStatus",
    "SubscriptionFailed",
    "Timeout",
    "TradePrinted",
    "TransportError",
    "client_from_settings",
    "rest_config_from_settings",
    "signer_from_settings",
    "stream_config_from_settings",
]
