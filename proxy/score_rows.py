"""protocol.score_rows: runCostFunctions as [host, score, unit] rows, one per unit and host.

With 3-element rows the engine maps each row's unit name to that unit's GUID and applies the
policy's factor for it itself, ranking each unit separately under its RankSelector
(docs/ENGINE_PROTOCOL.md §2.4): so the scores sent are the units' own, unweighted, or the
factor would count twice.  Engines before the per-unit selector step (4.1) reject any row
that is not exactly 2 elements, so the setting is off by default.
"""

from .protocol import _checked, clamp32, combine_scores, score_result


def unit_rows(hosts, outcomes, record):
    """[[host, score, unit name]] for each unit that worked, every host sent once per unit.

    outcomes: [(name, weight, value)].  A host a unit left out gets its worst score, as in the
    summed form.  When no unit worked there is nothing per unit to send: the summed form's
    rows (all 0, the failures in `record`) keep the answer one every engine parses.
    """
    rows = []
    for name, _weight, value in outcomes:  # the engine applies the factor itself
        scores = _checked(name, value, score_result, hosts, record)
        if scores is not None:
            rows += [[h, clamp32(scores[h]), name] for h in hosts]
    return rows if rows or not hosts else combine_scores(hosts, [], record)
