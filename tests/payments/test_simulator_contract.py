"""Every simulator keeps the base contract tests rely on: trade_for() of an unknown order is None (tests poll it
while the shop's create call is still on its way), not an exception."""

from __future__ import annotations

import pytest

from payments.simulators.catalog import SIMULATORS, simulator_class


@pytest.mark.parametrize("code", sorted(SIMULATORS))
def test_an_unknown_trade_is_none(code):
    sim = simulator_class(code)().start()
    try:
        assert sim.trade_for("P-not-made-yet") is None
    finally:
        sim.stop()
