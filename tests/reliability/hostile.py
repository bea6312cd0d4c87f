"""Hostile datagrams: hypothesis strategies and a seeded mutator for the bounded fuzz run.

Both start from valid messages made by the reporter's own encoder and break them in the ways a
buggy or malicious sender would: garbage bytes, flipped and cut bytes, wrong types, missing and
extra fields, huge and negative numbers, NaN and Infinity, deep nesting, control characters and
lone surrogates, markup in names, too many rows, keys or parts, replays, and new sources.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from hypothesis import strategies as st

from sidecar import protocol

BUCKETS = protocol.DEFAULT_BUCKETS
N_HIST = len(BUCKETS) + 1

# Printable names, including everything that is special somewhere: quotes, backslashes, braces,
# '=' and ',', '#', markup, right-to-left marks, emoji and other non-BMP text.
HOSTILE_NAMES = (
    'quote"d', "back\\slash", "brace{a=\"b\"}", "a,b=c", "# HELP x y", "<script>x</script>",
    "\u202eevil", "emoji-\U0001f680", "日本語", " lead and trail ", "{{", "\\n literal",
    "le=\"0.1\"", "%s%n", "'; DROP TABLE x; --",
)
names = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")),
                min_size=1, max_size=40).filter(str.isprintable)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=20,
)


@st.composite
def rows(draw: Any, name: Any = names) -> dict[str, Any]:
    """One valid cumulative row."""
    hist = draw(st.lists(st.integers(0, 10**9), min_size=N_HIST, max_size=N_HIST))
    total = sum(hist)
    ok = draw(st.integers(0, total))
    codes = {"OK": ok}
    if total - ok:
        codes[draw(st.sampled_from(protocol.CODES[1:]))] = total - ok
    row: dict[str, Any] = {
        "service": draw(name), "method": draw(name),
        "type": draw(st.sampled_from(protocol.RPC_TYPES)),
        "started": total + draw(st.integers(0, 5)), "codes": codes, "hist": hist,
        "sum": draw(st.floats(0, 1e6)), "max": draw(st.floats(0, 60)),
    }
    if total - ok:
        row["exceptions"] = {draw(name): total - ok}
    return row


def message(rows: list[dict[str, Any]], source: str = "src", seq: int = 1,
            limit: int = protocol.MAX_DATAGRAM, started: float = 1.0e9, **extra: Any
            ) -> list[bytes]:
    """A valid snapshot as the reporter encodes it (from a process started at ``started``)."""
    return protocol.encode(
        source={"id": source, "pid": 7, "started": started, "service": "svc", "version": "1"},
        seq=seq, time=1.0e9 + seq, buckets=BUCKETS, rows=rows, health="healthy",
        checks={"db": "ok"}, reporter={"dropped": 0, "send_errors": 0, "overflow": 0},
        limit=limit, **extra)


# -- the seeded mutator for the fuzz run ---------------------------------------------------------

_WEIRD: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, -0.0, 2**63, 2**64 + 1, 10**30, 1e308, float("inf"),
    float("nan"), "", "x" * 300, "\x00", "\x1b[31m", "\ud800", "\u2028", [], {}, [[[]]],
    {"v": 1}, "OK", "healthy", [0, 1], [1, 0], [0] * N_HIST, list(range(70)),
)


class Mutator:
    """Makes the same sequence of hostile datagrams for the same seed.

    About a quarter of what it makes is valid (so the store does real work, sources come and
    go and counters move); the rest is broken in one of the ways listed in the module doc.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seqs: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.new_sources = 0

    def _valid(self, source: str | None = None, final: bool = False) -> bytes:
        rng = self.rng
        if source is None:
            source = f"pool-{rng.randrange(32)}"
        seq = self.seqs[source] = self.seqs.get(source, 0) + 1
        n = self.counts[source] = self.counts.get(source, 0) + rng.randrange(0, 50)
        hist = [0] * N_HIST
        hist[rng.randrange(N_HIST)] = n
        methods = rng.sample(("GetReading", "GetNameReading", "SuggestRange", "HealthCheck",
                              *HOSTILE_NAMES), rng.randrange(1, 6))
        body = [{"service": "fuzz.Svc", "method": m, "type": "unary", "started": n,
                 "codes": {"OK": n}, "hist": hist, "sum": n * 0.01, "max": 0.01}
                for m in methods]
        return message(body, source, seq, final=final)[0]

    def __next__(self) -> bytes:
        rng = self.rng
        kind = rng.random()
        if kind < 0.20:
            return self._valid()
        if kind < 0.25:
            self.new_sources += 1  # every one a new process; half of them exit at once
            return self._valid(f"new-{self.new_sources}", final=self.new_sources % 2 == 0)
        if kind < 0.35:
            return rng.randbytes(rng.randrange(0, 600))
        if kind < 0.55:
            return self._bytes(self._valid())
        if kind < 0.90:
            return self._json(self._valid())
        return self._special()

    def __iter__(self) -> Mutator:
        return self

    def _bytes(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(4)
            i = rng.randrange(len(buf) or 1)
            if op == 0 and buf:
                buf[i] = rng.randrange(256)
            elif op == 1:
                del buf[i:i + rng.randrange(1, 20)]
            elif op == 2:
                buf[i:i] = rng.randbytes(rng.randrange(1, 10))
            else:
                buf = buf[: rng.randrange(len(buf) + 1)]
        return bytes(buf)

    def _json(self, data: bytes) -> bytes:
        rng = self.rng
        obj = json.loads(data)
        for _ in range(rng.randrange(1, 4)):
            parent, key = self._pick(obj)
            if parent is None:
                break
            if rng.random() < 0.3 and isinstance(parent, dict):
                del parent[key]
            elif rng.random() < 0.5:
                parent[key] = copy.deepcopy(rng.choice(_WEIRD))
            else:
                parent[key] = self._number_twist(parent[key])
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)  # NaN/Infinity literals too
        return text.encode("utf-8", "surrogatepass")

    def _pick(self, obj: Any) -> tuple[Any, Any]:
        """A random (container, key) inside ``obj``."""
        rng = self.rng
        parent, key = None, None
        node = obj
        while isinstance(node, (dict, list)) and node:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, rng.choice(keys)
            node = node[key]
            if rng.random() < 0.35:
                break
        return parent, key

    def _number_twist(self, value: Any) -> Any:
        rng = self.rng
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return copy.deepcopy(rng.choice(_WEIRD))
        return rng.choice((-value - 1, value * 10**20, value + 0.5, -1, value - 1))

    def _special(self) -> bytes:
        rng = self.rng
        choice = rng.randrange(9)
        if choice == 0:
            return b"[" * rng.randrange(1000, 60000)  # deeper than the JSON parser recurses
        if choice == 1:
            return b'{"v": 1, "n": ' + b"9" * rng.randrange(4400, 6000) + b"}"  # huge integer
        if choice == 2:
            return b"{" + b" " * (protocol.MAX_DATAGRAM + rng.randrange(1, 100)) + b"}"
        if choice == 3:  # too many rows
            body = json.loads(self._valid())
            body["rpcs"] = body["rpcs"] * 120 * 6
            return json.dumps(body).encode()[: protocol.MAX_DATAGRAM]
        if choice == 4:  # too many codes/exception keys
            body = json.loads(self._valid())
            body["rpcs"][0]["exceptions"] = {f"E{i}": 1 for i in range(rng.randrange(65, 200))}
            return json.dumps(body).encode()
        if choice == 5:  # a replay of an older snapshot
            source = f"pool-{rng.randrange(32)}"
            seq = self.seqs.get(source, 0)
            return message([], source, max(seq - rng.randrange(0, 3), 0))[0]
        if choice == 6:  # other bucket bounds
            body = json.loads(self._valid())
            body["buckets"] = [0.1, 1.0]
            return json.dumps(body).encode()
        if choice == 7:  # bad parts
            body = json.loads(self._valid())
            body["part"] = rng.choice(([5, 3], [0, 65], [-1, 2], [0], "0/1"))
            return json.dumps(body).encode()
        return b"\xef\xbb\xbf" + self._valid()  # a BOM: not JSON to a strict parser
