"""Serializer fields that accept exactly what the schema says they take.

DRF coerces for the sake of HTML forms: 0 becomes the string "0", "true" or 1 a boolean, "5"
an integer. The API reads JSON bodies and documents JSON types, so a client sending the wrong
type has a bug it should hear about (400), and a schema-invalid request is never accepted.
Query parameters are strings on the wire; the one boolean there takes the two words the
schema's serialization produces.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.utils import html

# Something besides white space (a CharField trims, then refuses an empty string). Spelled
# out, not `\S`: what Python's str.strip() removes (str.isspace) is not what `\s` means in
# every regex engine a client validates with (U+001C-U+001F, U+0085 differ).
PYTHON_WHITESPACE = (
    r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK_PATTERN = f"[^{PYTHON_WHITESPACE}]"


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Not a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSlugField(serializers.SlugField):
    default_error_messages = {"invalid_type": "Not a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid_type")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "minLength": 1, "pattern": NOT_BLANK_PATTERN})
class NotBlankCharField(StrictCharField):
    """A required text the schema describes as it is checked: not only white space."""


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class QueryBooleanField(serializers.BooleanField):
    """A boolean query parameter: `true` or `false`, as the schema's form style sends it."""

    def to_internal_value(self, data: Any) -> bool:
        # A bool when absent: DRF's default_empty_html for a form's unticked box.
        if data is True or data == "true":
            return True
        if data is False or data == "false":
            return False
        self.fail("invalid", input=data)


class GivenMeansNotEmpty:
    """A query parameter given empty is judged as given (and refused by its enum or format),
    not read as absent the way DRF reads HTML form input."""

    field_name: str

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary) and self.field_name in dictionary:
            return dictionary.get(self.field_name)  # "" stays "", for the field to refuse
        return super().get_value(dictionary)  # type: ignore[misc]


class QueryChoiceField(GivenMeansNotEmpty, serializers.ChoiceField):
    pass


class QueryUUIDField(GivenMeansNotEmpty, serializers.UUIDField):
    pass


class QueryStrictBooleanField(GivenMeansNotEmpty, QueryBooleanField):
    pass


@extend_schema_field({"oneOf": [{"type": "string", "maxLength": 1000}, {"type": "number"}]})
class ScalarField(serializers.Field):
    """A JSON string or number (not a boolean, a list or an object): a value a prompt holds."""

    default_error_messages = {"invalid": "Must be a string or a number."}

    def to_internal_value(self, data: Any) -> str | int | float:
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> Any:
        return value
