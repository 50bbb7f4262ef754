"""The SSO approval page (flows/approvals_page.py, docs/sso.md) in this process: who is let
in (the proxy's address, its secret, the header, the roster's login), CSRF, stale pages,
the answer audited as proven, and refs only. The page in a real browser, behind a
proxy, on a running unit: tests/flows/test_cockpit_browser.py."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from flows.approvals_page import CSRF_COOKIE, SECRET_HEADER, create_app
from sidflows import service
from sidflows.settings import Settings
from sidflows.store import db
from sidflows.store.models import AuditEntry
from sidflows.unit import Unit
from tests.store.support import iv_child, refer_and_propose

DOCTOR = "dr.proven@hospital.example"
NURSE = "nurse.proven"
USER = "X-Auth-Request-User"
PROXY = ("127.0.0.1", 40000)


def proposed_child(ref: str) -> str:
    return refer_and_propose(iv_child(ref))


def client(client_address: tuple[str, int] = PROXY, **settings: Any) -> TestClient:
    return TestClient(
        create_app(Settings(approvals_web=True, **settings)),
        client=client_address,
        follow_redirects=False,
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page
    return found.group(1)


def text(answer: Any) -> str:
    """The page as a reader sees it: entities decoded."""
    return html.unescape(answer.text)


def audit(ref: str) -> list[AuditEntry]:
    with db.session_scope() as session:
        return list(
            session.exec(
                select(AuditEntry).where(AuditEntry.patient_ref == ref).order_by(col(AuditEntry.id))
            )
        )


@pytest.fixture
def child(store: str) -> str:
    return proposed_child("SSO-1")


# ----------------------------------------------------------------------------- who gets in


@pytest.mark.parametrize(
    ("address", "settings", "headers"),
    [
        # a spoofed header from an address that is not the proxy's
        (("10.1.2.3", 5000), {}, {USER: DOCTOR}),
        # the proxy on another loopback address than the one configured
        (("127.0.0.1", 5000), {"approvals_proxies": "127.0.0.2"}, {USER: DOCTOR}),
        # a secret is configured: the right address without it, or with a wrong one
        (("127.0.0.1", 5000), {"approvals_proxy_secret": "s3cret"}, {USER: DOCTOR}),
        (
            ("127.0.0.1", 5000),
            {"approvals_proxy_secret": "s3cret"},
            {USER: DOCTOR, SECRET_HEADER: "guess"},
        ),
    ],
)
def test_anything_but_the_proxy_is_refused_before_any_page(
    child: str, address: tuple[str, int], settings: dict[str, Any], headers: dict[str, str]
) -> None:
    web = client(address, **settings)
    for path in ("/", f"/plans/{child}", "/health"):
        answer = web.get(path, headers=headers)
        assert answer.status_code == 403, (path, answer.text)
        assert "not from the unit's authenticating proxy" in text(answer)
    posted = web.post(f"/plans/{child}", headers=headers, data={"decision": "approve"})
    assert posted.status_code == 403
    assert [a.action for a in audit(child) if "approv" in a.action] == []


def test_the_proxy_with_its_secret_gets_in(child: str) -> None:
    web = client(approvals_proxy_secret="s3cret", approvals_proxies="127.0.0.0/8")
    answer = web.get("/", headers={USER: DOCTOR, SECRET_HEADER: "s3cret"})
    assert answer.status_code == 200
    assert child in text(answer)


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({}, "the proxy sent no X-Auth-Request-User"),
        ({USER: "someone.else@hospital.example"}, "is no login in the unit's staff roster"),
        # a roster *name* is not a login: the proof is the login the proxy sends
        ({USER: "Dr Proven"}, "is no login in the unit's staff roster"),
        # the configured header only: another one the proxy may pass through counts for nothing
        ({"X-Forwarded-User": DOCTOR}, "the proxy sent no X-Auth-Request-User"),
    ],
)
def test_the_user_must_be_a_login_of_the_roster(
    child: str, headers: dict[str, str], says: str
) -> None:
    answer = client().get(f"/plans/{child}", headers=headers)
    assert answer.status_code == 403
    assert says in text(answer)


def test_the_header_is_the_one_configured(child: str) -> None:
    web = client(approvals_user_header="X-Auth-Request-Email")
    assert web.get("/", headers={"X-Auth-Request-Email": DOCTOR}).status_code == 200
    assert web.get("/", headers={USER: DOCTOR}).status_code == 403


# ----------------------------------------------------------------------------- the pages


def test_the_pages_show_the_proposal_and_refs_only(child: str) -> None:
    web = client()
    index = web.get("/", headers={USER: DOCTOR})
    assert index.status_code == 200
    assert "Signed in as <strong>Dr Proven</strong>" in text(index)
    assert f'href="/plans/{child}"' in text(index)
    page = web.get(f"/plans/{child}", headers={USER: DOCTOR})
    assert page.status_code == 200
    assert "plan v1 waits for you" in text(page)
    assert 'id="approve"' in text(page)
    assert 'id="reject"' in text(page)
    # the decisions with their sources, the items with their keys
    assert "IG replacement" in text(page) or "immunoglobulin" in text(page).lower()
    assert "ig_session:" in text(page)
    # no identity: the referral's name and record number stay in the store
    assert "Child SSO-1" not in text(page)
    assert "MRN-SSO-1" not in text(page)
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "samesite=strict" in page.headers["set-cookie"].lower()


def test_identity_only_with_its_setting(child: str) -> None:
    page = client(approvals_show_identity=True).get(f"/plans/{child}", headers={USER: DOCTOR})
    assert "Child SSO-1" in text(page)
    assert "MRN-SSO-1" in text(page)


def test_a_nurse_sees_the_plan_and_cannot_answer_it(child: str) -> None:
    web = client()
    page = web.get(f"/plans/{child}", headers={USER: NURSE})
    assert page.status_code == 200
    assert "only a clinician can answer this plan" in text(page)
    assert 'id="approve"' not in text(page)
    posted = web.post(
        f"/plans/{child}",
        headers={USER: NURSE},
        data={"decision": "approve", "version": "1", "csrf": csrf_of(page.text)},
    )
    assert posted.status_code == 403
    assert "is not a clinician" in text(posted)
    refused = [a for a in audit(child) if a.action == "approval refused"]
    assert [(a.actor, (a.after or {}).get("identity")) for a in refused] == [
        (f"login {NURSE}", "proven")
    ]


def test_an_unknown_or_answered_ref_is_not_found(child: str) -> None:
    web = client()
    assert web.get("/plans/NOPE-1", headers={USER: DOCTOR}).status_code == 404


# ----------------------------------------------------------------------------- CSRF, stale pages


def test_a_post_without_the_pages_token_is_refused(child: str) -> None:
    web = client()
    page = web.get(f"/plans/{child}", headers={USER: DOCTOR})
    token = csrf_of(page.text)
    for data, cookies in (
        ({"decision": "approve", "version": "1"}, True),  # no token
        ({"decision": "approve", "version": "1", "csrf": "0" * 64}, True),  # a forged one
        ({"decision": "approve", "version": "1", "csrf": token}, False),  # another browser
    ):
        other = client()
        if cookies:
            other.cookies.set(CSRF_COOKIE, web.cookies[CSRF_COOKIE])
        answer = other.post(f"/plans/{child}", headers={USER: DOCTOR}, data=data)
        assert answer.status_code == 403, answer.text
        assert "CSRF" in text(answer)
    # a token is the login's: another user's page cannot answer under this one
    nurse_page = web.get(f"/plans/{child}", headers={USER: NURSE})
    answer = web.post(
        f"/plans/{child}",
        headers={USER: DOCTOR},
        data={"decision": "approve", "version": "1", "csrf": csrf_of(nurse_page.text)},
    )
    assert answer.status_code == 403
    assert not [a for a in audit(child) if a.action.startswith("plan v1 approved")]


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        ({"decision": "approve", "version": "7"}, 409, "plan v1 waits now"),
        ({"decision": "launch", "version": "1"}, 400, "decision: one of approve, modify, reject"),
        ({"decision": "reject", "version": "1"}, 400, "note: say why"),
        ({"decision": "modify", "version": "1"}, 400, "remove: tick the items"),
    ],
)
def test_a_bad_or_stale_answer_names_what_is_wrong(
    child: str, data: dict[str, str], status: int, says: str
) -> None:
    web = client()
    token = csrf_of(web.get(f"/plans/{child}", headers={USER: DOCTOR}).text)
    answer = web.post(f"/plans/{child}", headers={USER: DOCTOR}, data={**data, "csrf": token})
    assert answer.status_code == status, answer.text
    assert says in text(answer)
    assert not [a for a in audit(child) if "approved" in a.action or "rejected" in a.action]


def test_settings_are_checked_naming_the_setting() -> None:
    for field, value, says in (
        ("approvals_listen", "8470", "host:port"),
        ("approvals_proxies", "proxy.local", "no address or network"),
        ("approvals_user_header", "X-A, X-B", "must name one header"),
    ):
        with pytest.raises(ValueError, match=says):
            Settings.model_validate({field: value})


# ----------------------------------------------------------------------------- the answer


@pytest.mark.prefect
def test_an_approval_is_audited_as_proven_and_activates_the_plan(
    child: str, prefect_server: str
) -> None:
    """No pathway run waits (the plan was proposed here): the activation runs in serve's
    process, as `sidflows approve` does; the audit names the login the proxy proved."""
    web = client()
    token = csrf_of(web.get(f"/plans/{child}", headers={USER: DOCTOR}).text)
    answer = web.post(
        f"/plans/{child}",
        headers={USER: DOCTOR},
        data={"decision": "approve", "version": "1", "csrf": token, "note": "as proposed"},
    )
    assert answer.status_code == 303, answer.text
    done = web.get(answer.headers["location"], headers={USER: DOCTOR})
    assert "plan v1 approved by Dr Proven" in text(done)
    approved = [a for a in audit(child) if a.action == "plan v1 approved"]
    assert [(a.actor, a.after) for a in approved] == [
        (
            "Dr Proven",
            {
                "note": "as proposed",
                "identity": "proven",
                "login": DOCTOR,
                "header": USER,
                "via": "approval page",
            },
        )
    ]
    # the same answer again: the plan waits no more
    again = web.post(
        f"/plans/{child}",
        headers={USER: DOCTOR},
        data={"decision": "approve", "version": "1", "csrf": token},
    )
    assert again.status_code == 409
    assert json.dumps([a.action for a in audit(child)]).count("plan v1 approved") == 1


def test_a_typed_approval_is_audited_as_typed(child: str) -> None:
    service.decide(child, unit=Unit(), decision="approve", by="Dr Test")
    approved = [a for a in audit(child) if a.action == "plan v1 approved"]
    assert [(a.actor, a.after) for a in approved] == [
        ("Dr Test", {"note": None, "identity": "typed"})
    ]


def test_a_proven_rejection_is_applied_once(child: str) -> None:
    """Rejected here; the pathway run resumed with the same answer changes nothing."""
    identity = {"identity": "proven", "login": DOCTOR}
    first = service.decide(
        child, unit=Unit(), decision="reject", by="ignored", note="no", identity=identity
    )
    assert (first.changed, first.message) == (True, "plan v1 rejected by Dr Proven")
    again = service.decide(child, unit=Unit(), decision="reject", by="Dr Proven", note="no")
    assert (again.changed, again.message) == (False, "plan v1 was already rejected")
    assert [a.action for a in audit(child)].count("plan v1 rejected") == 1
