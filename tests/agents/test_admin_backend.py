"""The backend in the back-office: the agent form hides and ignores a GPT-Live agent's Realtime
API settings (server-side, then client-side on a change of the backend select), and the call
page says which backend a call was configured with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from agents import catalog
from agents.models import Agent

pytestmark = pytest.mark.django_db
LIST = "/admin/agents/agent/"
STATIC = Path(settings.BASE_DIR) / "static" / "agents" / "admin"


def change_url(agent: Agent) -> str:
    return f"{LIST}{agent.pk}/change/"


@pytest.fixture
def staff(make_user) -> User:
    return make_user(
        "agents.view_agent", "agents.change_agent", "agents.add_agent", "calls.view_call",
        username="lead", is_staff=True,
    )  # fmt: skip


@pytest.fixture
def browser(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def form_data(agent: Agent, **changes: Any) -> dict[str, Any]:
    """The change form as a browser posts it: every field shown, as stored (a disabled input
    is not posted: `None` leaves a field out)."""
    data: dict[str, Any] = {
        "name": agent.name,
        "slug": agent.slug,
        "is_active": "on",
        "instructions": agent.instructions,
        "greeting": agent.greeting,
        "backend": agent.backend,
        "model": agent.model,
        "voice": agent.voice,
        "language": agent.language,
        "turn_detection": agent.turn_detection,
        "vad_threshold": agent.vad_threshold,
        "vad_prefix_padding_ms": agent.vad_prefix_padding_ms,
        "vad_silence_duration_ms": agent.vad_silence_duration_ms,
        "vad_eagerness": agent.vad_eagerness,
        "noise_reduction": agent.noise_reduction,
        "idle_timeout_ms": agent.idle_timeout_ms or "",
        "transcription_model": agent.transcription_model,
        "max_call_minutes": agent.max_call_minutes or "",
        "tools": "[]",
        "phone_numbers-TOTAL_FORMS": 0,
        "phone_numbers-INITIAL_FORMS": 0,
        "phone_numbers-MIN_NUM_FORMS": 0,
        "phone_numbers-MAX_NUM_FORMS": 1000,
    }
    if agent.is_default:
        data["is_default"] = "on"
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    return {name: list(e) for name, e in response.context["adminform"].form.errors.items()}


def realtime_only_values(agent: Agent) -> dict[str, Any]:
    return {name: getattr(agent, name) for name in catalog.REALTIME_ONLY_FIELDS}


# --- the form, server-side ---------------------------------------------------------------------


def test_a_gpt_live_agents_realtime_settings_are_hidden_and_disabled(browser, make_agent):
    agent = make_agent(backend="gpt-live", phone_numbers=("+18005550100",))
    response = browser.get(change_url(agent))
    body = response.content.decode()
    form = response.context["adminform"].form
    assert form.effective_backend == "gpt-live"
    for name in catalog.REALTIME_ONLY_FIELDS:
        assert form.fields[name].disabled, name
        assert re.search(rf'<[^>]* name="{name}"[^>]* disabled', body), name
    assert not form.fields["max_call_minutes"].disabled  # GPT-Live's too
    assert '<div id="bo-agent-fields" data-backend="gpt-live">' in body
    # The layout is kept: the same groups, the rows there (hidden by agent_form.css).
    names = [name for name, _ in response.context["adminform"].fieldsets]
    assert names == ["Who", "What it says", "How it listens", "What it can do",
                     "What the model is sent"]  # fmt: skip
    assert 'class="form-row field-turn_detection"' in body


def test_a_realtime_agents_settings_are_shown(browser, make_agent) -> None:
    response = browser.get(change_url(make_agent()))
    body = response.content.decode()
    assert '<div id="bo-agent-fields" data-backend="realtime">' in body
    assert not any(
        response.context["adminform"].form.fields[name].disabled
        for name in catalog.REALTIME_ONLY_FIELDS
    )
    assert not re.search(r'name="turn_detection"[^>]* disabled', body)


def test_the_backend_sits_next_to_the_model(browser, make_agent) -> None:
    response = browser.get(change_url(make_agent()))
    fieldsets = dict(response.context["adminform"].fieldsets)
    says = fieldsets["What it says"]["fields"]
    assert says.index("backend") + 1 == says.index("model")
    body = response.content.decode()
    assert '<option value="gpt-live">OpenAI GPT-Live</option>' in body
    model = re.search(r'<select name="model"[^>]*>(.*?)</select>', body, re.S).group(1)
    assert re.findall(r'<optgroup label="([^"]+)"', model) == [
        "OpenAI Realtime API",
        "OpenAI GPT-Live",
    ]
    voice = re.search(r'<select name="voice"[^>]*>(.*?)</select>', body, re.S).group(1)
    assert set(re.findall(r'<option value="([^"]+)"', voice)) == set(catalog.ALL_VOICES)


def test_posted_realtime_settings_of_a_gpt_live_agent_are_ignored(browser, make_agent) -> None:
    agent = make_agent(backend="gpt-live")
    kept = realtime_only_values(agent)
    odd = {"turn_detection": "semantic_vad", "vad_threshold": "9", "idle_timeout_ms": "12",
           "transcription_model": "nonsense", "noise_reduction": "studio"}  # fmt: skip
    response = browser.post(change_url(agent), form_data(agent, greeting="Hi", **odd))
    assert response.status_code == 302, form_errors(response)
    agent.refresh_from_db()
    assert realtime_only_values(agent) == kept
    assert (agent.greeting, agent.version) == ("Hi", 2)


def test_a_gpt_live_agent_saves_without_the_hidden_fields(browser, make_agent) -> None:
    # What the browser posts once agent_form.js has disabled the hidden inputs.
    agent = make_agent(backend="gpt-live")
    left_out = dict.fromkeys(catalog.REALTIME_ONLY_FIELDS)
    response = browser.post(change_url(agent), form_data(agent, voice="gleam", **left_out))
    assert response.status_code == 302, form_errors(response)
    agent.refresh_from_db()
    assert (agent.voice, agent.version) == ("gleam", 2)


def test_switching_to_gpt_live_keeps_the_realtime_settings(browser, make_agent) -> None:
    agent = make_agent(vad_threshold=0.8, transcription_model="whisper-1")
    kept = realtime_only_values(agent)
    changes = {"backend": "gpt-live", "model": "gpt-live-1", "vad_threshold": "0.1"}
    response = browser.post(change_url(agent), form_data(agent, **changes))
    assert response.status_code == 302, form_errors(response)
    agent.refresh_from_db()
    assert (agent.backend, agent.model, agent.version) == ("gpt-live", "gpt-live-1", 2)
    assert realtime_only_values(agent) == kept


def test_switching_back_to_realtime_takes_the_posted_settings(browser, make_agent) -> None:
    agent = make_agent(backend="gpt-live")
    changes = {"backend": "realtime", "model": "gpt-realtime-mini", "vad_threshold": "0.3",
               "turn_detection": "server_vad"}  # fmt: skip
    response = browser.post(change_url(agent), form_data(agent, **changes))
    assert response.status_code == 302, form_errors(response)
    agent.refresh_from_db()
    assert (agent.backend, agent.model, agent.vad_threshold) == (
        "realtime",
        "gpt-realtime-mini",
        0.3,
    )


@pytest.mark.parametrize(
    ("stored", "changes", "field", "words"),
    [
        ({}, {"backend": "gpt-live"}, "model", "not a model of OpenAI GPT-Live"),
        ({}, {"model": "gpt-live-1"}, "model", "not a model of OpenAI Realtime API"),
        ({}, {"voice": "gleam"}, "voice", "not one of OpenAI Realtime API"),
        ({"backend": "gpt-live"}, {"backend": "realtime"}, "model", "OpenAI Realtime API"),
    ],
)
def test_a_model_or_voice_of_the_other_backend_is_a_form_error(
    browser, make_agent, stored, changes, field, words
) -> None:
    agent = make_agent(**stored)
    errors = form_errors(browser.post(change_url(agent), form_data(agent, **changes)))
    assert field in errors and words in " ".join(errors[field]), errors
    agent.refresh_from_db()
    assert agent.version == 1


def test_a_gpt_live_agent_is_added_through_the_form(browser, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    data = {
        "name": "Live line",
        "slug": "live-line",
        "is_active": "on",
        "instructions": "Be brief.",
        "greeting": "",
        "backend": "gpt-live",
        "model": "gpt-live-1.1",
        "voice": "marin",
        "language": "",
        "tools": "[]",
        "phone_numbers-TOTAL_FORMS": "0",
        "phone_numbers-INITIAL_FORMS": "0",
        "phone_numbers-MIN_NUM_FORMS": "0",
        "phone_numbers-MAX_NUM_FORMS": "1000",
    }
    response = browser.post(f"{LIST}add/", data)
    assert response.status_code == 302, form_errors(response)
    agent = Agent.objects.get(slug="live-line")
    assert (agent.backend, agent.model, agent.version) == ("gpt-live", "gpt-live-1.1", 1)
    assert agent.turn_detection == "server_vad"  # the default, kept for a switch


def test_the_list_shows_and_filters_the_backend(browser, make_agent) -> None:
    live = make_agent(name="Live", backend="gpt-live")
    make_agent(name="Classic")
    response = browser.get(LIST, {"backend__exact": "gpt-live"})
    assert [agent.pk for agent in response.context["cl"].result_list] == [live.pk]
    assert '<td class="field-backend">OpenAI GPT-Live</td>' in response.content.decode()


def test_the_preview_label_names_no_protocol_event(browser, make_agent) -> None:
    body = browser.get(change_url(make_agent())).content.decode()
    assert "At the start of each call" in body
    assert "session.update" not in body.split('<pre class="bo-json">')[0]


# --- the form, client-side: a static script, no inline code --------------------------------------


def test_the_page_loads_the_script_and_its_data_without_inline_code(browser, make_agent) -> None:
    body = browser.get(change_url(make_agent())).content.decode()
    assert '<script src="/static/agents/admin/agent_form.js" defer></script>' in body
    assert '<link rel="stylesheet" href="/static/agents/admin/agent_form.css">' in body
    for tag, content in re.findall(r"(<script\b[^>]*>)(.*?)</script>", body, re.S):
        # Every script is a file, or data (json_script), never code on the page.
        assert "src=" in tag or 'type="application/json"' in tag, tag
        assert "src=" in tag or content.strip().startswith("{"), tag
    data = re.search(r'<script id="bo-agent-backends" type="application/json">(.*?)</script>', body)
    import json

    config = json.loads(data.group(1))
    assert config["realtime_only"] == list(catalog.REALTIME_ONLY_FIELDS)
    assert config["backends"]["gpt-live"] == {
        "models": list(catalog.LIVE_MODELS),
        "voices": list(catalog.LIVE_VOICES),
        "model": "gpt-live-1.1",
        "voice": "marin",
    }


def test_the_stylesheet_hides_exactly_the_realtime_only_rows() -> None:
    css = (STATIC / "agent_form.css").read_text()
    hidden = re.findall(r'\[data-backend="gpt-live"\] \.form-row\.field-(\w+)', css)
    assert sorted(hidden) == sorted(catalog.REALTIME_ONLY_FIELDS)
    assert "display: none" in css


def test_the_script_follows_the_backend_select() -> None:
    script = (STATIC / "agent_form.js").read_text()
    for needed in ("id_backend", "bo-agent-backends", "bo-agent-fields", '"change"',
                   "dataset.backend", "realtime_only"):  # fmt: skip
        assert needed in script, needed


# --- the call page and the call API: which backend answered -------------------------------------


def snapshot(backend: str | None) -> dict[str, Any]:
    agent: dict[str, Any] = {"voice": "marin", "model": "gpt-live-1.1"}
    if backend is not None:
        agent["backend"] = backend
    return {"version": 2, "agent": agent, "session": {}}


@pytest.mark.parametrize(
    ("backend", "label"),
    [("gpt-live", "OpenAI GPT-Live"), ("realtime", "OpenAI Realtime API"),
     (None, "OpenAI Realtime API")],
)  # fmt: skip
def test_the_call_page_shows_the_backend(browser, make_agent, make_call, backend, label):
    call = make_call(agent=make_agent(), agent_version=2, agent_snapshot=snapshot(backend))
    body = browser.get(f"/admin/calls/call/{call.pk}/change/").content.decode()
    facts = body[body.index('<dl class="bo-facts">') :]
    facts = facts[: facts.index("</dl>")]
    assert re.search(rf"<dt[^>]*>Backend</dt><dd class=\"bo-backend\">{label}</dd>", facts)
    assert facts.index(">Agent</dt>") < facts.index(">Backend</dt>")


@pytest.mark.parametrize(
    ("fields", "backend"),
    [
        ({"agent_snapshot": snapshot("gpt-live")}, "gpt-live"),
        ({"agent_snapshot": snapshot(None)}, "realtime"),  # before agents had a backend
        ({}, "realtime"),  # no agent: the environment's configuration
    ],
)
def test_the_call_detail_api_has_the_backend(client_for, make_user, make_call, fields, backend):
    api: APIClient = client_for(make_user("calls.view_call"))
    call = make_call(**fields)
    body = api.get(f"/api/calls/{call.pk}").json()
    assert body["backend"] == backend
    assert body["agent_snapshot"] == fields.get("agent_snapshot", {})


def test_the_call_schema_documents_the_backend() -> None:
    from drf_spectacular.generators import SchemaGenerator

    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    field = components["CallDetail"]["properties"]["backend"]
    assert "realtime" in field["description"] and "gpt-live" in field["description"]
    ref = (field.get("allOf") or [field])[0]["$ref"].rsplit("/", 1)[1]
    assert components[ref]["enum"] == list(catalog.BACKENDS)
    assert "backend" in components["CallDetail"]["required"]
