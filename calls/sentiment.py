"""Caller sentiment, pluggable: SENTIMENT_ANALYZER names a callable(text) -> (label, score).

The default is VADER, a lexicon scorer that runs offline in microseconds; swap in a model-based
scorer by pointing the setting at another function with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

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


def sentiment_of(text: str) -> tuple[str, float] | None:
    """Label and score of what the caller said, or None when they said nothing."""
    if not text.strip():
        return None
    analyzer: Analyzer = import_string(settings.SENTIMENT_ANALYZER)
    return analyzer(text)
