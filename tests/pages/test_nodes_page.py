"""The nodes page with a metric history (MONGO_URL set) in Chromium: the charts are drawn by the server
as SVG. No MongoDB runs here, so the backend runs in this process (uvicorn on a real socket) with
mongomock as the metrics store's client; the history is what node sync writes."""

from __future__ import annotations

import datetime as dt
import os
import threading

import mongomock
import pytest
import uvicorn
from playwright.sync_api import expect

from conftest import wait_for
from openvle.db.engine import session_scope
from openvle.db.models import Node, utcnow
from pages.conftest import DESKTOP, PASSWORD
from test_backend import free_port

pytestmark = pytest.mark.browser
GIB = 1024**3


@pytest.fixture
def backend_with_history(clean, settings_env, monkeypatch):
    from openvle.backend.app import create_app
    from openvle.clients import metrics

    settings_env(MONGO_URL="mongodb://metrics.invalid:27017/openvle")
    shared = mongomock.MongoClient()
    monkeypatch.setattr(metrics, "client_factory", lambda *a, **k: shared)
    metrics._store.cache_clear()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the backend in this process to listen")
    yield f"http://127.0.0.1:{server.config.port}", metrics.get_metrics_store()
    server.should_exit = True
    thread.join(timeout=30)
    metrics._store.cache_clear()


def test_the_nodes_page_charts_each_nodes_history(backend_with_history, browser, shot):
    from openvle.accounts.users import create_user

    url, store = backend_with_history
    now = utcnow().replace(microsecond=0)
    with session_scope() as session:
        for name, running in (("pve1", 3), ("pve2", 0)):
            session.add(Node(name=name, status="online", cpu=0.5, maxcpu=8, mem=8 * GIB, maxmem=32 * GIB,
                             vms_running=running, vms_total=4, synced_at=now))
    # Six hours of node syncs of pve1, every 10 minutes, the last 5 minutes ago (so the last hour holds
    # exactly six, however long the test takes): CPU rising from 10 % to 45 %, memory at 25 %. None of pve2.
    store.record([{"node": "pve1", "time": now - dt.timedelta(minutes=355 - 10 * i), "status": "online",
                   "cpu": 0.1 + i * 0.01, "maxcpu": 8, "mem": 8 * GIB, "maxmem": 32 * GIB, "vms_running": i % 4,
                   "vms_total": 4} for i in range(36)])
    create_user("nodes-admin", "nodes-admin@uni.example", "admin", password=PASSWORD)

    context = browser.new_context(base_url=url, viewport=DESKTOP)
    context.set_default_timeout(15_000 * float(os.environ.get("OPENVLE_TEST_WAIT_SCALE", "3")))
    page = context.new_page()
    page.goto("/nodes")
    page.get_by_label("User name or email").fill("nodes-admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Nodes", exact=True)).to_be_visible()
    expect(page.locator("#node-pve1")).to_contain_text("8.0 of 32.0 GiB (25 %)")
    expect(page.locator("#node-pve1")).to_contain_text("3 / 4")

    load = page.get_by_role("img", name="pve1: CPU and memory use over the last 24 hours, in %")
    expect(load).to_be_visible()
    assert load.locator("polyline").count() == 2  # CPU and memory, each a line over time
    description = load.locator("desc").text_content()
    assert "CPU: from 10% to 45%, highest 45%" in description and "Memory: from 25% to 25%" in description
    expect(page.get_by_role("img", name="pve1: VMs over the last 24 hours")).to_be_visible()
    expect(page.locator("#charts-pve2")).to_contain_text("No readings in this time.")

    page.get_by_label("History of the last").select_option("1")
    page.get_by_role("button", name="Show").click()
    shown = page.get_by_role("img", name="pve1: CPU and memory use over the last 1 hour, in %")
    assert "CPU: from 40% to 45%" in shown.locator("desc").text_content()  # the last hour's 6 syncs
    shot(page, "nodes")
    # Nothing came from elsewhere: every request went to this backend.
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    expect(shown).to_be_visible()
    assert requests and all(r.startswith(url) for r in requests), requests
    context.close()
