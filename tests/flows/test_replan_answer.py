"""What `treatment-change` and `lab-result` say when serve's pass took their intent first.

The command stores the change and its re-plan intent in one transaction, then carries
the intent out; serve's every-minute pass may claim it in between and start the run
itself. The command then says the re-plan was requested, not that there was nothing
to do (seen in the end-to-end test on a loaded machine).
"""

from __future__ import annotations

import datetime as dt
import json

from conftest import EXAMPLES
from processes import PREDNISOLONE_CHANGE

from flows import orchestrator, runtime
from sidflows import service
from sidflows.store import db
from sidflows.store import intents as store_intents


def _taken_by_serve(ref: str) -> None:
    """What serve's pass leaves: the child's pending intents done, with a run id."""
    with db.session_scope() as session:
        for intent in store_intents.waiting(session=session, ref=ref):
            store_intents.done(
                session=session,
                intent_id=intent.id,
                run_id="00000000-0000-0000-0000-000000000001",
                now=dt.datetime.now(dt.UTC),
            )


def test_a_change_whose_intent_serve_took_first_says_the_re_plan_was_requested(
    store: str,
) -> None:
    document = (EXAMPLES / "all-after-maintenance.json").read_text()
    ref = service.refer(document, unit=runtime.unit(), actor="test").ref
    _taken_by_serve(ref)  # the pathway's intent, out of the way
    changes = service.record_treatment_change(ref, json.dumps(PREDNISOLONE_CHANGE), actor="t")
    assert changes, "a new change"
    _taken_by_serve(ref)
    said = orchestrator.OnServer().replan(ref, "treatment change", new=True)
    assert said == "re-plan requested (serve's pass started its run first)"
    # The same change recorded again stores nothing new: nothing more to do, as before.
    again = service.record_treatment_change(ref, json.dumps(PREDNISOLONE_CHANGE), actor="t")
    assert not again
    said = orchestrator.OnServer().replan(ref, "treatment change", new=False)
    assert said == "the re-plan was already carried out (nothing more to do)"


def test_a_change_back_to_an_earlier_record_is_a_re_plan_of_its_own(store: str) -> None:
    """A, then B, then A again: three changes of the record, three re-plan intents. With a
    key of the document alone the third was the first's duplicate, and no re-plan ran."""
    document = (EXAMPLES / "all-after-maintenance.json").read_text()
    ref = service.refer(document, unit=runtime.unit(), actor="test").ref
    _taken_by_serve(ref)
    stopped = {
        **PREDNISOLONE_CHANGE,
        "date": "2026-12-01",
        "treatments": [{**PREDNISOLONE_CHANGE["treatments"][0], "end": "2026-12-01"}],
    }
    keys: list[str] = []
    for change in (PREDNISOLONE_CHANGE, stopped, PREDNISOLONE_CHANGE):
        assert service.record_treatment_change(ref, json.dumps(change), actor="t")
        with db.session_scope() as session:
            waiting = store_intents.waiting(session=session, ref=ref)
            assert [i.kind for i in waiting] == ["replan"], "each change stores its re-plan"
            keys.append(waiting[0].key)
        _taken_by_serve(ref)
    assert len(set(keys)) == 3
    # The same change once more changes nothing: no intent, nothing to run.
    assert not service.record_treatment_change(ref, json.dumps(PREDNISOLONE_CHANGE), actor="t")
    with db.session_scope() as session:
        assert store_intents.waiting(session=session, ref=ref) == []
