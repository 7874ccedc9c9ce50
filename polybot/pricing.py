"""Pure pricing math: exchange fees (and, from the fair-value issue, odds conversion, de-vig,
consensus and Kelly sizing).

Fees follow the Polymarket US schedule (reference §7.1): fee = Θ·C·p·(1−p) per fill, taker Θ from the
market's ``feeCoefficient`` (default 0.0695), maker Θ −0.0125 (a rebate). Decisions use the
unrounded per-contract fee; the ledger books fees rounded to the cent with banker's rounding, and an
aggressive order's running total never exceeds the banker's-rounded cumulative exact fee.
Sign convention everywhere in polybot: positive = fee charged, negative = rebate.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from polybot.model import ONE

TAKER_THETA = Decimal("0.0695")
MAKER_THETA = Decimal("-0.0125")
CENT = Decimal("0.01")


def fee_per_contract(price: Decimal, theta: Decimal = TAKER_THETA) -> Decimal:
    """Unrounded fee of one contract traded at YES price `price` (symmetric in p and 1 − p)."""
    return theta * price * (ONE - price)


def round_fee(amount: Decimal) -> Decimal:
    """Round a fee (or rebate) to the cent, half to even."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


class FeeAccumulator:
    """Rounds one order's fills so the running total never exceeds the rounded cumulative fee.

    The exchange rounds each fill with banker's rounding, then trims a fill's fee if the running
    total of rounded fees would pass the banker's-rounded exact cumulative fee. Rebates (negative
    Θ) are rounded per fill independently.
    """

    __slots__ = ("_charged", "_exact", "theta")

    def __init__(self, theta: Decimal = TAKER_THETA) -> None:
        self.theta = theta
        self._exact = Decimal(0)
        self._charged = Decimal(0)

    def fill(self, qty: Decimal, price: Decimal) -> Decimal:
        exact = self.theta * qty * price * (ONE - price)
        fee = round_fee(exact)
        if self.theta < 0:
            return fee
        self._exact += exact
        cap = round_fee(self._exact)
        if self._charged + fee > cap:
            fee = max(cap - self._charged, Decimal(0))
        self._charged += fee
        return fee

    @property
    def total(self) -> Decimal:
        return self._charged
