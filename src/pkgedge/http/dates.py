"""HTTP-date parsing and formatting (RFC 9110 §5.6.7).

Three forms are accepted on input (a recipient MUST accept all three):

* IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT`` (the only form we generate);
* obsolete RFC 850: ``Sunday, 06-Nov-94 08:49:37 GMT``;
* ANSI C ``asctime()``: ``Sun Nov  6 08:49:37 1994``.

Parsing is lenient about letter case, runs of spaces, one-digit days, ``UTC`` for ``GMT`` and a
four-digit year in the RFC 850 form (Netscape cookie style); it never raises. The weekday name
must be a real weekday name but is not checked against the date (RFC 9110 leaves that alone).
"""

from __future__ import annotations

import calendar
import math
import re
import time

__all__ = ["format_http_date", "parse_http_date"]

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DAYS_SHORT = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})
_DAYS_LONG = frozenset(
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
)

_IMF = re.compile(
    r"([a-z]{3}), +(\d{1,2}) +([a-z]{3}) +(\d{4}) +(\d{2}):(\d{2}):(\d{2}) +(?:gmt|utc)",
    re.IGNORECASE | re.ASCII,
)
_RFC850 = re.compile(
    r"([a-z]{6,9}), +(\d{1,2})-([a-z]{3})-(\d{2}|\d{4}) +(\d{2}):(\d{2}):(\d{2}) +(?:gmt|utc)",
    re.IGNORECASE | re.ASCII,
)
_ASCTIME = re.compile(
    r"([a-z]{3}) +([a-z]{3}) +(\d{1,2}) +(\d{2}):(\d{2}):(\d{2}) +(\d{4})",
    re.IGNORECASE | re.ASCII,
)

#: Longest input worth looking at (real dates are 24-33 characters).
_MAX_LEN = 64

#: 9999-12-31T23:59:59Z, the last instant an IMF-fixdate (four-digit year) can express.
_MAX_TIMESTAMP = 253402300799

_WEEKDAY_OUT = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_OUT = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _two_digit_year(yy: int) -> int:
    """RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the previous century."""
    now = time.gmtime().tm_year
    year = now - now % 100 + yy
    if year > now + 50:
        year -= 100
    return year


def _timestamp(year: int, month: int, day: int, clock: tuple[str, str, str]) -> float | None:
    hh, mm, ss = (int(part) for part in clock)
    if not 1 <= year <= 9999 or hh > 23 or mm > 59 or ss > 60:
        return None
    if day < 1 or day > calendar.monthrange(year, month)[1]:
        return None
    # Second 60 (a leap second) rolls over into the next minute.
    return float(calendar.timegm((year, month, day, hh, mm, ss, 0, 0, 0)))


def _parse(value: str) -> float | None:
    if m := _IMF.fullmatch(value):
        wday, day, mon, year, hh, mm, ss = m.groups()
        if wday.lower() not in _DAYS_SHORT:
            return None
        y = int(year)
    elif m := _RFC850.fullmatch(value):
        wday, day, mon, year, hh, mm, ss = m.groups()
        if wday.lower() not in _DAYS_LONG:
            return None
        y = _two_digit_year(int(year)) if len(year) == 2 else int(year)
    elif m := _ASCTIME.fullmatch(value):
        wday, mon, day, hh, mm, ss, year = m.groups()
        if wday.lower() not in _DAYS_SHORT:
            return None
        y = int(year)
    else:
        return None
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    return _timestamp(y, month, int(day), (hh, mm, ss))


def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch for an HTTP-date, or ``None`` when it is not one. Never raises."""
    try:
        if len(value) > _MAX_LEN:
            return None
        return _parse(value.strip())
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


# (integer second, formatted string): every response carries a Date, and many share a second.
_last: tuple[int, str] = (-1, "")


def format_http_date(t: float) -> str:
    """IMF-fixdate for ``t`` (seconds since the epoch), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Fractions are truncated; values outside 1970..9999 are clamped (NaN counts as 0). The string
    of the most recent second is cached, so calling this per response costs a tuple compare.
    """
    global _last
    sec = 0 if math.isnan(t) else int(min(max(t, 0.0), float(_MAX_TIMESTAMP)))
    cached = _last
    if cached[0] == sec:
        return cached[1]
    tm = time.gmtime(sec)
    text = (
        f"{_WEEKDAY_OUT[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTH_OUT[tm.tm_mon - 1]} "
        f"{tm.tm_year:04d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT"
    )
    _last = (sec, text)
    return text
