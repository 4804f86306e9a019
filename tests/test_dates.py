"""One home for inventory dates: every form inventories use, one convention for unknown parts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from glaciermap.data.dates import decimal_year, inventory_year, parse_date


@pytest.mark.parametrize("value, expected", [
    ("20030815", dt.date(2003, 8, 15)),  # RGI 6 BgnDate
    ("20030899", dt.date(2003, 8, 15)),  # RGI 6, day unknown: mid-month
    ("20039999", dt.date(2003, 7, 1)),  # RGI 6, month and day unknown: mid-year
    ("2003999", dt.date(2003, 7, 1)),  # the same, one 9 short
    (20030899, dt.date(2003, 8, 15)),  # RGI 6 read as an integer column
    ("2003-08-15T00:00:00", dt.date(2003, 8, 15)),  # RGI 7 src_date
    ("2003-08-15", dt.date(2003, 8, 15)),  # ISO
    (dt.date(2003, 8, 15), dt.date(2003, 8, 15)),
    (pd.Timestamp("2003-08-15"), dt.date(2003, 8, 15)),
    (2003, dt.date(2003, 7, 1)),  # plain year: mid-year
    (2003.0, dt.date(2003, 7, 1)),
    ("2003", dt.date(2003, 7, 1)),
    ("-9999999", None), (-9999999, None),  # RGI: no date
    (None, None), (np.nan, None), ("", None), ("not a date", None), ("20031399", None),
])
def test_parse_date(value, expected):
    assert parse_date(value) == expected


def test_decimal_year_and_inventory_year():
    assert decimal_year(dt.date(2015, 7, 2)) == pytest.approx(2015 + 182 / 365)
    assert decimal_year(dt.date(2016, 1, 1)) == 2016.0
    assert decimal_year(pd.Timestamp("2016-12-31")) == pytest.approx(2016 + 365 / 366)  # leap year
    assert inventory_year("20030899") == pytest.approx(2003 + (31 + 28 + 31 + 30 + 31 + 30 + 31 + 14) / 365)
    assert inventory_year(2003) == inventory_year("20039999") == pytest.approx(2003 + 181 / 365)
    assert np.isnan(inventory_year("-9999999")) and np.isnan(inventory_year(None))
