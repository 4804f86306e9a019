"""Dates and decimal years: the one home of glacier-inventory date parsing.

Inventories write dates in several ways; `parse_date` reads them all:

    RGI 6 BgnDate / EndDate   "20030815"    YYYYMMDD; 99 for an unknown month or day,
                              "20030899"    so "20030899" is August 2003, day unknown,
                              "20039999"    and "20039999" (or "2003999") the year only;
                              "-9999999"    no date at all (None)
    RGI 7 src_date            "2003-08-15T00:00:00"
    ISO date / timestamp      "2003-08-15", datetime.date, pandas.Timestamp
    plain year                2003, 2003.0, "2003"

Unknown parts are placed in the middle of what is known (one convention everywhere):
an unknown day is the 15th of the month, an unknown month (or a plain year) is 1 July.
A date is then a decimal year by `decimal_year` (days since 1 January / days in that year),
so a plain year 2003 is 2003 + 181/365 = 2003.496.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import numpy as np
import pandas as pd

UNKNOWN_DAY = 15  # an unknown day of a known month: mid-month
UNKNOWN_MONTH_DATE = (7, 1)  # an unknown month (year known only): mid-year
RGI_MISSING = "-9999999"
_RGI6 = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_YEAR_ONLY = re.compile(r"^(\d{4})9{1,4}$")  # YYYY followed by 9s only: "20039999", "2003999"


def decimal_year(d: dt.date | pd.Timestamp) -> float:
    """Date -> year + (days since 1 January) / (days in that year): 2015-07-02 -> 2015.5."""
    start = dt.date(d.year, 1, 1)
    days = (dt.date(d.year + 1, 1, 1) - start).days
    return d.year + (dt.date(d.year, d.month, d.day) - start).days / days


def _year_date(year: int) -> dt.date:
    return dt.date(year, *UNKNOWN_MONTH_DATE)


def parse_date(value) -> dt.date | None:
    """An inventory date in any of the forms of the module docstring; None when absent or unreadable."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None
    if isinstance(value, (dt.date, pd.Timestamp)):
        return dt.date(value.year, value.month, value.day)
    if isinstance(value, (int, np.integer, float, np.floating)):
        if float(value).is_integer() and 1000 <= value <= 9999:
            return _year_date(int(value))
        value = str(int(value)) if float(value).is_integer() else str(value)
    text = str(value).strip()
    if not text or text == RGI_MISSING:
        return None
    if text.isdigit() and len(text) == 4:
        return _year_date(int(text))
    m = _YEAR_ONLY.match(text)
    if m:
        return _year_date(int(m.group(1)))
    m = _RGI6.match(text)
    if m:
        y, mo, d = (int(g) for g in m.groups())
        try:
            return dt.date(y, mo, UNKNOWN_DAY if d == 99 else d)
        except ValueError:
            return None
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    return None if pd.isna(ts) else dt.date(ts.year, ts.month, ts.day)


def inventory_year(value) -> float:
    """An inventory date (any form `parse_date` reads) as a decimal year; NaN when absent or unreadable."""
    d = parse_date(value)
    return float("nan") if d is None else decimal_year(d)


__all__ = ["decimal_year", "parse_date", "inventory_year", "UNKNOWN_DAY", "UNKNOWN_MONTH_DATE", "RGI_MISSING"]
