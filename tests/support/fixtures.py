"""CSV files for tests, written row by row in the two real formats (docs/api.md, "Data")."""

from __future__ import annotations

import csv
from pathlib import Path

SUBSET_HEADER = [
    "",
    "YearStart",
    "LocationDesc",
    "Question",
    "Data_Value",
    "High_Confidence_Limit ",
    "GeoLocation",
    "StratificationCategory1",
    "Stratification1",
]
FULL_HEADER = [
    "YearStart",
    "YearEnd",
    "LocationDesc",
    "Question",
    "Data_Value",
    "Data_Value_Footnote",
    "StratificationCategory1",
    "Stratification1",
]
# The subset with every column the analytics extensions read (docs/analytics.md).
ANALYTICS_HEADER = [
    *SUBSET_HEADER[:2],
    "YearEnd",
    *SUBSET_HEADER[2:5],
    "Low_Confidence_Limit",
    *SUBSET_HEADER[5:6],
    "Sample_Size",
    *SUBSET_HEADER[6:],
]


def write_rows(path: Path, rows: list[dict], header: list[str] = SUBSET_HEADER) -> Path:
    """Rows are dicts with keys location, question, value, category, stratification,
    year (YearStart), and optionally year_end (default: year), sample_size, low and
    high (the confidence limits); missing cells are written empty."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, row in enumerate(rows):
            cells = {
                "": index,
                "YearStart": row.get("year", 2020),
                "YearEnd": row.get("year_end", row.get("year", 2020)),
                "LocationDesc": row["location"],
                "Question": row["question"],
                "Data_Value": row.get("value", ""),
                "Low_Confidence_Limit": row.get("low", ""),
                "High_Confidence_Limit ": row.get("high", ""),
                "Sample_Size": row.get("sample_size", ""),
                "Data_Value_Footnote": "",
                "GeoLocation": "(32.840571, -86.631861)",
                "StratificationCategory1": row.get("category", "Total"),
                "Stratification1": row.get("stratification", "Total"),
            }
            writer.writerow([cells.get(name, "") for name in header])
    return path
