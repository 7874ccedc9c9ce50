"""Odds conversion, de-vig, consensus and Kelly: published vectors (opticodds-api.md §5.2) and properties."""

from decimal import Decimal as D

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from polybot.pricing import (
    DEVIG_METHODS,
    BookMarket,
    OddsError,
    american_to_decimal,
    american_to_prob,
    consensus,
    decimal_to_american,
    decimal_to_prob,
    devig,
    kelly_fraction,
    power_exponent,
    prob_to_american,
    shin_z,
)

TOL = D("1e-6")


def close(a, b, tol=TOL):
    return abs(D(a) - D(b)) <= tol


def q_of(*american):
    return [american_to_prob(D(a)) for a in american]


# --- conversions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("american", "dec", "prob"),
    [(150, "2.5", "0.4"), (-200, "1.5", "0.6666666666666666666666666667"), (100, "2", "0.5"), (-100, "2", "0.5")],
)
def test_american_converts_to_decimal_and_probability(american, dec, prob):
    assert american_to_decimal(D(american)) == D(dec)
    assert close(american_to_prob(D(american)), D(prob), D("1e-20"))
    assert close(decimal_to_prob(D(dec)), D(prob), D("1e-20"))


def test_decimal_to_american_uses_sign_by_even_money_threshold():
    assert decimal_to_american(D("2.5")) == D(150)
    assert decimal_to_american(D("1.5")) == D(-200)
    assert close(prob_to_american(D("0.6")), D(-150), D("1e-20"))


@pytest.mark.parametrize("bad", [0, 50, -99])
def test_american_odds_inside_plus_minus_100_are_rejected(bad):
    with pytest.raises(OddsError, match="American odds"):
        american_to_prob(D(bad))


def test_decimal_odds_at_or_below_one_are_rejected():
    with pytest.raises(OddsError):
        decimal_to_prob(D(1))


# --- de-vig vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", DEVIG_METHODS)
def test_minus_110_both_sides_is_even_money_for_every_method(method):
    assert all(close(p, D("0.5"), D("1e-10")) for p in devig(q_of(-110, -110), method))


VECTORS = [
    # (prices, multiplicative, additive == shin (n=2), shin z, power, power k)
    ((-156, 132), ("0.585707", "0.414293"), ("0.589170", "0.410830"), "0.040461", ("0.590915", "0.409085"), "1.062104"),
    ((-230, 198), ("0.675005", "0.324995"), ("0.680700", "0.319300"), "0.032694", ("0.683568", "0.316432"), "1.053781"),
    ((-110, -110), ("0.5", "0.5"), ("0.5", "0.5"), "0.047619", ("0.5", "0.5"), "1.071943"),
]


@pytest.mark.parametrize(("prices", "mult", "add", "z", "power", "k"), VECTORS)
def test_two_way_vectors_match_reference_table(prices, mult, add, z, power, k):
    q = q_of(*prices)
    assert all(map(close, devig(q, "multiplicative"), mult))
    assert all(map(close, devig(q, "additive"), add))
    assert all(map(close, devig(q, "shin"), add))
    assert close(shin_z(q), D(z))
    assert all(map(close, devig(q, "power"), power))
    assert close(power_exponent(q), D(k))


def test_shin_two_way_matches_shin_package_readme():
    q = [decimal_to_prob(D("1.5")), decimal_to_prob(D("2.74"))]
    p = devig(q, "shin")
    assert close(p[0], D("0.6508515815"), D("1e-9"))
    assert close(p[1], D("0.3491484185"), D("1e-9"))
    assert close(shin_z(q), D("0.0317272854"), D("1e-9"))


def test_three_way_vectors_match_reference_and_shin_package():
    q = [decimal_to_prob(D(x)) for x in ("2.6", "2.4", "4.3")]
    assert all(map(close, devig(q, "multiplicative"), ("0.372026", "0.403028", "0.224946")))
    assert all(map(close, devig(q, "additive"), ("0.373335", "0.405387", "0.221278")))
    assert all(map(close, devig(q, "power"), ("0.372984", "0.405107", "0.221908")))
    assert close(power_exponent(q), D("1.032137"))
    shin = devig(q, "shin")
    assert all(map(lambda a, b: close(a, b, D("1e-9")), shin, ("0.3729940603", "0.4047794109", "0.2222265287")))
    assert close(shin_z(q), D("0.0169425128"), D("1e-9"))


def test_unknown_method_is_rejected_by_name():
    with pytest.raises(OddsError, match="bogus"):
        devig(q_of(-110, -110), "bogus")


def test_additive_longshot_going_negative_is_an_error_not_a_negative_probability():
    q = [D("0.90"), D("0.15"), D("0.02"), D("0.02"), D("0.02")]  # booksum 1.11
    with pytest.raises(OddsError, match="additive"):
        devig(q, "additive")


# --- properties --------------------------------------------------------------------------------

fair_probs = st.lists(st.integers(min_value=50, max_value=950), min_size=2, max_size=4).filter(
    lambda xs: sum(xs) > 0
)


@st.composite
def book_markets(draw):
    """Raw implied probabilities of a plausible book: fair probs with a 0-10 % margin laid on."""
    weights = draw(fair_probs)
    total = sum(weights)
    fair = [D(w) / D(total) for w in weights]
    assume(all(D("0.03") < p < D("0.97") for p in fair))
    margin = D(draw(st.integers(min_value=0, max_value=100))) / D(1000)
    q = [p * (1 + margin) for p in fair]
    assume(all(x < 1 for x in q))
    return q


@given(book_markets(), st.sampled_from(DEVIG_METHODS))
def test_devigged_probabilities_sum_to_one_stay_in_unit_interval_and_keep_order(q, method):
    try:
        p = devig(q, method)
    except OddsError:
        # only additive may legitimately fail (a longshot pushed below zero)
        assert method == "additive"
        return
    assert abs(sum(p) - 1) <= D("1e-9")
    assert all(0 < x < 1 for x in p)
    for i in range(len(q)):
        for j in range(len(q)):
            if q[i] > q[j]:
                assert p[i] >= p[j], "the favourite must stay the favourite"


@given(st.integers(min_value=101, max_value=2000), st.integers(min_value=101, max_value=2000))
def test_two_way_american_markets_devig_within_unit_interval(fav, dog):
    q = q_of(-fav, dog)
    assume(sum(q) >= 1)
    for method in DEVIG_METHODS:
        p = devig(q, method)
        assert abs(sum(p) - 1) <= D("1e-9")
        assert all(0 < x < 1 for x in p)
        assert p[0] > p[1]


# --- consensus ---------------------------------------------------------------------------------


def test_consensus_weights_books_and_records_inputs():
    c = consensus(
        [BookMarket("pinnacle", (D(-150), D(130))), BookMarket("draftkings", (D(-110), D(-110)))],
        method="multiplicative",
        weights={"pinnacle": D(1)},
    )
    assert c is not None
    p_pin = devig(q_of(-150, 130), "multiplicative")[0]
    # draftkings is unlisted: weight 0.5
    assert close(c.q, (p_pin * 1 + D("0.5") * D("0.5")) / D("1.5"), D("1e-20"))
    assert [(x.book, x.weight) for x in c.quotes] == [("pinnacle", D(1)), ("draftkings", D("0.5"))]
    assert c.quotes[0].raw_prices == (D(-150), D(130))
    assert c.method == "multiplicative"


def test_consensus_excludes_locked_and_incomplete_books():
    c = consensus(
        [
            BookMarket("pinnacle", (D(-150), D(130))),
            BookMarket("circa_sports", (D(-300), D(250)), locked=True),
            BookMarket("betonline", (D(-300),)),
        ],
        method="shin",
    )
    assert c is not None
    assert [x.book for x in c.quotes] == ["pinnacle"]


def test_consensus_needs_min_books_quoting():
    books = [BookMarket("pinnacle", (D(-150), D(130))), BookMarket("x", (D(-140), D(120)), locked=True)]
    assert consensus(books, method="shin", min_books=2) is None
    assert consensus(books, method="shin", min_books=1) is not None


def test_consensus_ignores_zero_weight_books():
    books = [BookMarket("pinnacle", (D(-150), D(130))), BookMarket("junk", (D(-500), D(400)))]
    c = consensus(books, method="power", weights=[("junk", D(0))], min_books=1)
    assert c is not None and [x.book for x in c.quotes] == ["pinnacle"]
    assert consensus(books, method="power", weights=[("junk", D(0))], min_books=2) is None


def _fresh_consensus(books, **kw):
    from polybot import pricing

    pricing._FAIR_YES_MEMO.clear()
    return consensus(books, **kw)


def test_a_remembered_de_vig_gives_what_a_fresh_one_gives_for_every_method_and_refusal():
    # the same prices under every method, the same value in two texts, a book that cannot be
    # de-vigged, three-way markets: each consensus equals one computed with an empty memo
    markets = [
        [BookMarket("pinnacle", (D(-150), D(130))), BookMarket("dk", (D(-110), D(-110)))],
        [BookMarket("pinnacle", (D("-150.0"), D("130.0"))), BookMarket("dk", (D(-110), D(-110)))],
        [BookMarket("pinnacle", (D(-150), D(50))), BookMarket("dk", (D(-110), D(-110)))],
        [BookMarket("pinnacle", (D(130), D(-150))), BookMarket("dk", (D(-110), D(-110)))],
        [BookMarket("pinnacle", (D(150), D(240), D(210))), BookMarket("dk", (D(140), D(250), D(200)))],
    ]
    cases = [(method, books) for method in DEVIG_METHODS for books in markets]
    want = [repr(_fresh_consensus(books, method=method, min_books=2)) for method, books in cases]
    for _round in range(2):  # one memo all along: the second round is answered from it
        got = [repr(consensus(books, method=method, min_books=2)) for method, books in cases]
        assert got == want
    refused = consensus(markets[2], method="shin", min_books=2)
    assert refused is None  # the bad book stays out on every call, remembered or not


# --- Kelly -------------------------------------------------------------------------------------


def test_kelly_fraction_of_binary_contract():
    assert kelly_fraction(D("0.6"), D("0.5")) == D("0.2")
    assert kelly_fraction(D("0.5"), D("0.5")) == 0
    assert kelly_fraction(D("0.4"), D("0.5")) < 0


def test_kelly_rejects_cost_outside_unit_interval():
    with pytest.raises(ValueError):
        kelly_fraction(D("0.5"), D(1))


def test_shin_converges_for_near_equal_outcomes_with_a_tiny_margin():
    # Jullien–Salanié oscillates here for thousands of iterations; the fallback must still solve it
    q = [D("0.3336666666666666666666666666")] * 3
    p = devig(q, "shin")
    assert all(close(x, D(1) / 3, D("1e-9")) for x in p)
    assert close(shin_z(q), D("0.0005"), D("1e-6"))
