"""The project's own synthetic dataset, in the real subset file's format.

It has the real file's shape (leading index column, the `High_Confidence_Limit `
header with its trailing space, quoted commas in income labels and GeoLocation), all
55 locations, the nine questions, every stratification and years 2011–2022, and about
3 % of rows without a value, as in the real data. The numbers are invented: it exists
so that the server, its tests and its benchmark run anywhere without a download.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from pathlib import Path

from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER

DEFAULT_ROWS = 18_650
SYNTHETIC_MARKER = "Synthetic demo data (Le Stats Sportif)"

STATES = (
    "Alabama",
    "Alaska",
    "Arizona",
    "Arkansas",
    "California",
    "Colorado",
    "Connecticut",
    "Delaware",
    "District of Columbia",
    "Florida",
    "Georgia",
    "Guam",
    "Hawaii",
    "Idaho",
    "Illinois",
    "Indiana",
    "Iowa",
    "Kansas",
    "Kentucky",
    "Louisiana",
    "Maine",
    "Maryland",
    "Massachusetts",
    "Michigan",
    "Minnesota",
    "Mississippi",
    "Missouri",
    "Montana",
    "National",
    "Nebraska",
    "Nevada",
    "New Hampshire",
    "New Jersey",
    "New Mexico",
    "New York",
    "North Carolina",
    "North Dakota",
    "Ohio",
    "Oklahoma",
    "Oregon",
    "Pennsylvania",
    "Puerto Rico",
    "Rhode Island",
    "South Carolina",
    "South Dakota",
    "Tennessee",
    "Texas",
    "Utah",
    "Vermont",
    "Virgin Islands",
    "Virginia",
    "Washington",
    "West Virginia",
    "Wisconsin",
    "Wyoming",
)

STRATIFICATIONS = (
    ("Total", "Total"),
    *(
        ("Age (years)", a)
        for a in ("18 - 24", "25 - 34", "35 - 44", "45 - 54", "55 - 64", "65 or older")
    ),
    *(
        ("Education", e)
        for e in (
            "Less than high school",
            "High school graduate",
            "Some college or technical school",
            "College graduate",
        )
    ),
    ("Gender", "Male"),
    ("Gender", "Female"),
    *(
        ("Income", i)
        for i in (
            "Less than $15,000",
            "$15,000 - $24,999",
            "$25,000 - $34,999",
            "$35,000 - $49,999",
            "$50,000 - $74,999",
            "$75,000 or greater",
            "Data not reported",
        )
    ),
    *(
        ("Race/Ethnicity", r)
        for r in (
            "Non-Hispanic White",
            "Non-Hispanic Black",
            "Hispanic",
            "Asian",
            "Hawaiian/Pacific Islander",
            "American Indian/Alaska Native",
            "2 or more races",
            "Other",
        )
    ),
)

QUESTIONS = LOWER_IS_BETTER + HIGHER_IS_BETTER
# The CDC's QuestionID of each (in the order of QUESTIONS), as the real file has them,
# so that `lestats ask --question Q036` works on the demo too.
QUESTION_IDS = ("Q037", "Q036", "Q047", "Q018", "Q019", "Q043", "Q044", "Q045", "Q046")
YEARS = tuple(range(2011, 2023))
HEADER = (
    "",
    "YearStart",
    "YearEnd",
    "LocationAbbr",
    "LocationDesc",
    "Datasource",
    "Class",
    "Topic",
    "Question",
    "Data_Value_Unit",
    "Data_Value_Type",
    "Data_Value",
    "Data_Value_Alt",
    "Data_Value_Footnote_Symbol",
    "Data_Value_Footnote",
    "Low_Confidence_Limit",
    "High_Confidence_Limit ",
    "Sample_Size",
    "GeoLocation",
    "QuestionID",
    "StratificationCategory1",
    "Stratification1",
)
NO_DATA = "Data not available because sample size is insufficient."


def rows(count: int = DEFAULT_ROWS, seed: int = 0) -> Iterator[tuple[object, ...]]:
    """Yield `count` data rows. Every (question, location, stratification) combination
    appears before any repeats, in a shuffled order, so ~13,900 rows cover them all."""
    rng = random.Random(seed)
    combos = [
        (q, s, st)
        for q in range(len(QUESTIONS))
        for s in range(len(STATES))
        for st in range(len(STRATIFICATIONS))
    ]
    level = {(q, s): rng.uniform(15, 45) for q in range(len(QUESTIONS)) for s in range(len(STATES))}
    shift = [rng.uniform(-6, 6) for _ in STRATIFICATIONS]
    order: list[tuple[int, int, int]] = []
    for index in range(count):
        if not order:
            order = combos[:]
            rng.shuffle(order)
        q, s, st = order.pop()
        year = rng.choice(YEARS)
        category, stratification = STRATIFICATIONS[st]
        state = STATES[s]
        if rng.random() < 0.03:
            value = low = high = ""
            footnote = NO_DATA
        else:
            mean = min(max(level[q, s] + shift[st] + rng.gauss(0, 3), 1.0), 99.0)
            value = f"{mean:.1f}"
            low, high = f"{max(mean - 3, 0):.1f}", f"{min(mean + 3, 100):.1f}"
            footnote = ""
        yield (
            index,
            year,
            year,
            state[:2].upper(),
            state,
            SYNTHETIC_MARKER,
            "Synthetic",
            "Synthetic",
            QUESTIONS[q],
            "",
            "Value",
            value,
            value,
            "",
            footnote,
            low,
            high,
            rng.randint(50, 5000),
            f"({rng.uniform(18, 65):.6f}, {rng.uniform(-160, -65):.6f})",
            QUESTION_IDS[q],
            category,
            stratification,
        )


def write(path: str | os.PathLike[str], count: int = DEFAULT_ROWS, seed: int = 0) -> Path:
    """Write the dataset atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows(count, seed))
    os.replace(temporary, path)
    return path


def is_synthetic(path: str | os.PathLike[str]) -> bool:
    """True for a file made by this generator (its second line carries the marker)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            handle.readline()
            return SYNTHETIC_MARKER in handle.readline()
    except OSError:
        return False
