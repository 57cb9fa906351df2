"""CSV files for tests, written row by row in the two real formats (docs/api.md, "Data")."""
from __future__ import annotations

import csv
from pathlib import Path

SUBSET_HEADER = ["", "YearStart", "LocationDesc", "Question", "Data_Value",
                 "High_Confidence_Limit ", "GeoLocation", "StratificationCategory1",
                 "Stratification1"]
FULL_HEADER = ["YearStart", "YearEnd", "LocationDesc", "Question", "Data_Value",
               "Data_Value_Footnote", "StratificationCategory1", "Stratification1"]


def write_rows(path: Path, rows: list[dict], header: list[str] = SUBSET_HEADER) -> Path:
    """Rows are dicts with keys location, question, value, category, stratification,
    year; missing cells are written empty."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, row in enumerate(rows):
            cells = {"": index, "YearStart": row.get("year", 2020),
                     "YearEnd": row.get("year", 2020),
                     "LocationDesc": row["location"], "Question": row["question"],
                     "Data_Value": row.get("value", ""),
                     "High_Confidence_Limit ": "", "Data_Value_Footnote": "",
                     "GeoLocation": "(32.840571, -86.631861)",
                     "StratificationCategory1": row.get("category", "Total"),
                     "Stratification1": row.get("stratification", "Total")}
            writer.writerow([cells.get(name, "") for name in header])
    return path
