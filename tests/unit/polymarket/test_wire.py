import json
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from polybot.model import (
    Balance,
    BookSnapshot,
    ExecutionType,
    Intent,
    MarketState,
    MarketStatus,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
    TimeInForce,
)
from polybot.polymarket import wire

BOOK = {
    "requestId": "md-1",
    "subscriptionType": "SUBSCRIPTION_TYPE_MARKET_DATA",
    "error": "",
    "marketData": {
        "marketSlug": "aec-nba-bos-lal",
        "bids": [
            {"px": {"value": "0.5400", "currency": "USD"}, "qty": "120.0000"},
            {"px": {"value": "0.5300", "currency": "USD"}, "qty": "7.1234"},
        ],
        "offers": [{"px": {"value": "0.5600", "currency": "USD"}, "qty": "80.0000"}],
        "state": "MARKET_STATE_OPEN",
        "stats": {"lastTradePx": {"value": "0.55", "currency": "USD"}},
        "transactTime": "2026-01-27T19:02:11.512345678Z",
    },
}


def execution_frame(order_extra=None, **extra):
    order = {
        "id": "ord-1",
        "marketSlug": "s",
        "intent": "ORDER_INTENT_BUY_SHORT",
        "side": "ORDER_SIDE_SELL",
        "type": "ORDER_TYPE_LIMIT",
        "price": {"value": "0.42", "currency": "USD"},
        "quantity": 25,
        "cumQuantity": 10,
        "leavesQuantity": 15,
        "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
        "state": "ORDER_STATE_PARTIALLY_FILLED",
        "avgPx": {"value": "0.42", "currency": "USD"},
    }
    order.update(order_extra or {})
    ex = {
        "id": "e-9",
        "order": order,
        "lastShares": "10.0000",
        "lastPx": {"value": "0.4200", "currency": "USD"},
        "type": "EXECUTION_TYPE_PARTIAL_FILL",
        "tradeId": "tr-4",
        "aggressor": False,
        "commissionNotionalCollected": {"value": "-0.02", "currency": "USD"},
        "transactTime": "2026-01-27T19:02:11.101Z",
    }
    ex.update(extra)
    return {
        "requestId": "o-1",
        "subscriptionType": "SUBSCRIPTION_TYPE_ORDER",
        "orderSubscriptionUpdate": {"execution": ex},
    }


def test_book_frame_decodes_to_exact_decimals_best_first():
    ev = wire.decode_frame(orjson.dumps(BOOK), received_at=12.5)
    assert isinstance(ev, wire.BookReplaced)
    book = ev.book
    assert book.market_slug == "aec-nba-bos-lal"
    assert [lv.price for lv in book.bids] == [Decimal("0.5400"), Decimal("0.5300")]
    assert book.bids[1].qty == Decimal("7.1234")
    assert book.best_offer.price == Decimal("0.56")
    assert book.state is MarketState.OPEN
    assert book.received_at == 12.5
    assert book.transact_time == datetime(2026, 1, 27, 19, 2, 11, 512345, tzinfo=UTC)


def test_empty_error_string_is_not_an_error():
    assert isinstance(wire.decode_frame(json.dumps(BOOK)), wire.BookReplaced)


def test_non_empty_error_becomes_subscription_failed():
    ev = wire.decode_frame(
        '{"requestId":"s-1","subscriptionType":"SUBSCRIPTION_TYPE_ORDER_SNAPSHOT","error":"deadline exceeded"}'
    )
    assert ev == wire.SubscriptionFailed(
        "s-1", "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT", "deadline exceeded"
    )


def test_heartbeat_is_recognised():
    assert wire.decode_frame('{"heartbeat":{}}') is wire.HEARTBEAT


def test_execution_frame_carries_order_cum_quantity_and_fee():
    ev = wire.decode_frame(orjson.dumps(execution_frame()))
    ex = ev.execution
    assert ex.exec_id == "e-9" and ex.trade_id == "tr-4" and ex.aggressor is False
    assert ex.exec_type is ExecutionType.PARTIAL_FILL
    assert ex.last_shares == Decimal("10") and ex.last_px == Decimal("0.42")
    assert ex.commission == Decimal("-0.02")
    o = ex.order
    assert (o.order_id, o.intent, o.state, o.tif) == (
        "ord-1",
        Intent.BUY_SHORT,
        OrderState.PARTIALLY_FILLED,
        TimeInForce.GTC,
    )
    assert (o.quantity, o.cum_quantity, o.leaves_quantity) == (
        Decimal(25),
        Decimal(10),
        Decimal(15),
    )


def test_fractional_json_number_quantities_are_exact_not_float():
    # 0.1 and 12.345678901234567890 are not representable as binary floats
    raw = (
        '{"orderSubscriptionUpdate":{"execution":{"id":"e","order":{"id":"o","marketSlug":"s",'
        '"quantity":12.345678901234567890,"cumQuantity":0.1,"leavesQuantity":12.245678901234567890}}}}'
    )
    o = wire.decode_frame(raw).execution.order
    assert o.quantity == Decimal("12.345678901234567890")
    assert o.cum_quantity == Decimal("0.1")
    assert str(o.leaves_quantity) == "12.245678901234567890"


def test_missing_cum_quantity_is_a_known_zero():
    ex = wire.decode_frame(orjson.dumps(execution_frame({"cumQuantity": None}))).execution
    assert ex.order.cum_quantity == Decimal(0)
    frame = execution_frame()
    del frame["orderSubscriptionUpdate"]["execution"]["order"]["cumQuantity"]
    assert wire.decode_frame(orjson.dumps(frame)).execution.order.cum_quantity == 0


def test_unknown_enums_map_to_unknown_and_are_logged_once(caplog):
    frame = execution_frame(
        {"state": "ORDER_STATE_FROM_THE_FUTURE", "tif": "TIME_IN_FORCE_NEW"},
        type="EXECUTION_TYPE_ODD",
    )
    with caplog.at_level("WARNING"):
        ex1 = wire.decode_frame(orjson.dumps(frame)).execution
        wire.decode_frame(orjson.dumps(frame))
    assert ex1.order.state is OrderState.UNKNOWN
    assert ex1.order.tif is TimeInForce.UNKNOWN
    assert ex1.exec_type is ExecutionType.UNKNOWN
    assert sum("ORDER_STATE_FROM_THE_FUTURE" in r.message for r in caplog.records) == 1


def test_intent_is_derived_from_outcome_side_and_action_when_absent():
    frame = execution_frame(
        {"intent": None, "outcomeSide": "OUTCOME_SIDE_NO", "action": "ORDER_ACTION_SELL"}
    )
    assert wire.decode_frame(orjson.dumps(frame)).execution.order.intent is Intent.SELL_SHORT


def test_execution_without_id_is_malformed():
    frame = execution_frame()
    del frame["orderSubscriptionUpdate"]["execution"]["id"]
    with pytest.raises(wire.WireError):
        wire.decode_frame(orjson.dumps(frame))


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1,2]",
        '{"marketData":{"bids":[]}}',  # no slug
        '{"marketData":{"marketSlug":"s","bids":[{"px":{"value":"0.5"}}]}}',  # level without qty
        '{"marketData":{"marketSlug":"s","bids":[{"px":{"value":"abc"},"qty":"1"}]}}',
        '{"marketData":{"marketSlug":"s","bids":[{"px":{"value":0.5},"qty":true}]}}',
        '{"marketData":{"marketSlug":"s","transactTime":"yesterday"}}',
    ],
)
def test_malformed_frames_raise_wire_error(raw):
    with pytest.raises(wire.WireError):
        wire.decode_frame(raw)


def test_unknown_payload_key_raises_unknown_frame():
    with pytest.raises(wire.UnknownFrame):
        wire.decode_frame('{"requestId":"x","somethingNew":{}}')


def test_order_snapshot_pages_and_eof():
    raw = {
        "requestId": "snap-1",
        "orderSubscriptionSnapshot": {
            "orders": [execution_frame()["orderSubscriptionUpdate"]["execution"]["order"]],
            "eof": True,
        },
    }
    ev = wire.decode_frame(orjson.dumps(raw))
    assert isinstance(ev, wire.OrdersSnapshotted) and ev.eof and ev.request_id == "snap-1"
    assert ev.orders[0].cum_quantity == Decimal(10)
    ev2 = wire.decode_frame('{"orderSubscriptionSnapshot":{"orders":[]}}')
    assert ev2.orders == () and ev2.eof is False


def test_bbo_and_trade_frames():
    bbo = wire.decode_frame(
        '{"marketDataLite":{"marketSlug":"s","bestBid":{"value":"0.41","currency":"USD"},"bidDepth":3,"state":"MARKET_STATE_HALTED"}}'
    ).bbo
    assert bbo.best_bid == Decimal("0.41") and bbo.best_ask is None and bbo.bid_depth == 3
    assert bbo.state is MarketState.HALTED
    t = wire.decode_frame(
        '{"trade":{"marketSlug":"s","price":{"value":"0.5500","currency":"USD"},"quantity":{"value":"3.00","currency":"USD"},'
        '"tradeTime":"2026-01-27T19:02:11Z","maker":{"side":"ORDER_SIDE_BUY"},"taker":{"side":"ORDER_SIDE_SELL"}}}'
    ).trade
    assert (t.price, t.qty, t.taker_side) == (Decimal("0.55"), Decimal("3"), Side.SELL)


def test_position_change_takes_slug_from_metadata_and_prefers_exact_fields():
    raw = {
        "positionSubscription": {
            "beforePosition": None,
            "afterPosition": {
                "netPosition": "13",
                "netPositionDecimal": "12.5000",
                "cost": {"value": "6.25", "currency": "USD"},
                "marketMetadata": {"slug": "s"},
            },
            "entryType": "LEDGER_ENTRY_TYPE_ORDER_EXECUTION",
            "tradeId": "tr-1",
        }
    }
    ev = wire.decode_frame(orjson.dumps(raw))
    assert ev.market_slug == "s" and ev.before is None
    assert ev.after.net_qty == Decimal("12.5")
    assert ev.after.to_position().avg_price == Decimal("0.5")


def test_balance_snapshot_numbers_are_exact():
    raw = '{"accountBalancesSnapshot":{"balances":[{"currency":"USD","currentBalance":1000.10,"buyingPower":987.654321,"openOrders":12.445679}]}}'
    b = wire.decode_frame(raw).balances[0]
    assert b == Balance(
        currency="USD",
        current_balance=Decimal("1000.10"),
        buying_power=Decimal("987.654321"),
        open_orders=Decimal("12.445679"),
    )


def test_balance_update():
    raw = '{"accountBalancesUpdate":{"balanceChange":{"beforeBalance":{"currentBalance":10},"afterBalance":{"currentBalance":9.58},"entryType":"LEDGER_ENTRY_TYPE_COMMISSION"}}}'
    ev = wire.decode_frame(raw)
    assert ev.before.current_balance == 10 and ev.after.current_balance == Decimal("9.58")
    assert ev.entry_type == "LEDGER_ENTRY_TYPE_COMMISSION"


def test_market_and_event_and_mapped_sides():
    market = {
        "id": "123",
        "slug": "aec-x",
        "question": "X vs Y",
        "orderPriceMinTickSize": 0.005,
        "minimumTradeQty": 0.01,
        "feeCoefficient": 0.0695,
        "status": "MARKET_STATUS_OPEN",
        "sportsMarketType": "basketball_team_full_game_winner",
        "marketSides": [
            {"id": "9", "long": True, "description": "X", "teamId": 5},
            {"id": "10", "long": False},
        ],
    }
    event = {
        "id": 77,
        "slug": "nba-x-y",
        "title": "X at Y",
        "startTime": "2026-01-27T19:00:00Z",
        "seriesSlug": "nba",
        "teams": [
            {
                "id": 5,
                "name": "X",
                "providerIds": [{"provider": "PROVIDER_OPTICODDS", "providerId": "ABC"}],
            }
        ],
        "markets": [market],
    }
    info, markets = wire.parse_event(wire.loads_exact(json.dumps(event)))
    assert (
        info.event_id == "77"
        and info.market_slugs == ("aec-x",)
        and info.teams[0].provider_id("PROVIDER_OPTICODDS") == "ABC"
    )
    m = markets[0]
    assert (m.tick, m.min_qty, m.fee_coefficient) == (
        Decimal("0.005"),
        Decimal("0.01"),
        Decimal("0.0695"),
    )
    assert m.event_id == "77" and m.event_slug == "nba-x-y" and m.status is MarketStatus.OPEN
    assert m.sides[0].long and m.sides[0].team_id == "5" and not m.sides[1].long
    side = wire.parse_mapped_side(
        {
            "marketSideId": 9,
            "marketId": 123,
            "eventId": 77,
            "externalEventId": "F1",
            "externalPoints": "-3.5",
        }
    )
    assert (side.market_side_id, side.market_id, side.external_points) == ("9", "123", "-3.5")


def test_order_body_is_automatic_and_quantity_is_an_exact_json_number():
    req = OrderRequest(
        "s",
        Intent.BUY_SHORT,
        Decimal("0.42"),
        Decimal("12.345678901234567890"),
        TimeInForce.IOC,
        OrderType.LIMIT,
    )
    body = wire.order_body(req, participate_dont_initiate=True)
    text = wire.dumps(body).decode()
    assert '"quantity":12.345678901234567890' in text
    assert '"price":{"value":"0.42","currency":"USD"}' in text
    parsed = json.loads(text, parse_float=Decimal)
    assert parsed["manualOrderIndicator"] == "MANUAL_ORDER_INDICATOR_AUTOMATIC"
    assert (
        parsed["intent"] == "ORDER_INTENT_BUY_SHORT"
        and parsed["tif"] == "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL"
    )
    assert parsed["participateDontInitiate"] is True
    assert (
        wire.converter.unstructure(req)["manualOrderIndicator"]
        == "MANUAL_ORDER_INDICATOR_AUTOMATIC"
    )


def test_cattrs_converter_structures_model_types():
    book = wire.converter.structure(BOOK["marketData"], BookSnapshot)
    assert book.bids[0].price == Decimal("0.54")


def test_dec_refuses_floats_so_money_never_passes_through_binary():
    with pytest.raises(wire._FloatMoney):
        wire.dec(0.1)


def test_exact_mode_decodes_the_same_events_without_orjson():
    raw = orjson.dumps(execution_frame())
    assert wire.decode_frame(raw, exact=True) == wire.decode_frame(raw)
    with pytest.raises(wire.WireError):
        wire.decode_frame("{oops", exact=True)
    with pytest.raises(wire.UnknownFrame):
        wire.decode_frame('{"x":{}}', exact=True)


def test_a_cash_activity_carries_its_id_status_amount_and_refunds():
    from polybot.polymarket.wire import parse_activity

    tx = {"transactionId": "bc-9", "status": "ACCOUNT_BALANCE_CHANGE_STATUS_PARTIALLY_REFUNDED",
          "amount": {"value": "-100.0000", "currency": "USD"},
          "updateTime": "2026-11-20T18:00:00.000Z"}
    a = parse_activity({"type": "ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL", "accountBalanceChange": {
        **tx, "transactions": [tx, {"transactionId": "bc-9r", "amount": {"value": "40"}}]}})
    assert (a.change_id, a.change_status) == ("bc-9", tx["status"])
    assert (a.change_amount, a.change_refund) == (Decimal("-100"), Decimal("40"))
    assert a.time is not None and a.market_slug == ""
    plain = parse_activity({"type": "ACTIVITY_TYPE_ACCOUNT_DEPOSIT", "accountBalanceChange": {
        "transactionId": "bc-1", "amount": 12.5}})  # a float: no guess
    assert (plain.change_id, plain.change_amount, plain.change_refund) == ("bc-1", None, None)
