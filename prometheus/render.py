"""Render the chart's alert rules as a plain Prometheus rule file.

The rules have one source, the chart template charts/oracle/templates/prometheusrule.yaml. This
script renders the chart (offline, with Helm's own engine through helm-python, a test
dependency) with the PrometheusRule on and writes the PrometheusRule's ``spec`` - which is a
Prometheus rule file - with a header. prometheus/oracle-rules.yaml is its output with the
defaults below; tests/prometheus fails when the committed file and a fresh render differ.

    .venv/bin/python prometheus/render.py                 # rewrite prometheus/oracle-rules.yaml
    .venv/bin/python prometheus/render.py --check         # exit 1 when it is out of date
    .venv/bin/python prometheus/render.py -o my-rules.yaml \\
        --set 'prometheusRule.selector=job="oracle"' \\
        --set 'prometheusRule.excludedCodes={NotFound,AlreadyExists,Canceled}' \\
        --set alerter.errorRatePercent=2

``--set`` takes Helm's --set syntax and ``-f`` a values file, as `helm template` does; they go
over the defaults for the plain file (``PLAIN_VALUES``).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "oracle"
TEMPLATE = "oracle/templates/prometheusrule.yaml"
OUTPUT = ROOT / "prometheus" / "oracle-rules.yaml"

# The values the committed plain file is rendered with: the chart's defaults, the PrometheusRule
# on, and a selector for a scrape job called oracle-sidecar (docs/prometheus.md shows the job).
PLAIN_VALUES: dict[str, Any] = {
    "prometheusRule": {"enabled": True, "selector": 'job="oracle-sidecar"'},
}

HEADER = """\
# Alert rules for oracle-sidecar, the Telegram alerter's conditions in PromQL (docs/prometheus.md).
#
# GENERATED - do not edit. The source is charts/oracle/templates/prometheusrule.yaml; this file
# is its spec, rendered by `prometheus/render.py`{how}.
# Change the selector, thresholds or excluded codes by rendering again, e.g.
#   .venv/bin/python prometheus/render.py -o my-rules.yaml \\
#       --set 'prometheusRule.selector=job="oracle"'
# Check: promtool check rules {name}
# Unit tests: promtool test rules prometheus/oracle-rules.test.yaml
"""

ANNOTATION_ORDER = ("summary", "description", "runbook_url")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, maps key by key, as Helm merges values."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def rule_groups(values: dict[str, Any] | None = None, *, release: str = "oracle",
                namespace: str = "oracle") -> dict[str, Any]:
    """The PrometheusRule spec (``{"groups": [...]}``) the chart renders with ``values``."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(merge(PLAIN_VALUES, values or {}), name=release,
                                namespace=namespace, is_install=True)
    doc = yaml.safe_load(rendered[TEMPLATE])
    spec: dict[str, Any] = doc["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            notes = rule.get("annotations", {})
            rule["annotations"] = {k: notes[k] for k in (*ANNOTATION_ORDER, *sorted(notes))
                                   if k in notes}
    return spec


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML has no type stubs here
    """Writes multi-line strings (the PromQL expressions) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def rule_file(values: dict[str, Any] | None = None, *, how: str = "",
              name: str = "prometheus/oracle-rules.yaml") -> str:
    """The text of the plain rule file rendered with ``values``."""
    body: str = yaml.dump(rule_groups(values), Dumper=_Dumper, sort_keys=False, width=4096,
                     allow_unicode=True, indent=2)
    return HEADER.format(how=how, name=name) + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a value in Helm's --set syntax (repeatable)")
    parser.add_argument("-f", "--values", dest="files", action="append", default=[],
                        type=Path, metavar="FILE", help="a values file (repeatable)")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT,
                        help=f"where to write (default {OUTPUT.relative_to(ROOT)}; - for stdout)")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when the output file differs from a render")
    args = parser.parse_args(argv)
    import helm_python as helm

    values: dict[str, Any] = {}
    for path in args.files:
        values = merge(values, helm.values_from_yaml(path.read_text()))
    for expression in args.sets:
        values = merge(values, helm.parse_set_string(expression))
    how = "".join(f" -f {p}" for p in args.files) + "".join(f" --set '{s}'" for s in args.sets)
    output = str(args.output)
    name = output if output != "-" else "FILE"
    if args.output.resolve() == OUTPUT:
        name = str(OUTPUT.relative_to(ROOT))
    text = rule_file(values, how=how, name=name)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run prometheus/render.py", file=sys.stderr)
            return 1
        return 0
    if output == "-":
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
