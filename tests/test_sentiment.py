"""Caller sentiment: a broken scorer costs a call its sentiment, never its finalization, and a
SENTIMENT_ANALYZER that names no callable stops the start with a message naming it."""

from __future__ import annotations

import logging

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from support import base_env, manage


def exploding_scorer(text: str) -> tuple[str, float]:
    raise RuntimeError("the model server is down")


def nonsense_scorer(text: str) -> tuple[str, float]:
    return ("ecstatic", 7.5)  # not a label the Analytics row takes; out of the score's range


NOT_CALLABLE = 42


def test_the_default_scorer_labels_what_the_caller_said() -> None:
    from calls.sentiment import sentiment_of

    label, score = sentiment_of("Thank you so much, this was really helpful and great!")
    assert label == "positive" and 0 < score <= 1
    assert sentiment_of("   ") is None


def test_a_failing_scorer_is_logged_and_gives_no_sentiment(caplog) -> None:
    from calls.sentiment import sentiment_of

    with override_settings(SENTIMENT_ANALYZER=f"{__name__}.exploding_scorer"):
        assert sentiment_of("I am not happy") is None
    [record] = [r for r in caplog.records if r.name == "calls.sentiment"]
    assert record.levelno == logging.ERROR
    # The traceback is kept (as text: the redacting filter renders it).
    assert "RuntimeError: the model server is down" in (record.exc_text or "")
    assert "exploding_scorer" in record.getMessage()


def test_a_scorer_answering_nonsense_gives_no_sentiment(caplog) -> None:
    from calls.sentiment import sentiment_of

    with override_settings(SENTIMENT_ANALYZER=f"{__name__}.nonsense_scorer"):
        assert sentiment_of("I am not happy") is None
    assert "('ecstatic', 7.5)" in caplog.text


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("no.such.path", "cannot be imported"),
        ("nodots", "cannot be imported"),
        ("calls.sentiment.no_such_function", "cannot be imported"),
        (f"{__name__}.NOT_CALLABLE", "is not callable"),
    ],
)
def test_a_sentiment_analyzer_that_is_no_callable_is_a_configuration_error(
    path: str, problem: str
) -> None:
    from calls.sentiment import sentiment_analyzer_load

    with override_settings(SENTIMENT_ANALYZER=path):
        with pytest.raises(ImproperlyConfigured, match=f"SENTIMENT_ANALYZER='{path}' {problem}"):
            sentiment_analyzer_load()
        # ... and the app checks it when it starts.
        with pytest.raises(ImproperlyConfigured, match="SENTIMENT_ANALYZER"):
            apps.get_app_config("calls").ready()
    assert sentiment_analyzer_load() is not None  # the default is fine


@pytest.mark.slow
def test_start_up_with_a_bad_sentiment_analyzer_fails_naming_the_setting() -> None:
    result = manage(
        base_env(DJANGO_ENV="development", SENTIMENT_ANALYZER="no.such.path"), "check", timeout=60
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: SENTIMENT_ANALYZER='no.such.path' cannot be imported" in (
        result.stderr
    )
