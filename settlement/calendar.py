"""Working days for settlement cycles: when a sale's money becomes available to the merchant.

The calendar is a text file the operator edits (settings.SETTLEMENT_HOLIDAY_FILE, default
settlement/holidays/cn.txt): public holidays (`off`) and weekend make-up working days (`work`, 调休) on top of
Monday-to-Friday. It is re-read when its modification time changes, so an edit needs no restart. Days are the
shop's days (settings.TIME_ZONE): a sale paid at 23:30 in Shanghai belongs to that Shanghai date.

Cycles: `T+N` is N working days after the paid day (available at the start of that day, shop time);
`T+0` is at once; `D+N` is N calendar days after the paid moment.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings

DEFAULT_FILE = Path(__file__).resolve().parent / "holidays" / "cn.txt"
LINE = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2})\s+(?P<kind>off|work)(?:\s.*)?$")
YEAR = re.compile(r"^year\s+(?P<year>\d{4})(?:\s.*)?$")
CYCLE = re.compile(r"^(?P<kind>[TD])\+(?P<n>\d{1,3})$")


class CalendarError(ValueError):
    """The holiday file has a line we cannot read (the message names the file and line), or a bad cycle."""


@dataclass(frozen=True)
class WorkCalendar:
    off: frozenset[date]
    work: frozenset[date]
    years: frozenset[int]

    def is_working_day(self, day: date) -> bool:
        if day in self.work:
            return True
        return day.weekday() < 5 and day not in self.off

    def working_days_after(self, day: date, n: int) -> date:
        """The n-th working day after `day` (n >= 1); `day` itself never counts."""
        if n < 1:
            raise ValueError("n must be at least 1")
        while n:
            day += timedelta(days=1)
            n -= self.is_working_day(day)
        return day

    def uncovered_years(self, *days: date) -> list[int]:
        """Years among `days` whose schedule the file does not declare: their holidays are unknown."""
        return sorted({d.year for d in days} - self.years)


def parse(text: str, *, source: str = "<text>") -> WorkCalendar:
    off: set[date] = set()
    work: set[date] = set()
    years: set[int] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := YEAR.match(line):
            years.add(int(m["year"]))
            continue
        m = LINE.match(line)
        try:
            day = date.fromisoformat(m["day"]) if m else None
        except ValueError:
            day = None
        if day is None:
            raise CalendarError(f"{source}:{number}: expected `YYYY-MM-DD off|work` or `year YYYY`, got {raw!r}")
        (off if m["kind"] == "off" else work).add(day)
    clash = off & work
    if clash:
        raise CalendarError(f"{source}: {min(clash)} is both off and work")
    return WorkCalendar(off=frozenset(off), work=frozenset(work), years=frozenset(years))


_lock = threading.Lock()
_cached: tuple[Path, float, WorkCalendar] | None = None


def holiday_file() -> Path:
    return Path(getattr(settings, "SETTLEMENT_HOLIDAY_FILE", "") or DEFAULT_FILE)


def work_calendar() -> WorkCalendar:
    """The operator's calendar, re-read when the file changes."""
    global _cached
    path = holiday_file()
    mtime = path.stat().st_mtime
    with _lock:
        if _cached is None or _cached[0] != path or _cached[1] != mtime:
            _cached = (path, mtime, parse(path.read_text(encoding="utf-8"), source=str(path)))
        return _cached[2]


def release_at(paid_at: datetime, cycle: str, *, calendar: WorkCalendar | None = None) -> datetime:
    """When money paid at `paid_at` (aware) becomes available under `cycle` (`T+0`, `T+1`, `T+N`, `D+N`)."""
    m = CYCLE.match(cycle)
    if m is None:
        raise CalendarError(f"unknown settlement cycle {cycle!r} (use T+0, T+N or D+N)")
    n = int(m["n"])
    if n == 0:
        return paid_at
    if m["kind"] == "D":
        return paid_at + timedelta(days=n)
    zone = ZoneInfo(settings.TIME_ZONE)
    paid_day = paid_at.astimezone(zone).date()
    day = (calendar or work_calendar()).working_days_after(paid_day, n)
    return datetime.combine(day, time.min, tzinfo=zone)
