"""An independent, deliberately naive implementation of the statistics (docs/api.md and
docs/analytics.md): plain Python loops over the CSV's rows, no numpy, no shared code
with compute/. The tests check that the server agrees with it to 1e-9."""

from __future__ import annotations

import csv
import math

LOWER = {
    "Percent of adults aged 18 years and older who have an overweight classification",
    "Percent of adults aged 18 years and older who have obesity",
    "Percent of adults who engage in no leisure-time physical activity",
    "Percent of adults who report consuming fruit less than one time daily",
    "Percent of adults who report consuming vegetables less than one time daily",
}
HIGHER = {
    "Percent of adults who achieve at least 150 minutes a week of moderate-intensity "
    "aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic activity "
    "(or an equivalent combination)",
    "Percent of adults who achieve at least 150 minutes a week of moderate-intensity "
    "aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic physical "
    "activity and engage in muscle-strengthening activities on 2 or more days a week",
    "Percent of adults who achieve at least 300 minutes a week of moderate-intensity "
    "aerobic physical activity or 150 minutes a week of vigorous-intensity aerobic activity "
    "(or an equivalent combination)",
    "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week",
}


Z95 = 1.959964


def _number(text):
    """A finite float, or None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _year(text):
    value = _number(text)
    return int(value) if value is not None and 0 < value < 10_000 else None


class Reference:
    """rows: (question, location, category, stratification, value, YearStart, YearEnd,
    Sample_Size, low, high), the last five None where the cell is empty or invalid."""

    def __init__(self, path, rows=None):
        if rows is not None:
            self.rows = rows
            return
        self.rows = []
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader)]
            for cells in reader:
                row = dict(zip(header, cells))
                value = _number(row["Data_Value"])
                if value is None:
                    continue
                start = _year(row.get("YearStart"))
                end = _year(row["YearEnd"]) if "YearEnd" in row else start
                self.rows.append(
                    (
                        row["Question"],
                        row["LocationDesc"],
                        row["StratificationCategory1"],
                        row["Stratification1"],
                        value,
                        start,
                        end,
                        _number(row.get("Sample_Size")),
                        _number(row.get("Low_Confidence_Limit")),
                        _number(row.get("High_Confidence_Limit")),
                    )
                )
        self.questions = sorted({r[0] for r in self.rows})

    def years(self):
        return sorted({y for r in self.rows for y in r[5:7] if y is not None})

    def within(self, year_start=None, year_end=None):
        """The reference over the rows inside an inclusive year range."""
        return Reference(
            None,
            [
                r
                for r in self.rows
                if (year_start is None or (r[5] is not None and r[5] >= year_start))
                and (year_end is None or (r[6] is not None and r[6] <= year_end))
            ],
        )

    def _mean(self, keep) -> float | None:
        total, count = 0.0, 0
        for row in self.rows:
            if keep(row):
                total += row[4]
                count += 1
        return total / count if count else None

    def states_mean(self, question):
        states = sorted({r[1] for r in self.rows if r[0] == question})
        means = {s: self._mean(lambda r, s=s: r[0] == question and r[1] == s) for s in states}
        return dict(sorted(means.items(), key=lambda item: (item[1], item[0])))

    def state_mean(self, question, state):
        return {state: self._mean(lambda r: r[0] == question and r[1] == state)}

    def best5(self, question):
        ordered = list(self.states_mean(question).items())
        if question in HIGHER:
            ordered.sort(key=lambda item: (-item[1], item[0]))
        return dict(ordered[:5])

    def worst5(self, question):
        ordered = list(self.states_mean(question).items())
        if question in LOWER:
            ordered.sort(key=lambda item: (-item[1], item[0]))
        return dict(ordered[:5])

    def global_mean(self, question):
        return {"global_mean": self._mean(lambda r: r[0] == question)}

    def diff_from_mean(self, question):
        overall = self.global_mean(question)["global_mean"]
        return {s: overall - m for s, m in self.states_mean(question).items()}

    def state_diff_from_mean(self, question, state):
        mean = self.state_mean(question, state)[state]
        overall = self.global_mean(question)["global_mean"]
        return {state: None if mean is None else overall - mean}

    def mean_by_category(self, question):
        groups = sorted({(r[1], r[2], r[3]) for r in self.rows if r[0] == question})
        return {
            str(g): self._mean(lambda r, g=g: r[0] == question and (r[1], r[2], r[3]) == g)
            for g in groups
        }

    def state_mean_by_category(self, question, state):
        groups = sorted({(r[2], r[3]) for r in self.rows if r[0] == question and r[1] == state})
        return {
            state: {
                str(g): self._mean(
                    lambda r, g=g: r[0] == question and r[1] == state and (r[2], r[3]) == g
                )
                for g in groups
            }
        }

    def state_trend(self, question, state):
        years = sorted(
            {r[5] for r in self.rows if r[0] == question and r[1] == state and r[5] is not None}
        )
        return {
            state: {
                str(y): self._mean(lambda r, y=y: r[0] == question and r[1] == state and r[5] == y)
                for y in years
            }
        }

    def _estimate(self, question, state):
        n_sum = nv_sum = variance = 0.0
        count = 0
        for r in self.rows:
            n, low, high = r[7], r[8], r[9]
            if (
                r[0] == question
                and r[1] == state
                and r[2] == "Total"
                and n is not None
                and n > 0
                and low is not None
                and high is not None
            ):
                s = (high - low) / (2 * Z95)
                n_sum += n
                nv_sum += n * r[4]
                variance += n * n * s * s
                count += 1
        if count == 0:
            return None
        estimate = nv_sum / n_sum
        se = math.sqrt(variance) / n_sum
        return {
            "estimate": estimate,
            "ci_low": estimate - Z95 * se,
            "ci_high": estimate + Z95 * se,
            "rows": count,
            "sample_size": n_sum,
        }

    def state_estimate(self, question, state):
        return {state: self._estimate(question, state)}

    def states_estimate(self, question):
        states = sorted({r[1] for r in self.rows if r[0] == question})
        answers = {s: self._estimate(question, s) for s in states}
        return dict(
            sorted(
                answers.items(),
                key=lambda item: (
                    item[1] is None,
                    item[1]["estimate"] if item[1] else 0.0,
                    item[0],
                ),
            )
        )

    def answer(self, endpoint, question, state=None, year_start=None, year_end=None):
        ref = self if year_start is None and year_end is None else self.within(year_start, year_end)
        method = getattr(ref, endpoint)
        return method(question, state) if endpoint.startswith("state_") else method(question)


def assert_close(got, expected, tolerance=1e-9, where="answer"):
    """Same keys in the same order, numbers within tolerance, None where None."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), f"{where}: {got!r} is not an object"
        assert list(got) == list(expected), f"{where}: keys/order differ"
        for key in expected:
            assert_close(got[key], expected[key], tolerance, f"{where}[{key!r}]")
    elif expected is None:
        assert got is None, f"{where}: expected null, got {got!r}"
    else:
        assert got is not None and abs(got - expected) <= tolerance, (
            f"{where}: {got!r} != {expected!r}"
        )
