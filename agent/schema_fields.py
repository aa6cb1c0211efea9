"""Field checks shared by the job and result schemas: every refusal names the document and the field."""


class SchemaError(ValueError):
    """A document does not match the schema; the message names the field."""


_KIND_NAMES = {bool: "a boolean", int: "an integer", float: "a number",
               str: "a string", dict: "an object", list: "a list"}


def kind_names(kinds):
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def require(doc, field, kinds, where):
    """``doc[field]``, which must be present and one of ``kinds``."""
    if field not in doc:
        raise SchemaError("{}: missing field '{}'".format(where, field))
    return _checked(doc[field], field, kinds, where)


def optional(doc, field, kinds, where):
    """``doc[field]`` when present and not null, else None; present, it must be one of ``kinds``."""
    value = doc.get(field)
    if value is None:
        return None
    return _checked(value, field, kinds, where)


def _checked(value, field, kinds, where):
    # bool is an int subclass: a threads count of True is a bug, not a 1.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise SchemaError("{}: field '{}' must be {}, got {!r}".format(where, field, kind_names(kinds), value))
    return value


def finite(value, field, where):
    # Comparisons, not math.isfinite: that overflows on a huge int; NaN fails every comparison.
    if not -1e300 < value < 1e300:
        raise SchemaError("{}: field '{}' must be a finite number, got {!r}".format(where, field, value))
    return value


def optional_finite(doc, field, where):
    """A number that may be absent or null; present, it must be finite."""
    value = optional(doc, field, (int, float), where)
    return None if value is None else finite(value, field, where)
