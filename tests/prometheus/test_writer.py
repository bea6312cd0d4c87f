"""The /metrics writer (sidecar.promtext) against its references: prometheus-client and Go.

prometheus-client's own rendering of the same store (the path the sidecar used before) must
parse to the same families and samples, in both formats and with hostile names; Go's
client_golang must spell every number as the writer does; content negotiation must choose as
prometheus-client's ``choose_encoder`` does; a render after a push rewrites only the series
whose totals changed.
"""

from __future__ import annotations

import math
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from benchmarks._gorender import build
from benchmarks._promclient import Reference
from sidecar import promtext, protocol
from sidecar.exposition import Exposition
from sidecar.store import Store
from tests.prometheus.test_exposition import HOSTILE_METHODS, HOSTILE_SERVICE, OPENMETRICS
from tests.reliability.hostile import message

FORMATS = (("text/plain", text_parse), (OPENMETRICS, om_parse))


def busy_rows(seed: int, scale: int = 1) -> list[dict[str, Any]]:
    """One row per hostile method (and a plain one), counts past 10^6 on some."""
    rng = random.Random(seed)
    rows = []
    for i, method in enumerate([*HOSTILE_METHODS, "Plain"]):
        hist = [rng.randint(0, 50) * scale for _ in protocol.DEFAULT_BUCKETS] + [i * 400_000]
        n = sum(hist)
        rows.append({"service": HOSTILE_SERVICE if i % 2 else "oracle.v1.Oracle",
                     "method": method, "type": ("unary", "server_stream")[i % 2],
                     "started": n + 1, "codes": {"OK": n - 3, protocol.CODES[13]: 2,
                                                 protocol.CODES[5]: 1},
                     "hist": hist, "sum": 0.0137 * n, "max": 2.5, "msg_received": n + 7,
                     "msg_sent": n * 3, "exceptions": {'Key"Err\\or ☃': i + 1} if i % 3 else {}})
    return rows


def store_with(rows: list[dict[str, Any]]) -> tuple[Store, list[float]]:
    """A store (on a clock the test moves) that has applied one snapshot of ``rows``."""
    now = [100.0]
    store = Store(clock=lambda: now[0])
    for part in message(rows, started=2.0e9):  # started after the store: no settling
        assert store.ingest(part) is None
    return store, now


def families(text: str, parse: Any) -> list[tuple[Any, ...]]:
    """Families as comparable tuples: ``le`` and values as floats (spellings differ), NaN as
    text, the process's own figures apart (they are read at different moments)."""
    out = []
    for f in parse(text):
        if f.name.startswith("process_"):
            continue
        samples = []
        for s in f.samples:
            labels = dict(s.labels)
            if "le" in labels:
                labels["le"] = float(labels["le"])
            samples.append((s.name, labels, repr(float(s.value)), s.timestamp, s.exemplar))
        out.append((f.name, f.type, f.documentation, f.unit, samples))
    return out


def test_the_writer_parses_exactly_as_prometheus_clients_rendering_of_the_same_store() -> None:
    """Both formats, hostile names, counts past 10^6: same families, help, labels, values."""
    store, now = store_with(busy_rows(1))
    ours, theirs = Exposition(store), Reference(store)
    for scale in (1, 3):  # the first render, and one after a push that changes every series
        if scale > 1:
            for part in message(busy_rows(1, scale), seq=2, started=2.0e9):
                assert store.ingest(part) is None
            now[0] += 1.0
        for accept, parse in FORMATS:
            body, content_type = ours.metrics(accept)
            reference, reference_type = theirs.metrics(accept)
            assert content_type == reference_type
            mine = families(body.decode(), parse)
            assert mine == families(reference.decode(), parse)
            handled = [f for f in mine if f[0] == "grpc_server_handled"]
            assert len(handled[0][4]) == 8 * len(protocol.CODES)  # every series is there


def test_process_figures_are_prometheus_clients_names_types_and_help() -> None:
    """The sidecar's own process_* families match ProcessCollector's, and agree in value."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    body = Exposition(Store()).metrics("text/plain")[0].decode()
    ours = {f.name: f for f in text_parse(body) if f.name.startswith("process_")}
    theirs = {f.name: f for f in registry.collect()}
    assert {(n, f.type, f.documentation) for n, f in ours.items()} == {
        (n, f.type, f.documentation) for n, f in theirs.items()}
    for name in ("process_start_time_seconds", "process_max_fds"):
        assert ours[name].samples[0].value == pytest.approx(theirs[name].samples[0].value)


def test_openmetrics_has_one_eof_no_created_samples_and_no_exemplars() -> None:
    """The stated policies: ``# EOF`` once at the end, no ``_created``, no exemplars, and
    ``le`` spelled as in the text format."""
    store, _ = store_with(busy_rows(3))
    body = Exposition(store).metrics(OPENMETRICS)[0].decode()
    assert body.endswith("\n# EOF\n") and body.count("# EOF") == 1
    samples = [s for f in om_parse(body) for s in f.samples]
    assert samples and not [s for s in samples if s.name.endswith("_created")]
    assert all(s.exemplar is None for s in samples)
    assert "# TYPE grpc_server_started counter\n" in body  # _total dropped from the family
    assert ',le="1"} ' in body and ',le="1.0"}' not in body  # le as Go servers' text has it
    assert "_created" not in Exposition(store).metrics("text/plain")[0].decode()


def test_a_render_after_a_push_rewrites_only_the_series_that_changed() -> None:
    """Unchanged series keep their bytes (same objects); the body equals a fresh render's."""
    rows = busy_rows(4)
    store, _ = store_with(rows)
    exposition = Exposition(store)
    exposition.metrics("text/plain")
    kept = dict(exposition._formats[False].series)
    rows[0]["started"] += 1
    rows[0]["codes"]["OK"] += 1
    rows[0]["hist"][0] += 1
    for part in message(rows, seq=2, started=2.0e9):
        assert store.ingest(part) is None
    body = exposition.metrics("text/plain")[0]
    after = exposition._formats[False].series
    changed = {key for key in after if after[key][1] is not kept[key][1]}
    assert changed == {(rows[0]["service"], rows[0]["method"], rows[0]["type"])}
    fresh = Exposition(store).metrics("text/plain")[0]
    assert _without_process(body) == _without_process(fresh)


def _without_process(body: bytes) -> list[bytes]:
    """The lines of a body but the process's own figures (they move between two renders)."""
    return [line for line in body.split(b"\n") if b"process_" not in line]


def test_content_negotiation_chooses_as_choose_encoder_does() -> None:
    """Every Accept header below gets the content type prometheus-client's encoder picks."""
    headers = ["", "*/*", "text/plain", "text/plain; version=0.0.4", "text/plain;version=1.0.0",
               "text/plain; version=1.0.0; escaping=allow-utf-8", "application/json",
               "application/openmetrics-text", "application/openmetrics-text; version=1.0.0",
               "application/openmetrics-text; version=0.0.1",
               "application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5",
               "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
               "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
               "application/openmetrics-text; version=2.0.0; escaping=dots",
               "application/openmetrics-text; version=1.0.0; escaping=bogus",
               "text/html, application/openmetrics-text ;version=1.0.0"]
    for accept in headers:
        om, content_type = promtext.negotiate(accept)
        assert content_type == choose_encoder(accept)[1], accept
        assert om == content_type.startswith("application/openmetrics-text")


@pytest.fixture(scope="module")
def gorender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Go reference program, built once for this module."""
    try:
        yield build(tmp_path_factory.mktemp("gorender"))
    except RuntimeError as err:
        pytest.fail(str(err))


def test_numbers_are_spelled_as_client_golang_spells_them(gorender: Path) -> None:
    """Values and ``le`` in both formats, for bounds, counts, sums and edge cases, as Go."""
    rng = random.Random(5)
    values = [0.0, 1.0, -1.0, 5.0, 0.005, 0.01, 0.025, 2.5, 10.0, 60.0, 1e-4, 1e-5, 0.00012,
              123456.0, 999999.0, 1e6, 1234567.0, 2.5e16, 1e21, 1e22, 3.14159, -2.0, 1e300,
              1796135101.97, 1e-300, 5e-324, math.inf, -math.inf, 0.1 + 0.2, 2.0**53]
    values += [rng.uniform(0, 10) for _ in range(40)] + [rng.uniform(0, 1e9) for _ in range(20)]
    values += [float(rng.randint(0, 10**7)) for _ in range(40)]
    # counters past 10^6 up to 2^53 (spelled from their digits), trailing zeros included
    values += [float(rng.randint(10**e, 10**(e + 1)) // 10**z * 10**z)
               for e in range(6, 15) for z in (0, 1, e // 2, e) for _ in range(3)]
    values += [float(10**e) for e in range(6, 16)] + [float(2**53 - 1), 12300000.0]
    done = subprocess.run([str(gorender), "-floats"], input="".join(f"{v!r}\n" for v in values),
                          capture_output=True, text=True, timeout=60, check=True)
    go = [line.split() for line in done.stdout.splitlines()]
    assert len(go) == len(values)
    for v, (text, om, text_le, om_le) in zip(values, go, strict=True):
        assert (promtext.go_float(v), promtext.om_float(v)) == (text, om), v
        assert (promtext.go_float(v), promtext.om_float(v)) == (text_le, om_le), v
        if v.is_integer() and abs(v) < 2**53:
            assert (promtext.go_int(int(v)), promtext.om_int(int(v))) == (text, om), v


def test_label_values_and_help_are_escaped_byte_for_byte_as_prometheus_client_does() -> None:
    """Quotes, backslashes, newlines, unicode and markup in any mix: the same bytes."""
    from prometheus_client.openmetrics.exposition import ALLOWUTF8, _escape

    rng = random.Random(6)
    alphabet = ['\\', '\n', '"', "a", "☃", "名", "{", "}", ",", "=", " ", "#", "\\n", "\t"]
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert promtext.escape_label(value) == _escape(value, ALLOWUTF8, None)
        assert promtext.escape_help(value, om=True) == _escape(value, ALLOWUTF8, None)
        assert promtext.escape_help(value, om=False) == value.replace("\\", r"\\").replace(
            "\n", r"\n")  # generate_latest's HELP escaping, which leaves quotes alone
