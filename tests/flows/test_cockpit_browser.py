"""The cockpit as people see it, in headless Chromium (Debian's `chromium`), on a running
unit: `prefect server start` (its UI) and `sidflows serve` with the approval page on.

- A clinician signs in through an authenticating proxy (a small one here, doing what
  oauth2-proxy does: it drops the browser's own X-Auth-Request-* headers, sets the
  user it authenticated, adds the shared secret, and connects from 127.0.0.2, the
  only address the page trusts), opens the waiting plan, approves it: the suspended
  pathway run resumes, the plan is active, the audit names the proven login.
- The same header sent straight to the page (not through the proxy) is refused (403).
- The coordinator's board in the Prefect UI: the day's work, what is stuck and the
  chairs, each ref linking to the child's plan artifact.

SIDFLOWS_SCREENSHOTS=DIR keeps the pages' screenshots there (the README's come from it).
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES
from processes import PrefectServer, Unit, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCTOR = "dr.proven@hospital.example"
SECRET = "proxy-shared-secret-for-the-test"
PROXY_SOURCE = "127.0.0.2"  # the proxy's own address: the page trusts it alone

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium for the browser tests (.ci/run)")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")


class AuthenticatingProxy:
    """What oauth2-proxy does in front of the page, for one signed-in user."""

    def __init__(self, upstream: str, user: str) -> None:
        self.upstream, self.user = upstream, user
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        client = httpx.Client(
            transport=httpx.HTTPTransport(local_address=PROXY_SOURCE), timeout=120
        )
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if not k.lower().startswith(("x-auth-request-", "x-forwarded-", "x-sidflows-"))
                    and k.lower() not in ("host", "content-length", "connection")
                }
                headers |= {
                    "X-Auth-Request-User": proxy.user,
                    "X-Sidflows-Proxy-Secret": SECRET,
                    "X-Forwarded-Proto": "http",
                }
                answer = client.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body
                )
                self.send_response(answer.status_code)
                for k, v in answer.headers.multi_items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward  # noqa: N815 (http.server's names)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unit]:
    tmp = tmp_path_factory.mktemp("cockpit")
    page_port = free_port()
    server = PrefectServer(tmp)
    running = Unit(
        tmp,
        server,
        {
            "SIDFLOWS_APPROVALS_WEB": "true",
            "SIDFLOWS_APPROVALS_LISTEN": f"127.0.0.1:{page_port}",
            "SIDFLOWS_APPROVALS_PROXIES": PROXY_SOURCE,
            "SIDFLOWS_APPROVALS_PROXY_SECRET": SECRET,
            "SIDFLOWS_UI_URL": server.api.removesuffix("/api"),
        },
    )
    running.env["PAGE"] = f"http://127.0.0.1:{page_port}"
    try:
        server.start()
        running.upgrade_store()
        running.start_serve()
        wait_for(
            "the approval page",
            lambda: httpx.get(f"{running.env['PAGE']}/health", timeout=5).status_code == 403,
            every=0.5,
        )
        yield running
    finally:
        running.stop()
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def refer(unit: Unit, ref: str) -> None:
    document = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())
    document["patient"]["ref"] = ref
    document["identity"] = {"name": f"Secret Name {ref}", "mrn": f"SECRET-MRN-{ref}"}
    path = unit.tmp / f"{ref}.json"
    path.write_text(json.dumps(document))
    done = unit.cli("refer", str(path))
    assert done.returncode == 0, done.stderr
    wait_for(f"{ref}'s pathway waiting for the clinician", lambda: unit.paused(ref), every=1)


def screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    keep = os.environ.get("SIDFLOWS_SCREENSHOTS")
    path = Path(keep) if keep else Path(os.environ.get("TMPDIR", "/tmp")) / "sidflows-shots"
    path.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path / name), full_page=full_page)


def audit(unit: Unit, ref: str, action: str) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(unit.tmp / "store.db") as conn:
        rows = conn.execute(
            "SELECT actor, after FROM auditentry WHERE patient_ref = ? AND action = ?",
            (ref, action),
        ).fetchall()
    return [(actor, json.loads(after)) for actor, after in rows]


def test_a_clinician_signed_in_through_the_proxy_approves(unit: Unit, browser: Any) -> None:
    ref = "WEB-1"
    refer(unit, ref)
    proxy = AuthenticatingProxy(unit.env["PAGE"], DOCTOR)
    try:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        # the browser's own attempt to claim another user is dropped by the proxy
        page.set_extra_http_headers({"X-Auth-Request-User": "someone.else"})
        page.goto(proxy.url + "/")
        assert "Signed in as Dr Proven" in page.inner_text("#signed-in")
        page.click(f"text={ref}")
        page.wait_for_selector("#decisions")
        assert f"{ref}: plan v1 waits for you" in page.inner_text("h1")
        assert page.locator("#decisions tr").count() > 2
        assert "Secret Name" not in page.content()
        assert "SECRET-MRN" not in page.content()
        screenshot(page, "approval-page.png", full_page=False)
        page.click("#approve")
        page.wait_for_selector("#message")
        assert page.inner_text("#message") == "plan v1 approved by Dr Proven"
        assert page.inner_text("#resumed") == "the pathway run resumes with the answer"
        wait_for(
            "the plan active",
            lambda: unit.peek(ref)["plan_status"] == "active",
            every=1,
        )
        page.close()
    finally:
        proxy.close()
    assert audit(unit, ref, "plan v1 approved") == [
        (
            "Dr Proven",
            {
                "note": None,
                "identity": "proven",
                "login": DOCTOR,
                "header": "X-Auth-Request-User",
                "via": "approval page",
            },
        )
    ]


def test_a_spoofed_header_not_from_the_proxy_is_refused(unit: Unit, browser: Any) -> None:
    ref = "WEB-2"
    refer(unit, ref)
    context = browser.new_context(
        extra_http_headers={"X-Auth-Request-User": DOCTOR, "X-Sidflows-Proxy-Secret": SECRET}
    )
    page = context.new_page()
    answer = page.goto(unit.env["PAGE"] + f"/plans/{ref}")
    assert answer is not None
    assert answer.status == 403
    assert "refused: not from the unit's authenticating proxy" in page.inner_text("#error")
    context.close()
    assert unit.paused(ref)
    assert audit(unit, ref, "plan v1 approved") == []


def test_the_board_in_the_prefect_ui(unit: Unit, browser: Any) -> None:
    """Approved by the typed path; one waiting; the sweep on the first session's day
    publishes the board; its rows are on the UI's pages and link to the plans."""
    for ref in ("BRD-1", "BRD-2"):
        refer(unit, ref)
    done = unit.cli("approve", "BRD-1", "--by", "Dr Test")
    assert done.returncode == 0, done.stderr
    wait_for("BRD-1 active", lambda: unit.peek("BRD-1")["plan_status"] == "active", every=1)
    first = min(
        i["due"]
        for i in unit.show("BRD-1")["items"]
        if i["kind"] == "ig_session" and i["route"] == "iv"
    )
    done = unit.cli("sweep", "--date", first)
    assert done.returncode == 0, done.stderr
    ui = unit.server.api.removesuffix("/api")

    def newest(key: str) -> str:
        """The UI's page of the newest artifact under ``key`` (the key's page is its history)."""
        found = unit.post(
            "/artifacts/latest/filter",
            {"artifacts": {"key": {"any_": [key]}}, "sort": "KEY_ASC", "limit": 1},
        )
        return f"{ui}/artifacts/artifact/{found[0]['latest_id']}"

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(newest("board-today"))
    page.get_by_text(f"The unit's work on {first}").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "Day unit: " in body
    assert "BRD-1" in body
    assert "first infusion" in body
    screenshot(page, "board-today.png")
    page.goto(newest("board-stuck"))
    page.get_by_text(f"What is stuck on {first}").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "Plans waiting for a clinician: " in body
    assert "BRD-2" in body
    screenshot(page, "board-stuck.png")
    # each ref links to the child's newest plan artifact
    link = page.get_by_role("link", name="BRD-2").first
    assert link.get_attribute("href") == newest("plan-brd-2")
    page.goto(link.get_attribute("href"))  # the UI opens a markdown link in a new tab
    page.get_by_text("Care plan BRD-2").first.wait_for(timeout=60_000)
    text = page.content()
    assert "Secret Name" not in text
    assert "SECRET-MRN" not in text
    page.goto(newest("board-chairs"))
    page.get_by_text("Day-unit chairs, four weeks").first.wait_for(timeout=60_000)
    day = dt.date.fromisoformat(first)
    assert f"{day.strftime('%a')} {first}" in page.inner_text("body")
    screenshot(page, "board-chairs.png")
    # the key's page: the newest beside its history
    page.goto(f"{ui}/artifacts/key/board-today")
    page.get_by_text("Created board-today").first.wait_for(timeout=60_000)
    page.close()
