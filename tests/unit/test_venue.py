"""The executor protocol: paper and live implement one Venue; nobody probes an executor."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import trio
from mypy import api as mypy_api

import polybot
from polybot.execution.orders import OrderRegistry
from polybot.execution.paper import PaperExecutor
from polybot.ledger import Ledger
from polybot.model import BookSnapshot, MarketState

REPO = Path(polybot.__file__).parent.parent

# hasattr(self.executor, ...), getattr(executor, ...), getattr(notice, ...) and the like
PROBE = re.compile(r"\b(hasattr|getattr)\(\s*(\w+\.)*(executor|venue|notice)\w*\s*,")


def test_no_module_probes_an_executor_with_hasattr_or_getattr():
    # The root used to ask the executor what it could do (app.py: _open_orders, signals_for,
    # evaluate_market, _submit, on_market_book, the notices): a method renamed in one executor
    # silently turned a risk check off. The Venue protocol says what every executor has.
    hits = []
    for top in ("polybot", "bench"):
        for path in sorted((REPO / top).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if PROBE.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert hits == []


def test_the_probe_pattern_catches_the_forms_the_root_used():
    for probe in ('hasattr(self.executor, "risk_orders")', 'getattr(self.executor, "x", None)',
                  'getattr(notice, "kind", "")', "hasattr(executor, 'can_submit')"):
        assert PROBE.search(probe), probe
    assert not PROBE.search('getattr(self._store, name)')


def test_paper_and_live_executors_type_check_as_a_venue(tmp_path):
    # mypy is the referee of a Protocol: both executors assign to Venue, and a class missing a
    # member does not (the control proves the check can fail).
    snippet = tmp_path / "venue_conformance.py"
    snippet.write_text(textwrap.dedent("""\
        from polybot.execution.live import LiveExecutor
        from polybot.execution.paper import PaperExecutor
        from polybot.execution.venue import Venue


        class NotAVenue:
            def can_submit(self, market_slug: str) -> bool:
                return True


        def conform(paper: PaperExecutor, live: LiveExecutor, other: NotAVenue) -> None:
            venues: list[Venue] = [paper, live]
            wrong: Venue = other
            print(venues, wrong)
        """))
    out, err, _ = mypy_api.run([str(snippet), "--no-error-summary",
                                "--config-file", str(REPO / "pyproject.toml")])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "venue_conformance.py:13:" in errors[0], out + err
    assert '"NotAVenue"' in errors[0] and '"Venue"' in errors[0]


async def test_the_paper_venue_has_no_tasks_and_readiness_always_allows(autojump_clock):
    paper = PaperExecutor(OrderRegistry(), Ledger(), {})
    assert paper.trading_allowed and paper.readiness_reason == "" and paper.can_submit("m")
    paper.on_market_state("m", MarketState.CLOSED)  # a no-op: on_book sees the state
    book = BookSnapshot("m", (), ())
    assert paper.effective_book(book) == book and paper.risk_orders() == []
    send, recv = trio.open_memory_channel[object](1)
    async with trio.open_nursery() as nursery:
        await nursery.start(paper.run, recv)
        await send.send("an event paper ignores")
        await send.aclose()  # run returns when its channel closes
    report = await paper.shutdown(cancel=True)
    assert report.all_confirmed
