"""Settlement cycles count the shop's working days from the operator's holiday file (China's 2026 schedule in
the repo): weekends, public holidays and the weekend make-up working days (调休)."""

from __future__ import annotations

import os
import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from settlement.calendar import CalendarError, parse, release_at, work_calendar

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def shop_zone(settings):
    settings.TIME_ZONE = "Asia/Shanghai"


def at(y, m, d, h=12, mi=0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=SH)


def test_t_plus_1_skips_a_weekend():
    assert release_at(at(2026, 12, 4), "T+1") == at(2026, 12, 7, 0)  # Friday -> Monday 00:00


def test_t_plus_1_skips_national_day_and_lands_on_a_make_up_saturday():
    assert release_at(at(2026, 9, 30), "T+1") == at(2026, 10, 8, 0)  # Oct 1-7 off
    assert release_at(at(2026, 10, 9), "T+1") == at(2026, 10, 10, 0)  # Saturday Oct 10 is a working day
    assert release_at(at(2026, 2, 13), "T+1") == at(2026, 2, 14, 0)  # Saturday before Spring Festival works
    assert release_at(at(2026, 2, 14), "T+1") == at(2026, 2, 24, 0)  # Feb 15-23 off


def test_the_paid_day_is_the_shops_day():
    # 16:30 UTC on Thursday Dec 3 is 00:30 on Friday Dec 4 in Shanghai: T+1 is Monday, not Friday.
    paid = datetime(2026, 12, 3, 16, 30, tzinfo=ZoneInfo("UTC"))
    assert release_at(paid, "T+1") == at(2026, 12, 7, 0)


def test_t_plus_0_is_at_once_and_d_plus_n_counts_calendar_days():
    paid = at(2026, 9, 30, 15, 45)
    assert release_at(paid, "T+0") == paid
    assert release_at(paid, "D+7") == at(2026, 10, 7, 15, 45)  # holidays do not matter to D+N
    assert release_at(at(2026, 12, 4), "T+3") == at(2026, 12, 9, 0)


@pytest.mark.parametrize("cycle", ["T1", "T+-1", "W+1", "", "T+1000"])
def test_an_unknown_cycle_is_refused(cycle):
    with pytest.raises(CalendarError):
        release_at(at(2026, 12, 4), cycle)


def test_a_bad_line_names_its_file_and_line():
    with pytest.raises(CalendarError, match=r"mine\.txt:3:"):
        parse("year 2027\n2027-01-01 off\n2027-13-01 off\n", source="mine.txt")
    with pytest.raises(CalendarError, match="both off and work"):
        parse("2027-01-02 off\n2027-01-02 work\n")


def test_years_the_file_does_not_declare_are_named():
    calendar = work_calendar()
    assert calendar.uncovered_years(date(2026, 12, 31), date(2027, 1, 4)) == [2027]


def test_an_edited_file_is_read_again_without_a_restart(tmp_path, settings):
    path = tmp_path / "holidays.txt"
    path.write_text("year 2027\n", encoding="utf-8")
    settings.SETTLEMENT_HOLIDAY_FILE = str(path)
    assert release_at(at(2027, 1, 1), "T+1") == at(2027, 1, 4, 0)  # Friday -> Monday
    path.write_text("year 2027\n2027-01-04 off  New Year, observed\n", encoding="utf-8")
    later = time.time() + 5
    os.utime(path, (later, later))
    assert release_at(at(2027, 1, 1), "T+1") == at(2027, 1, 5, 0)
