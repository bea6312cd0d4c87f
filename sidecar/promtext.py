"""The Prometheus text format (0.0.4) and OpenMetrics 1.0, written directly.

What a writer needs and nothing more: content negotiation (the choice prometheus-client's
``choose_encoder`` makes for the same Accept header), escaping of label values and HELP text,
numbers spelled as Go's client_golang spells them, and the HELP/TYPE lines of a family in either
format (OpenMetrics drops a counter's ``_total`` and an info's ``_info`` from the family name).

Numbers: the text format writes every value as client_golang's ``writeFloat`` does
(``strconv.FormatFloat(v, 'g', -1, 64)``: ``1``, ``0.005``, ``1e+06``, ``+Inf``); OpenMetrics
writes floats as ``writeOpenMetricsFloat`` does (a ``.0`` added when the number has neither a
``.`` nor an exponent: ``1.0``, ``5.0``) and histogram counts as integers (``writeUint``). The
sidecar spells ``le`` as the text format does in both formats (see sidecar.exposition).

Policies: no exemplars, and no ``_created`` samples (the sidecar sums processes that started at
different times and survives their restarts, so no single creation time is true; client_golang's
OpenMetrics writer writes none either).
"""

from __future__ import annotations

import math

__all__ = ["EOF", "OPENMETRICS", "TEXT", "escape_help", "escape_label", "go_float",
           "go_int", "header", "negotiate", "om_float", "om_int"]

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
EOF = "# EOF\n"
_EXACT = 2**53  # integers below this in magnitude are exact in a float64
_TEXT_1 = "text/plain; version=1.0.0; charset=utf-8"
_ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")


def negotiate(accept: str | None) -> tuple[bool, str]:
    """(OpenMetrics or not, content type) for an Accept header.

    The same choice prometheus-client's ``choose_encoder`` makes: the first
    ``application/openmetrics-text`` with no version or a version >= 1.0.0, or the first
    ``text/plain`` with a version >= 1.0.0; otherwise the text format 0.0.4. The escaping
    parameter is echoed as it does (the names written here need no escaping in any scheme).
    """
    for accepted in (accept or "").split(","):
        toks = accepted.split(";")
        kind = toks[0].strip()
        if kind not in ("application/openmetrics-text", "text/plain"):
            continue
        version, escaping = None, None  # the first of each counts
        for tok in toks:
            if "=" in tok:
                key, value = tok.strip().split("=", 1)
                if key == "version" and version is None:
                    version = value
                elif key == "escaping" and escaping is None:
                    escaping = value if value in _ESCAPINGS else "underscores"
        version, escaping = version or "", escaping or "underscores"
        if kind == "application/openmetrics-text" and not version:
            return True, OPENMETRICS
        if version and _version(version) >= (1, 0, 0):
            if kind == "text/plain":
                return False, f"{_TEXT_1}; escaping={escaping}"
            return True, (f"application/openmetrics-text; version={version}; charset=utf-8; "
                          f"escaping={escaping}")
    return False, TEXT


def _version(text: str) -> tuple[int, ...]:
    """A version as prometheus-client's ``parse_version`` reads it (non-numbers are 0)."""
    out = []
    for part in text.split("."):
        try:
            out.append(int(part))
        except ValueError:
            out.append(0)
    return tuple(out)


def escape_label(value: str) -> str:
    """A label value's escaping (both formats): backslash, newline and double quote."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def escape_help(text: str, om: bool) -> str:
    """HELP text: backslash and newline; OpenMetrics also escapes the double quote."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if om else text


def header(name: str, kind: str, help_text: str, om: bool) -> str:
    """The ``# HELP`` and ``# TYPE`` lines of a family.

    ``name`` is the family's name in the text format, which is also its samples' name: a
    counter's ends in ``_total``, an info's in ``_info`` (written as a gauge in the text format,
    as prometheus-client does). OpenMetrics names the family without those suffixes.
    """
    if om:
        if kind == "counter":
            name = name.removesuffix("_total")
        elif kind == "info":
            name = name.removesuffix("_info")
    elif kind == "info":
        kind = "gauge"
    return f"# HELP {name} {escape_help(help_text, om)}\n# TYPE {name} {kind}\n"


def go_float(value: float) -> str:
    """``value`` as client_golang's text format writes it: Go's shortest ``'g'`` spelling."""
    if 1e-4 <= value < 1e6 or -1e6 < value <= -1e-4:  # the common case: plain decimals
        r = repr(value)
        return r[:-2] if r.endswith(".0") else r
    if value == 0:
        return "0"
    if value == 1:
        return "1"
    if value == -1:
        return "-1"
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    r = repr(float(value))  # Python's shortest round-trip digits, as Go's
    if "e" in r:
        return r  # both switch to 1.5e+16 / 1e-05 alike at these exponents
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    whole, _, fraction = r.partition(".")
    if whole != "0":
        if len(whole) <= 6:  # decimal exponent below 6: plain
            return sign + (whole if fraction == "0" else r)
        digits = (whole + ("" if fraction == "0" else fraction)).rstrip("0")
        exponent = len(whole) - 1
    else:  # 0.000123: Python writes plain down to 1e-04, as Go does
        return sign + r
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e+{exponent:02d}"


def go_int(value: int) -> str:
    """A counter held as an integer, as client_golang writes the float64 it would hold."""
    if -1_000_000 < value < 1_000_000:
        return str(value)
    if -_EXACT < value < _EXACT:
        # float64 holds it exactly, and no shorter decimal is as close: Go's shortest 'g'
        # spelling is its digits without the trailing zeros, always with an exponent (>= 6).
        digits = str(abs(value))
        exponent = len(digits) - 1
        digits = digits.rstrip("0")
        return (f"{'-' if value < 0 else ''}{digits[0]}{'.' if len(digits) > 1 else ''}"
                f"{digits[1:]}e+{exponent:02d}")
    try:
        return go_float(float(value))
    except OverflowError:
        return "+Inf" if value > 0 else "-Inf"


def om_float(value: float) -> str:
    """``value`` as client_golang's OpenMetrics writer spells a float (``1.0``, ``1e+06``)."""
    text = go_float(value)
    if "." in text or "e" in text or not text[-1].isdigit():  # Inf and NaN as they are
        return text
    return text + ".0"


def om_int(value: int) -> str:
    """A counter held as an integer, as client_golang's OpenMetrics writer spells its float."""
    if -1_000_000 < value < 1_000_000:
        return f"{value}.0"
    return go_int(value)  # spelled with an exponent (or Inf): OpenMetrics' spelling too
