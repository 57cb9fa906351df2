"""CSV → columnar numpy arrays: float64 values and small integer codes.

The loader is strict on purpose (docs/api.md, "Data"): a file that is missing, empty, lacks one of
the five columns, or has a row with the wrong number of fields is refused as a whole,
with one sentence that names the file and the problem. Rows whose Data_Value is empty
or not a finite number are dropped and counted.

Rows are kept sorted by (question, location, category, stratification), so every
question's rows are one contiguous slice and, inside it, every location's rows are
one contiguous run: the statistics then work on slices, never on masks.

The columns the analytics extensions read (docs/analytics.md) are optional: YearEnd
(taken equal to YearStart when the file has no such column, as in the real file where
they are always equal), and Sample_Size and the two confidence limits, kept as float64
with NaN where a cell is empty or the column is missing.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import mmap
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from compute.questions import direction

QUESTION, LOCATION, CATEGORY, STRATIFICATION, VALUE, YEAR, YEAR_END, QUESTION_ID = (
    "Question",
    "LocationDesc",
    "StratificationCategory1",
    "Stratification1",
    "Data_Value",
    "YearStart",
    "YearEnd",
    "QuestionID",
)
SAMPLE_SIZE, LOW, HIGH = "Sample_Size", "Low_Confidence_Limit", "High_Confidence_Limit"
REQUIRED = (QUESTION, LOCATION, CATEGORY, STRATIFICATION, VALUE)
CODED = (QUESTION, LOCATION, CATEGORY, STRATIFICATION)
# Optional numeric columns: (CSV column, array name); NaN where absent or not a number.
MEASURES = ((SAMPLE_SIZE, "sample_size"), (LOW, "low"), (HIGH, "high"))
OPTIONAL = (YEAR, YEAR_END, *(column for column, _ in MEASURES))

# The arrays every statistic reads; their names are also the shared-memory layout.
# "year" is YearStart and "year_end" YearEnd (0 where the cell is empty).
ARRAY_NAMES = (
    "value",
    "location",
    "category",
    "stratification",
    "group",
    "year",
    "year_end",
    "sample_size",
    "low",
    "high",
    "question_offsets",
)


class DataError(Exception):
    """The data file cannot be served; the message is one sentence for the operator."""


@dataclass
class Dataset:
    """Everything the statistics need: arrays plus the vocabularies behind the codes.

    Vocabularies are sorted, so code order is name order and "ties by name" or
    "ordered by the triple" is just an ordering of codes.
    """

    arrays: dict[str, np.ndarray]
    questions: list[str]
    locations: list[str]
    categories: list[str]
    stratifications: list[str]
    # The CDC's short id of each question ("Q036"), parallel to `questions`; empty
    # when the file has no QuestionID column.
    question_ids: list[str] = field(default_factory=list)
    file: str = ""
    rows_read: int = 0
    rows_ignored: int = 0
    year_end_column: bool = True  # False: the file had none, YearEnd = YearStart
    question_index: dict[str, int] = field(init=False, repr=False)
    location_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.question_index = {q: i for i, q in enumerate(self.questions)}
        self.location_index = {s: i for i, s in enumerate(self.locations)}

    @property
    def rows_loaded(self) -> int:
        return int(self.arrays["value"].shape[0])

    def direction(self, question: str) -> str | None:
        return direction(question)

    def question_slice(self, question_code: int) -> slice:
        offsets = self.arrays["question_offsets"]
        return slice(int(offsets[question_code]), int(offsets[question_code + 1]))

    @cached_property
    def group_keys(self) -> np.ndarray:
        """The answer key of every possible (location, category, stratification) group
        code: "('Ohio', 'Age (years)', '18 - 24')", built once, not once per answer."""
        return np.array(
            [
                str((loc, c, s))
                for loc in self.locations
                for c in self.categories
                for s in self.stratifications
            ]
            or [""],
            dtype=object,
        )

    @cached_property
    def pair_keys(self) -> np.ndarray:
        """The same for (category, stratification), indexed by group code modulo
        len(categories) * len(stratifications)."""
        return np.array(
            [str((c, s)) for c in self.categories for s in self.stratifications] or [""],
            dtype=object,
        )

    @cached_property
    def fingerprint(self) -> str:
        """A short, stable name of the data itself (16 hex digits): equal for two loads
        that give the same arrays and vocabularies — hence the same answers — and
        different otherwise, whatever the file is called. The server records it with
        every job (the journal; in cluster mode, Redis) so a job is never answered on
        other data than the data it was accepted under. Hashing the arrays, not the file, is cheaper
        (they are a fraction of its size) and ignores what the statistics never read."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(json.dumps(self.vocabularies(), ensure_ascii=False).encode())
        for name in ARRAY_NAMES:
            array = np.ascontiguousarray(self.arrays[name])
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.data.cast("B"))
        return digest.hexdigest()

    @cached_property
    def years(self) -> list[int]:
        """Every YearStart and YearEnd of the loaded rows, ascending (0, an empty
        cell, left out): the range a year filter may ask for is years[0]..years[-1]."""
        found = np.union1d(self.arrays["year"], self.arrays["year_end"])
        return [int(y) for y in found if y > 0]

    def year_summary(self) -> dict[str, Any]:
        """What /api/years and /api/info say about the years (docs/analytics.md)."""
        years = self.years
        return {
            "first": years[0] if years else None,
            "last": years[-1] if years else None,
            "years": years,
            "year_end_column": self.year_end_column,
        }

    def restricted(
        self, q: int, rows: slice, year_start: int | None, year_end: int | None
    ) -> Dataset:
        """This dataset cut down to `rows` (question q's slice, or a part of it such as
        one state's run) with YearStart ≥ year_start and YearEnd ≤ year_end (either
        bound may be None; a row without the year a bound reads is outside it), all
        as question q's rows. They stay sorted, so the statistics run unchanged on it;
        the names and their cached keys are shared."""
        keep = np.ones(rows.stop - rows.start, dtype=bool)
        if year_start is not None:
            keep &= self.arrays["year"][rows] >= year_start
        if year_end is not None:
            end = self.arrays["year_end"][rows]
            keep &= (end > 0) & (end <= year_end)  # 0: no YearEnd, so not inside
        # take() with positions: several times faster than a boolean mask per array.
        index = np.flatnonzero(keep) + rows.start
        arrays = {
            name: array.take(index)
            for name, array in self.arrays.items()
            if name != "question_offsets"
        }
        offsets = np.full(len(self.questions) + 1, index.size, dtype=np.int64)
        offsets[: q + 1] = 0
        arrays["question_offsets"] = offsets
        # Built once on this dataset, before the copy, so that every copy shares them.
        _ = self.group_keys, self.pair_keys
        view = copy.copy(self)
        view.arrays = arrays
        return view

    def vocabularies(self) -> dict[str, list[str]]:
        return {
            "questions": self.questions,
            "locations": self.locations,
            "categories": self.categories,
            "stratifications": self.stratifications,
            "question_ids": self.question_ids,
        }


def load_csv(path: str | os.PathLike[str]) -> Dataset:
    # Imported here, not at the top: workers import this module for Dataset only, and
    # pandas + pyarrow would add ~0.5 s to every worker's start.
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = os.fspath(path)
    header = _read_header(path)
    raw_names = {name.strip(): name for name in header}
    missing = [c for c in REQUIRED if c not in raw_names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(the header has {len(header)} column(s))"
        )
    wanted = [c for c in (*REQUIRED, *OPTIONAL, QUESTION_ID) if c in raw_names]
    ends_with_line_break = _check_bytes(path)
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding="utf8"),
            convert_options=pacsv.ConvertOptions(
                include_columns=[raw_names[c] for c in wanted],
                # Read values as text: "not a number" is a row to ignore, not an error.
                column_types={raw_names[c]: pa.string() for c in wanted},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataError(_describe_parse_error(path, header, exc)) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not ends_with_line_break:
        raise DataError(_no_final_line_break(path))
    table = table.rename_columns([name.strip() for name in table.column_names])
    if table.num_rows == 0:
        raise DataError(f"{path}: has a header but no data rows")
    return _encode(table, path)


def _read_header(path: str) -> list[str]:
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a CSV file")
    try:
        if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
            # a FIFO or a device: opening it could block start-up forever
            raise DataError(f"{path}: is not a regular file")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not UTF-8 text (is it a CSV file?)") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if not header or not any(cell.strip() for cell in header):
        raise DataError(f"{path}: is empty (no header line)")
    return header


def _describe_parse_error(path: str, header: list[str], exc: Exception) -> str:
    """Turn Arrow's message into one sentence with a line number.

    Arrow reports the bad row's text but not its line, so on this (rare) error path
    the file is scanned again with the csv module to find it.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            for row in reader:
                if len(row) != len(header) and reader.line_num > 1:
                    return (
                        f"{path}: line {reader.line_num} has {len(row)} field(s), "
                        f"the header has {len(header)}"
                    )
    except UnicodeDecodeError as err:
        return f"{path}: is not valid UTF-8 near byte {err.start}"
    except csv.Error as err:
        return f"{path}: is not valid CSV ({err})"
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{path}: cannot be parsed ({first_line})"


def _check_bytes(path: str) -> bool:
    """Two signs of a damaged file that field counts cannot show, found in one pass
    over a mapping of the file: NUL bytes (what a torn write or a crashed copy leaves;
    never in CSV text) raise at once; a last line without its line break (a download
    cut inside the last field) is returned as False and reported only if the file
    otherwise parses, so that a parse error, more precise, comes first."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return True
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                nul = data.find(b"\x00")
                if nul >= 0:
                    line = data[:nul].count(b"\n") + 1  # copies, on this error path only
                    raise DataError(f"{path}: line {line} has a NUL byte (a damaged file?)")
                return data[size - 1 : size] in (b"\n", b"\r")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _no_final_line_break(path: str) -> str:
    with open(path, "rb") as handle:
        line = handle.read().count(b"\n") + 1
    return (
        f"{path}: the last line ({line}) has no line break, so it may be cut short "
        "(a truncated download?); add one if the file is complete"
    )


def _codes(column: Any) -> tuple[np.ndarray, list[str]]:  # a pyarrow ChunkedArray
    """Integer codes into a sorted vocabulary, so code order equals name order."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column).unify_dictionaries()
    chunks = encoded.chunks
    vocabulary = chunks[0].dictionary.to_pylist() if chunks else []
    indices = (
        np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in chunks])
        if chunks
        else np.empty(0, np.int64)
    )
    order = sorted(range(len(vocabulary)), key=vocabulary.__getitem__)
    rank = np.empty(len(vocabulary), dtype=np.int64)
    rank[order] = np.arange(len(vocabulary))
    return rank[indices], [vocabulary[i] for i in order]


def _narrow(codes: np.ndarray) -> np.ndarray:
    for dtype in (np.int8, np.int16, np.int32):
        # Headroom of one: statistics look up code + 1 (the end of a location's run).
        if codes.size == 0 or (
            codes.min() >= np.iinfo(dtype).min and codes.max() < np.iinfo(dtype).max
        ):
            return codes.astype(dtype)
    return codes


def release_memory() -> None:
    """Give the loader's temporary memory back to the OS (pyarrow's pool and malloc
    keep freed memory otherwise: ~300 MB of a parent that loaded 1M rows)."""
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the memory is reused, just not returned


def _encode(table: Any, path: str) -> Dataset:  # a pyarrow Table
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    codes, vocab = {}, {}
    for name in CODED:
        codes[name], vocab[name] = _codes(table.column(name))
    values = pd.to_numeric(table.column(VALUE).to_pandas(), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )

    def number(column: str) -> np.ndarray:
        """An optional column as float64, NaN where empty, absent or not a number."""
        if column not in table.column_names:
            return np.full(len(values), np.nan)
        text = table.column(column)
        floats: np.ndarray  # pyarrow and pandas are untyped: their results are Any
        try:  # Arrow's own parser: ~15x faster than pandas when every cell is a number
            empty = pc.equal(text, "")
            floats = pc.cast(
                pc.if_else(empty, pa.scalar(None, pa.string()), text), pa.float64()
            ).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # some cell is not a number ("~", "n/a"): coerce to NaN
            floats = pd.to_numeric(text.to_pandas(), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        return floats

    def whole(column: str) -> np.ndarray:
        """A year column as integers; 0 where a cell is empty or not a plausible year."""
        years = number(column)
        return np.where((years > 0) & (years < 10_000), years, 0).astype(np.int64)

    year = whole(YEAR)
    year_end = whole(YEAR_END) if YEAR_END in table.column_names else year
    question_ids: list[str] = []
    if QUESTION_ID in table.column_names:
        ids = table.column(QUESTION_ID).to_numpy(zero_copy_only=False)
        _, first = np.unique(codes[QUESTION], return_index=True)  # a row of each question
        question_ids = [str(ids[row]).strip() for row in first]
    keep = np.isfinite(values)
    order = np.lexsort(
        (
            codes[STRATIFICATION][keep],
            codes[CATEGORY][keep],
            codes[LOCATION][keep],
            codes[QUESTION][keep],
        )
    )
    kept = np.flatnonzero(keep)[order]
    n_cat, n_strat = len(vocab[CATEGORY]), len(vocab[STRATIFICATION])
    location = codes[LOCATION][kept]
    category = codes[CATEGORY][kept]
    stratification = codes[STRATIFICATION][kept]
    question = codes[QUESTION][kept]
    arrays = {
        "value": values[kept],
        # The smallest integer types that hold the codes: 19 bytes a row instead of 48,
        # which is what keeps a 1M-row dataset small in every process.
        "location": _narrow(location),
        "category": _narrow(category),
        "stratification": _narrow(stratification),
        # One code per (location, category, stratification) triple, in triple order.
        "group": _narrow((location * n_cat + category) * n_strat + stratification),
        "year": _narrow(year[kept]),
        "year_end": _narrow(year_end[kept]),
        **{name: number(column)[kept] for column, name in MEASURES},
        "question_offsets": np.searchsorted(question, np.arange(len(vocab[QUESTION]) + 1)).astype(
            np.int64
        ),
    }
    return Dataset(
        arrays=arrays,
        questions=vocab[QUESTION],
        locations=vocab[LOCATION],
        categories=vocab[CATEGORY],
        stratifications=vocab[STRATIFICATION],
        question_ids=question_ids,
        file=path,
        rows_read=table.num_rows,
        rows_ignored=int(table.num_rows - keep.sum()),
        year_end_column=YEAR_END in table.column_names,
    )
