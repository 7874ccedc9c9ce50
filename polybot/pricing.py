"""Pure pricing math: exchange fees, odds conversion, de-vig, consensus fair value, Kelly sizing.

Fees follow the Polymarket US schedule (reference §7.1): fee = Θ·C·p·(1−p) per fill, taker Θ from the
market's ``feeCoefficient`` (default 0.0695), maker Θ −0.0125 (a rebate). Decisions use the
unrounded per-contract fee; the ledger books fees rounded to the cent with banker's rounding, and an
aggressive order's running total never exceeds the banker's-rounded cumulative exact fee.
Sign convention everywhere in polybot: positive = fee charged, negative = rebate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import attrs

from polybot.model import ONE, BookQuote, MarketInfo

TAKER_THETA = Decimal("0.0695")
MAKER_THETA = Decimal("-0.0125")
CENT = Decimal("0.01")


def taker_theta(market: MarketInfo) -> Decimal:
    """The market's taker fee coefficient, or the exchange default."""
    return market.fee_coefficient if market.fee_coefficient is not None else TAKER_THETA


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
        exact = qty * fee_per_contract(price, self.theta)
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


# --- odds conversion -------------------------------------------------------------------------------
#
# Sportsbook prices arrive as American odds (integers, or decimals after OpticOdds' own
# conversions). Everything below works in Decimal. The two iterative solvers (power de-vig's
# exponent, Shin's z for n >= 3) run in binary floating point: they need non-integer powers and
# square roots inside a loop, where float's ~1e-16 relative precision is far below both the
# solver tolerance (1e-12) and the quotes' own precision, while Decimal's transcendental pow would
# make each recomputation orders of magnitude slower for no meaningful gain. Their results are
# converted back to Decimal rounded to 1e-10 (`SOLVER_QUANTUM`), so callers only ever see Decimal.

SOLVER_QUANTUM = Decimal("1e-10")
HUNDRED = Decimal(100)
TWO = Decimal(2)

DEVIG_METHODS = ("multiplicative", "additive", "power", "shin")


class OddsError(ValueError):
    """A price or a set of prices that cannot be converted or de-vigged (names the bad input)."""


def american_to_decimal(american: Decimal) -> Decimal:
    """American odds to decimal odds: +150 -> 2.5, -200 -> 1.5."""
    a = Decimal(american)
    if -100 < a < 100:
        raise OddsError(f"American odds must be <= -100 or >= +100, got {a}")
    if a > 0:
        return ONE + a / HUNDRED
    return ONE + HUNDRED / -a


def american_to_prob(american: Decimal) -> Decimal:
    """American odds to raw implied probability (vig included): -110 -> 0.5238..., +132 -> 0.431..."""
    a = Decimal(american)
    if -100 < a < 100:
        raise OddsError(f"American odds must be <= -100 or >= +100, got {a}")
    if a > 0:
        return HUNDRED / (a + HUNDRED)
    return -a / (-a + HUNDRED)


def decimal_to_prob(decimal_odds: Decimal) -> Decimal:
    d = Decimal(decimal_odds)
    if d <= ONE:
        raise OddsError(f"decimal odds must be > 1, got {d}")
    return ONE / d


def decimal_to_american(decimal_odds: Decimal) -> Decimal:
    """Decimal odds to American: 2.5 -> +150, 1.5 -> -200 (D >= 2 positive, else negative)."""
    d = Decimal(decimal_odds)
    if d <= ONE:
        raise OddsError(f"decimal odds must be > 1, got {d}")
    if d >= TWO:
        return (d - ONE) * HUNDRED
    return -HUNDRED / (d - ONE)


def prob_to_decimal(p: Decimal) -> Decimal:
    p = Decimal(p)
    if not 0 < p < 1:
        raise OddsError(f"probability must lie in (0, 1), got {p}")
    return ONE / p


def prob_to_american(p: Decimal) -> Decimal:
    return decimal_to_american(prob_to_decimal(p))


# --- de-vig ------------------------------------------------------------------------------------------
#
# Input: q_i = 1/D_i, the raw implied probabilities of ONE book's complete market (every outcome of
# one line); booksum S = sum(q_i). Formulas and test vectors: opticodds-api.md §5.2 (the `implied`
# R package and the `shin` Python package).


def _check_q(q: Sequence[Decimal]) -> tuple[Decimal, ...]:
    qs = tuple(Decimal(x) for x in q)
    if len(qs) < 2:
        raise OddsError(f"a market needs at least 2 outcomes, got {len(qs)}")
    for x in qs:
        if not 0 < x < 1:
            raise OddsError(f"implied probabilities must lie in (0, 1), got {x}")
    return qs


def _check_result(method: str, p: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    for x in p:
        if not 0 < x < 1:
            raise OddsError(f"{method} de-vig gives a probability outside (0, 1): {x}")
    return p


def devig_multiplicative(q: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """p_i = q_i / S."""
    qs = _check_q(q)
    s = sum(qs, Decimal(0))
    return _check_result("multiplicative", tuple(x / s for x in qs))


def devig_additive(q: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """p_i = q_i - (S - 1)/n. A longshot in a many-outcome market can go negative: an OddsError."""
    qs = _check_q(q)
    s = sum(qs, Decimal(0))
    cut = (s - ONE) / len(qs)
    return _check_result("additive", tuple(x - cut for x in qs))


def _power_k(fq: Sequence[float]) -> float:
    def excess(k: float) -> float:
        return sum(x**k for x in fq) - 1.0

    # sum(q^k) falls strictly in k (every q < 1): bracket the root, then bisect to 1e-13.
    lo, hi = 0.5, 2.0
    while excess(lo) < 0:
        lo /= 2
        if lo < 1e-6:
            raise OddsError("power de-vig: no exponent brings the booksum to 1")
    while excess(hi) > 0:
        hi *= 2
        if hi > 1e6:
            raise OddsError("power de-vig: no exponent brings the booksum to 1")
    while hi - lo > 1e-13:
        mid = (lo + hi) / 2
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def power_exponent(q: Sequence[Decimal]) -> Decimal:
    """The k with sum(q_i ** k) = 1 (k > 1 when the book has a margin)."""
    k = _power_k([float(x) for x in _check_q(q)])
    return Decimal(repr(k)).quantize(SOLVER_QUANTUM)


def devig_power(q: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """p_i = q_i ** k with k solved so the p_i sum to 1."""
    fq = [float(x) for x in _check_q(q)]
    k = _power_k(fq)
    return _check_result("power", _normalise_floats([x**k for x in fq]))


def _normalise_floats(ps: Sequence[float]) -> tuple[Decimal, ...]:
    """Floats that sum to ~1 -> Decimals on SOLVER_QUANTUM that sum to exactly 1.

    The rounding residue (a few 1e-10) goes to the largest outcome, where it matters least.
    """
    out = [Decimal(repr(x)).quantize(SOLVER_QUANTUM) for x in ps]
    residue = ONE - sum(out, Decimal(0))
    i = max(range(len(out)), key=lambda j: out[j])
    out[i] += residue
    return tuple(out)


def shin_z(q: Sequence[Decimal]) -> Decimal:
    """Shin's insider share z for one book's market (closed form for n = 2, else Jullien–Salanié)."""
    return _shin(_check_q(q))[1]


def devig_shin(q: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """Shin's method: p_i(z) = (sqrt(z^2 + 4(1-z) q_i^2 / S) - z) / (2(1-z)), sum p_i = 1."""
    return _check_result("shin", _shin(_check_q(q))[0])


def _shin(qs: tuple[Decimal, ...]) -> tuple[tuple[Decimal, ...], Decimal]:
    n = len(qs)
    if n == 2:
        # Closed form, exact in Decimal: with d = q1 - q2, z = (S-1)(d^2 - S) / (S(d^2 - 1)).
        s = qs[0] + qs[1]
        d = qs[0] - qs[1]
        z = ((s - ONE) * (d * d - s)) / (s * (d * d - ONE))
        ps = tuple(
            ((z * z + 4 * (ONE - z) * x * x / s).sqrt() - z) / (2 * (ONE - z)) for x in qs
        )
        return ps, z
    fq = [float(x) for x in qs]
    fs = sum(fq)
    fz = 0.0
    for _ in range(1000):
        z_new = (sum(math.sqrt(fz * fz + 4 * (1 - fz) * x * x / fs) for x in fq) - 2) / (n - 2)
        converged = abs(z_new - fz) < 1e-12
        fz = z_new
        if converged:
            break
    else:
        # Jullien–Salanié oscillates and crawls when the outcomes are near-equal with a tiny
        # margin; the same root by bisection on sum(p_i(z)) - 1 (positive at z = 0 when S > 1,
        # negative as z -> 1; the reverse on [-1, 0] when S < 1).
        fz = _shin_z_bisect(fq, fs)
    fps = [(math.sqrt(fz * fz + 4 * (1 - fz) * x * x / fs) - fz) / (2 * (1 - fz)) for x in fq]
    return _normalise_floats(fps), Decimal(repr(fz)).quantize(SOLVER_QUANTUM)


def _shin_z_bisect(fq: Sequence[float], s: float) -> float:
    def excess(z: float) -> float:
        return sum((math.sqrt(z * z + 4 * (1 - z) * x * x / s) - z) / (2 * (1 - z)) for x in fq) - 1

    lo, hi = (0.0, 1.0 - 1e-12) if s >= 1 else (-1.0, 0.0)
    if excess(lo) * excess(hi) > 0:
        raise OddsError("shin de-vig: no insider share z brings the probabilities to 1")
    for _ in range(200):
        mid = (lo + hi) / 2
        if (excess(mid) > 0) == (excess(lo) > 0):
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return (lo + hi) / 2


_DEVIG = {
    "multiplicative": devig_multiplicative,
    "additive": devig_additive,
    "power": devig_power,
    "shin": devig_shin,
}


def _devig_fn(method: str) -> Callable[[Sequence[Decimal]], tuple[Decimal, ...]]:
    try:
        return _DEVIG[method]
    except KeyError:
        raise OddsError(f"unknown de-vig method {method!r}; use one of {DEVIG_METHODS}") from None


def devig(q: Sequence[Decimal], method: str) -> tuple[Decimal, ...]:
    """Fair probabilities of one book's complete market by `method` (one of DEVIG_METHODS)."""
    return _devig_fn(method)(q)


# --- consensus across books -----------------------------------------------------------------------

DEFAULT_BOOK_WEIGHT = Decimal("0.5")


@attrs.frozen(slots=True)
class BookMarket:
    """One book's complete market for one line: its American prices, YES outcome first.

    `american[0]` is the YES selection's price; the rest are the other outcomes of the same
    market and line (one for a two-way moneyline, two with a draw). `locked` marks a quote the
    book has suspended: it never enters a consensus.
    """

    book: str
    american: tuple[Decimal, ...]
    locked: bool = False


@attrs.frozen(slots=True)
class Consensus:
    q: Decimal
    method: str
    quotes: tuple[BookQuote, ...]


# A book's de-vigged YES probability is a function of its prices alone, and a feed recomputes
# every target of a fixture whenever any book of it moves: most books' prices are the same as
# last time (on a 100-market replay 87 % of the de-vigs). So they are remembered, keyed on the
# method and the prices' exact repr (values that compare equal in other types or texts, like
# Decimal("-185.0") and -185, never share an answer), and a remembered answer is the very value
# a fresh computation gives, text included: what a run computes never depends on what ran
# before it in the process. The memo is emptied whole when full, a bound on its memory.
_FAIR_YES_MEMO: dict[tuple[str, tuple[str, ...]], Decimal | None] = {}
_FAIR_YES_MEMO_MAX = 50_000


def _book_fair_yes(method: str, american: tuple[Decimal, ...]) -> Decimal | None:
    """One book's de-vigged YES probability, or None when its prices cannot be de-vigged."""
    key = (method, tuple(map(repr, american)))
    try:
        return _FAIR_YES_MEMO[key]
    except KeyError:
        pass
    try:
        fair: Decimal | None = _devig_fn(method)([american_to_prob(a) for a in american])[0]
    except OddsError:
        fair = None
    if len(_FAIR_YES_MEMO) >= _FAIR_YES_MEMO_MAX:
        _FAIR_YES_MEMO.clear()
    _FAIR_YES_MEMO[key] = fair
    return fair


def consensus(
    markets: Iterable[BookMarket],
    *,
    method: str,
    weights: Mapping[str, Decimal] | Iterable[tuple[str, Decimal]] = (),
    min_books: int = 1,
    default_weight: Decimal = DEFAULT_BOOK_WEIGHT,
) -> Consensus | None:
    """Weighted mean of each book's de-vigged YES probability, or None below `min_books`.

    Each book is de-vigged on its own (never mix prices of different books or lines). Locked
    books, books missing an outcome (fewer than 2 prices) and books with weight 0 are left out;
    a book whose prices cannot be de-vigged (a malformed or absurd quote) is left out too, so one
    bad quote cannot poison the consensus. Weights are renormalised over the books present;
    a book not in `weights` weighs `default_weight`.
    """
    _devig_fn(method)  # an unknown method is refused here, whatever the quotes
    w = dict(weights)
    quotes: list[BookQuote] = []
    for m in markets:
        if m.locked or len(m.american) < 2:
            continue
        weight = Decimal(w.get(m.book, default_weight))
        if weight <= 0:
            continue
        fair_yes = _book_fair_yes(method, m.american)
        if fair_yes is None:
            continue
        quotes.append(BookQuote(book=m.book, raw_prices=m.american, fair_yes=fair_yes, weight=weight))
    if not quotes or len(quotes) < min_books:
        return None
    total = sum((qt.weight for qt in quotes), Decimal(0))
    q = sum((qt.fair_yes * qt.weight for qt in quotes), Decimal(0)) / total
    return Consensus(q=q, method=method, quotes=tuple(quotes))


# --- sizing ----------------------------------------------------------------------------------------


def kelly_fraction(win_prob: Decimal, cost: Decimal) -> Decimal:
    """Kelly fraction of a binary contract paying 1: f = (w - c) / (1 - c).

    `cost` is the effective cost per contract (price plus fee) of the side bought and `win_prob`
    that side's probability of paying out. A result <= 0 means no bet; callers clamp.
    """
    if not 0 < cost < 1:
        raise ValueError(f"cost per contract must lie in (0, 1), got {cost}")
    if not 0 <= win_prob <= 1:
        raise ValueError(f"win probability must lie in [0, 1], got {win_prob}")
    return (win_prob - cost) / (ONE - cost)
