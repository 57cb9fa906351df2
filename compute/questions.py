"""The nine BRFSS questions and which direction of their value is "good" (docs/api.md, "Data")."""

LOWER_IS_BETTER = (
    "Percent of adults aged 18 years and older who have an overweight classification",
    "Percent of adults aged 18 years and older who have obesity",
    "Percent of adults who engage in no leisure-time physical activity",
    "Percent of adults who report consuming fruit less than one time daily",
    "Percent of adults who report consuming vegetables less than one time daily",
)

HIGHER_IS_BETTER = (
    "Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic "
    "physical activity or 75 minutes a week of vigorous-intensity aerobic activity "
    "(or an equivalent combination)",
    "Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic "
    "physical activity or 75 minutes a week of vigorous-intensity aerobic physical activity "
    "and engage in muscle-strengthening activities on 2 or more days a week",
    "Percent of adults who achieve at least 300 minutes a week of moderate-intensity aerobic "
    "physical activity or 150 minutes a week of vigorous-intensity aerobic activity "
    "(or an equivalent combination)",
    "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week",
)

LOWER = "lower"
HIGHER = "higher"


def direction(question: str) -> str | None:
    """ "lower" or "higher" (the better end), or None for a question outside both lists."""
    if question in LOWER_IS_BETTER:
        return LOWER
    if question in HIGHER_IS_BETTER:
        return HIGHER
    return None
