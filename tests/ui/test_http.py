"""The view's HTTP layer, through an ASGI client, on a SQLite store that real workflows filled
(``_workflows.py``) while a runtime keeps running for the actions' round trips."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import duro
from duro._ui import UiOptions, create_app
from duro.providers import Provider

from ._workflows import BROKEN, TOUR, WAITING, options, registry
from ._workflows import fill as fill_store

pytestmark = pytest.mark.anyio


@dataclass
class World:
    store: Provider
    client: duro.Client
    http: httpx.AsyncClient

    async def page(self, url: str, status: int = 200, **headers: str) -> str:
        response = await self.http.get(url, headers=headers)
        assert response.status_code == status, response.text[:2000]
        return response.text

    async def form_key(self, instance_id: str) -> str:
        html = await self.page(f"/instances/{instance_id}")
        found = re.search(r'name="form_key" value="([^"]+)"', html)
        assert found is not None
        return found[1]

    async def post(self, url: str, data: dict[str, str]) -> httpx.Response:
        return await self.http.post(url, data=data)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = duro.SqliteProvider(tmp_path / "ui.db")
    async with duro.Runtime(store, registry, options=options()):
        await fill_store(store)
        app = create_app(store, UiOptions(store_label="ui.db", counts_every=0))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield World(store, duro.Client(store), http)


NEWEST_FIRST = [*reversed(WAITING), f"{TOUR}-child", BROKEN, TOUR]
"""The child starts when its parent's turn runs, after the broken order was started."""


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-instance="([^"]+)"', html)


def lanes(html: str) -> list[dict[str, str]]:
    """The timeline's lanes with their data attributes and the outcomes of their bars."""
    found = []
    for match in re.finditer(
        r'<div class="lane lane-(\w+)" data-kind="(\w+)" data-outcome="(\w*)" '
        r'data-label="([^"]*)" data-attempts="(\d+)">(.*?)</div>\s*</div>',
        html,
        re.S,
    ):
        found.append(
            {
                "kind": match[2],
                "outcome": match[3],
                "label": match[4],
                "attempts": match[5],
                "bars": " ".join(re.findall(r'data-outcome="(\w+)"', match[6])),
                "marks": " ".join(re.findall(r'class="mark mark-(\w+)"', match[6])),
                "html": match[6],
            }
        )
    return found


# -- the list -------------------------------------------------------------------------------------


async def test_list_shows_every_instance_newest_first_with_counts_by_state(world: World) -> None:
    html = await world.page("/instances")

    assert row_ids(html) == NEWEST_FIRST
    counts = dict(re.findall(r'data-state="(\w+)"><span class="n">([\d,+]+)</span>', html))
    assert counts == {"pending": "0", "running": "3", "completed": "2", "failed": "1"}
    assert f'href="/instances/{TOUR}"' in html
    assert 'data-live-url="/instances"' in html


async def test_list_filters_by_state_name_prefix_and_creation_time(world: World) -> None:
    assert row_ids(await world.page("/instances?state=failed")) == [BROKEN]
    assert row_ids(await world.page("/instances?state=completed&state=failed")) == [
        f"{TOUR}-child",
        BROKEN,
        TOUR,
    ]
    assert row_ids(await world.page("/instances?name=child")) == [f"{TOUR}-child"]
    assert row_ids(await world.page("/instances?prefix=waiting-")) == list(reversed(WAITING))
    assert len(row_ids(await world.page("/instances?created_after=1h"))) == 6
    assert row_ids(await world.page("/instances?created_before=1h")) == []
    assert "No instance matches these filters." in await world.page("/instances?name=nothing")


async def test_list_pages_newest_first_with_a_continuation(world: World) -> None:
    seen: list[str] = []
    url: str | None = "/instances?limit=2"
    pages = 0
    while url is not None:
        html = await world.page(url)
        seen.extend(row_ids(html))
        pages += 1
        older = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = older[1].replace("&amp;", "&") if older else None
        if pages > 1:
            assert "« Newest" in html

    assert pages == 3
    assert seen == NEWEST_FIRST


async def test_bad_filters_and_stale_pages_answer_400_with_the_reason(world: World) -> None:
    html = await world.page("/instances?created_after=yesterday-ish", status=400)
    assert "created after" in html and "age like 30m" in html
    assert "unknown state" in await world.page("/instances?state=sleeping", status=400)
    assert "cannot list" in await world.page("/instances?after=not-a-cursor", status=400)


async def test_live_refresh_gets_only_the_changing_part_of_a_page(world: World) -> None:
    fragment = await world.page("/instances?state=running", **{"X-Duro-Partial": "1"})

    assert "<html" not in fragment and "<form" not in fragment
    assert row_ids(fragment) == list(reversed(WAITING))


# -- one instance ---------------------------------------------------------------------------------


async def test_instance_page_shows_state_payloads_kv_children_and_executions(
    world: World,
) -> None:
    html = await world.page(f"/instances/{TOUR}")

    assert 'id="state">completed<' in html
    assert "tour" in html and "Execution" in html
    assert f'href="/instances/{TOUR}?execution=1">1</a> · <b>2</b>' in html
    assert "&#34;approved_by&#34;: &#34;ana&#34;" in html  # the output, indented JSON
    assert re.search(r'<td class="mono">approved_by</td><td><pre[^>]*>&#34;ana&#34;</pre>', html)
    assert re.search(r'<td class="mono">rounds</td>', html)
    assert f'href="/instances/{TOUR}-child" title="sub-orchestration child"' in html
    assert "{&#34;stage&#34;:&#34;done&#34;}" in html  # custom status
    assert 'data-event="EventRaised"' in html and "name=go" in html

    child = await world.page(f"/instances/{TOUR}-child")
    assert f'<a class="mono" href="/instances/{TOUR}">{TOUR}</a>' in child  # its parent


async def test_an_earlier_execution_shows_its_own_history_and_what_it_continued_with(
    world: World,
) -> None:
    html = await world.page(f"/instances/{TOUR}?execution=1")

    assert "Continued as new with" in html
    assert 'data-event="ContinuedAsNew"' in html
    assert 'data-event="ActivityScheduled"' not in html


async def test_timeline_draws_retries_failures_children_timers_and_events(world: World) -> None:
    drawn = {lane["label"]: lane for lane in lanes(await world.page(f"/instances/{TOUR}"))}

    flaky = drawn["flaky"]
    assert (flaky["kind"], flaky["attempts"], flaky["outcome"]) == ("activity", "2", "completed")
    assert flaky["bars"] == "failed backoff completed"
    assert "gateway timed out (attempt 1)" in flaky["html"]
    assert drawn["work"]["bars"] == "completed"
    assert drawn["child"]["kind"] == "child"
    assert f'href="/instances/{TOUR}-child"' in drawn["child"]["html"]
    timers = [lane for lane in drawn.values() if lane["kind"] == "timer"]
    assert [lane["bars"] for lane in timers] == ["fired"]  # the back-off joined flaky's lane
    assert drawn["events"]["marks"] == "event"
    assert "event &#39;go&#39;" in drawn["events"]["html"]


async def test_failed_instance_shows_the_error_with_category_and_details(world: World) -> None:
    html = await world.page(f"/instances/{BROKEN}")

    assert 'id="state">failed<' in html
    assert '<dd class="category">application</dd>' in html
    assert "ActivityFailedError" in html and "OutOfStock: no mug left" in html
    assert "<summary>Details</summary>" in html
    drawn = {lane["label"]: lane for lane in lanes(html)}
    assert drawn["reserve"]["bars"] == "failed"


async def test_unknown_or_invalid_instances_answer_404(world: World) -> None:
    assert "No instance ghost" in await world.page("/instances/ghost", status=404)
    await world.page("/instances/not%20valid", status=404)


async def test_a_running_instance_keeps_refreshing_and_a_finished_one_stops(world: World) -> None:
    running = await world.http.get(f"/instances/{WAITING[0]}")
    finished = await world.http.get(f"/instances/{TOUR}")

    assert "x-duro-live" not in running.headers
    assert 'data-live-every="2.0"' in running.text
    assert finished.headers["x-duro-live"] == "stop"
    assert 'data-live-every="0"' in finished.text


# -- actions --------------------------------------------------------------------------------------


async def test_raising_an_event_reaches_the_instance_and_shows_in_its_history(
    world: World,
) -> None:
    target = WAITING[0]
    key = await world.form_key(target)

    response = await world.post(
        f"/instances/{target}/raise-event",
        {"form_key": key, "name": "approve", "data": '"ana"'},
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/instances/{target}?notice=raised&event=approve"
    status = await world.client.wait_for_orchestration(target, timeout=20)
    assert status.output == "100 approved by ana"
    html = await world.page(response.headers["location"])
    assert "Raised event approve" in html
    assert 'data-event="EventRaised"' in html and "name=approve" in html


async def test_cancelling_fails_the_instance_as_cancelled_with_the_reason(world: World) -> None:
    target = WAITING[1]
    key = await world.form_key(target)

    response = await world.post(
        f"/instances/{target}/cancel", {"form_key": key, "reason": "duplicate order"}
    )

    assert response.status_code == 303
    status = await world.client.wait_for_orchestration(target, timeout=20)
    assert status.error is not None and status.error.category is duro.ErrorCategory.CANCELLED
    html = await world.page(f"/instances/{target}")
    assert 'data-event="CancelRequested"' in html and "reason=duplicate order" in html
    assert '<dd class="category">cancelled</dd>' in html


async def test_delete_removes_a_finished_instance_and_refuses_a_running_one(
    world: World,
) -> None:
    key = await world.form_key(BROKEN)

    refused = await world.post(f"/instances/{WAITING[2]}/delete", {"form_key": key})
    deleted = await world.post(f"/instances/{BROKEN}/delete", {"form_key": key})

    assert refused.status_code == 409
    assert "still running" in refused.text
    assert deleted.status_code == 303
    assert deleted.headers["location"].startswith("/instances?notice=deleted")
    assert "Deleted broken-1" in await world.page(deleted.headers["location"])
    await world.page(f"/instances/{BROKEN}", status=404)
    assert BROKEN not in row_ids(await world.page("/instances"))


async def test_an_event_with_invalid_json_is_refused_with_the_reason(world: World) -> None:
    key = await world.form_key(WAITING[0])

    response = await world.post(
        f"/instances/{WAITING[0]}/raise-event", {"form_key": key, "name": "x", "data": "{oops"}
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.text


async def test_actions_need_this_servers_form_key_and_a_same_origin_request(
    world: World,
) -> None:
    key = await world.form_key(WAITING[0])
    url = f"/instances/{WAITING[0]}/cancel"

    without = await world.post(url, {"reason": "x"})
    forged = await world.post(url, {"form_key": "guess", "reason": "x"})
    cross_site = await world.http.post(
        url, data={"form_key": key}, headers={"Origin": "http://evil.example"}
    )

    assert [r.status_code for r in (without, forged, cross_site)] == [403, 403, 403]
    assert (await world.client.get_status(WAITING[0])).state is duro.State.RUNNING


async def test_a_read_only_view_has_no_actions(world: World) -> None:
    app = create_app(world.store, UiOptions(read_only=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        page = await http.get(f"/instances/{WAITING[0]}")
        refused = await http.post(f"/instances/{WAITING[0]}/cancel", data={"form_key": "x"})

    assert "Cancel…" not in page.text and "<dialog" not in page.text
    assert refused.status_code == 403


# -- the guard ------------------------------------------------------------------------------------


async def test_beyond_loopback_every_request_needs_the_access_token(world: World) -> None:
    app = create_app(world.store, UiOptions(token="s3cret-token"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://host:8000") as http:
        anonymous = await http.get("/instances")
        wrong = await http.get("/instances?token=guess")
        entry = await http.get("/instances?state=failed&token=s3cret-token")
        with_cookie = await http.get("/instances")  # the client kept the cookie
        http.cookies.clear()
        bearer = await http.get("/instances", headers={"Authorization": "Bearer s3cret-token"})
        static = await http.get("/static/ui.css", headers={"Cookie": ""})

    assert anonymous.status_code == wrong.status_code == 401
    assert "access token" in anonymous.text
    assert entry.status_code == 303
    assert entry.headers["location"] == "/instances?state=failed"  # the token leaves the URL
    assert "httponly" in entry.headers["set-cookie"].lower()
    assert "samesite=strict" in entry.headers["set-cookie"].lower()
    assert with_cookie.status_code == bearer.status_code == 200
    assert static.status_code == 401


async def test_on_loopback_other_host_names_are_refused(world: World) -> None:
    app = create_app(world.store, UiOptions(allowed_hosts=frozenset({"127.0.0.1:8123"})))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8123") as http:
        ours = await http.get("/instances")
        rebound = await http.get("/instances", headers={"Host": "evil.example:8123"})

    assert ours.status_code == 200
    assert rebound.status_code == 421


async def test_pages_forbid_inline_scripts_and_framing(world: World) -> None:
    response = await world.http.get("/instances")

    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "<script>" not in response.text
