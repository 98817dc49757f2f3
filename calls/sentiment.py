"""Caller sentiment, pluggable: SENTIMENT_ANALYZER names a callable(text) -> (label, score).

The default is VADER, a lexicon scorer that runs offline in microseconds; swap in a model-based
scorer by pointing the setting at another function with the same signature. The setting is
checked at start-up (calls.apps); a scorer that fails on a call costs that call its sentiment,
never its finalization.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import cache
from numbers import Real

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from calls.models import Sentiment

logger = logging.getLogger(__name__)

Analyzer = Callable[[str], tuple[str, float]]
# VADER's own recommended cut-offs on the compound score.
_POSITIVE_AT = 0.05
_NEGATIVE_AT = -0.05


@cache
def _vader():  # type: ignore[no-untyped-def]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_sentiment(text: str) -> tuple[str, float]:
    score = float(_vader().polarity_scores(text)["compound"])
    if score >= _POSITIVE_AT:
        return "positive", score
    if score <= _NEGATIVE_AT:
        return "negative", score
    return "neutral", score


def sentiment_analyzer_load() -> Analyzer:
    """The callable SENTIMENT_ANALYZER names; ImproperlyConfigured, naming the setting, if none.

    Run at start-up so a typo stops the server at once, not at the end of every call.
    """
    path = settings.SENTIMENT_ANALYZER
    try:
        analyzer = import_string(path)
    except Exception as exc:  # ImportError, or the module itself failing to import
        raise ImproperlyConfigured(
            f"SENTIMENT_ANALYZER={path!r} cannot be imported ({type(exc).__name__}: {exc}); "
            "it must be the dotted path of a function text -> (label, score)"
        ) from exc
    if not callable(analyzer):
        raise ImproperlyConfigured(
            f"SENTIMENT_ANALYZER={path!r} is not callable (it is a {type(analyzer).__name__}); "
            "it must be the dotted path of a function text -> (label, score)"
        )
    return analyzer


def _valid(result: object) -> tuple[str, float] | None:
    """The scorer's answer if it is one the Analytics row accepts, else None."""
    if not (isinstance(result, tuple | list) and len(result) == 2):
        return None
    label, score = result
    if label not in Sentiment.values or not isinstance(score, Real) or isinstance(score, bool):
        return None
    score = float(score)
    # The analytics_sentiment_score_range constraint: out of range, the final write is refused.
    if not (math.isfinite(score) and -1.0 <= score <= 1.0):
        return None
    return str(label), score


def sentiment_of(text: str) -> tuple[str, float] | None:
    """Label and score of what the caller said; None when they said nothing, or when the
    scorer fails or answers nonsense (logged): the call is then kept without a sentiment."""
    if not text.strip():
        return None
    try:
        result = sentiment_analyzer_load()(text)
    except Exception:
        logger.exception(
            "sentiment analyzer %s failed; the call is kept without a sentiment",
            settings.SENTIMENT_ANALYZER,
        )
        return None
    sentiment = _valid(result)
    if sentiment is None:
        logger.error(
            "sentiment analyzer %s returned %r, not (label in %s, score in [-1, 1]); "
            "the call is kept without a sentiment",
            settings.SENTIMENT_ANALYZER,
            result,
            "/".join(Sentiment.values),
        )
    return sentiment
