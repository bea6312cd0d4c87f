'use strict';
// A minimal reporter for the oracle-sidecar push protocol, version 1, written from
// docs/protocol.md, docs/metrics.md and `oracle-sidecar serve --help` alone (no Python source read).
// It counts RPCs per method and code into the classic histogram and pushes cumulative snapshots
// over a Unix datagram socket every interval, split into paced parts, with `final` on exit.

const crypto = require('crypto');
const os = require('os');
const unix = require('unix-dgram');

const CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
  'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED',
  'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];
const TYPES = ['unary', 'client_stream', 'server_stream', 'bidi_stream'];
const STATUSES = ['healthy', 'degraded', 'down'];
const LIMITS = {
  datagram: 65536, rows: 512, parts: 64, name: 256, text: 1024, checks: 63, exceptions: 63,
  series: 1000,
};
const E = os.constants.errno;
const FULL = new Set([-E.EAGAIN, -E.EWOULDBLOCK, -E.ENOBUFS]);

// Not printable: control, format, surrogate, private-use and unassigned code points, and every
// separator except the ASCII space.
const NOT_PRINTABLE = /[\p{C}\p{Z}]/u;

function cut(text, limit) {
  const points = Array.from(String(text));
  return points.length > limit ? points.slice(0, limit).join('') : points.join('');
}

/** A name the sidecar accepts: printable, 1..256 code points. */
function cleanName(text) {
  const points = Array.from(String(text)).slice(0, LIMITS.name)
    .map((c) => (c !== ' ' && NOT_PRINTABLE.test(c) ? '\uFFFD' : c));
  return points.length ? points.join('') : '\uFFFD';
}

function codeName(code) {
  return CODES.includes(code) ? code : 'UNKNOWN';
}

class Row {
  constructor(service, method, type) {
    this.service = service;
    this.method = method;
    this.type = type;
    this.started = 0;
    this.codes = {};
    this.hist = new Array(BUCKETS.length + 1).fill(0);
    this.sum = 0;
    this.max = 0;
    this.exceptions = {};
    this.lastError = null;
  }

  finish(code, seconds, exception) {
    const d = Math.max(0, Number(seconds) || 0);
    let i = 0;
    while (i < BUCKETS.length && d > BUCKETS[i]) i += 1;
    this.hist[i] += 1;
    this.sum += d;
    this.max = Math.max(this.max, d);
    this.codes[code] = (this.codes[code] || 0) + 1;
    if (code !== 'OK') this.lastError = [code, Date.now() / 1000];
    if (exception !== undefined) {
      let name = cleanName(exception);
      const known = Object.keys(this.exceptions);
      if (!(name in this.exceptions) && known.length >= LIMITS.exceptions - 1) name = '(other)';
      this.exceptions[name] = (this.exceptions[name] || 0) + 1;
    }
  }

  wire() {
    const row = {
      service: this.service, method: this.method, type: this.type, started: this.started,
      codes: { ...this.codes }, hist: this.hist.slice(), sum: this.sum, max: this.max,
    };
    if (Object.keys(this.exceptions).length) row.exceptions = { ...this.exceptions };
    if (this.lastError) row.last_error = this.lastError.slice();
    return row;
  }
}

class Reporter {
  /**
   * @param {object} opts socket (path), interval (seconds), service, version, onPush;
   *   pace: seconds a snapshot may wait for room in the sidecar's queue (default: one interval,
   *   when the next, fresher snapshot is due), finalPace: the same for the last one (2 s)
   */
  constructor(opts = {}) {
    this.path = opts.socket || process.env.ORACLE_METRICS_SOCKET
      || '/var/run/oracle-sidecar/metrics.sock';
    this.interval = opts.interval || 1;
    this.pace = opts.pace !== undefined ? opts.pace : this.interval;
    this.finalPace = opts.finalPace !== undefined ? opts.finalPace : 2;
    this.source = {
      id: crypto.randomBytes(8).toString('hex'), pid: process.pid, started: Date.now() / 1000,
    };
    if (opts.service) this.source.service = cut(opts.service, LIMITS.name);
    if (opts.version) this.source.version = cut(opts.version, LIMITS.name);
    this.seq = 0;
    this.rows = new Map();
    this.health = { status: 'healthy', checks: {} };
    this.counts = { dropped: 0, send_errors: 0, overflow: 0 };
    this.sent = 0; // datagrams handed to the kernel
    this.waits = 0; // sends that found the sidecar's queue full and waited (pacing)
    this.socket = unix.createSocket('unix_dgram');
    this.socket.on('error', () => {}); // every send passes a callback; nothing reaches here
    this.timer = null;
    this.flushing = null;
    this.closed = false;
    this.onPush = opts.onPush || null; // called with {seq, parts, ok, final} after every push
  }

  start() {
    this.timer = setInterval(() => { this.flush(); }, this.interval * 1000);
    return this;
  }

  row(service, method, type = 'unary') {
    const s = cleanName(service);
    const m = cleanName(method);
    const key = `${s}\u0000${m}`;
    let row = this.rows.get(key);
    if (!row) {
      if (this.rows.size >= LIMITS.series) return null;
      row = new Row(s, m, TYPES.includes(type) ? type : 'unary');
      this.rows.set(key, row);
    }
    return row;
  }

  /** An RPC started; returns finish(code, seconds, exception?). */
  begin(service, method, type = 'unary') {
    const row = this.row(service, method, type);
    if (!row) {
      this.counts.overflow += 1;
      return () => {};
    }
    row.started += 1;
    let done = false;
    return (code, seconds, exception) => {
      if (done) return;
      done = true;
      row.finish(codeName(code), seconds, exception);
    };
  }

  /** A finished RPC in one call. */
  record(service, method, code, seconds, opts = {}) {
    this.begin(service, method, opts.type)(code, seconds, opts.exception);
  }

  setHealth(status, checks = {}) {
    const clean = {};
    for (const [name, text] of Object.entries(checks).slice(0, LIMITS.checks)) {
      clean[cleanName(name)] = cut(text, LIMITS.text);
    }
    this.health = { status: STATUSES.includes(status) ? status : 'down', checks: clean };
  }

  /** The datagrams of one snapshot: every part repeats the header and carries `part`. */
  encode(final = false) {
    const header = {
      v: 1, source: this.source, seq: this.seq, time: Date.now() / 1000, part: [0, 1],
      buckets: BUCKETS, health: this.health, reporter: { ...this.counts },
    };
    if (final) header.final = true;
    const rows = Array.from(this.rows.values(), (r) => JSON.stringify(r.wire()));
    // Room for the rows: the header with the widest `part` and the `"rpcs":[]` around them.
    const room = LIMITS.datagram
      - Buffer.byteLength(JSON.stringify({ ...header, part: [LIMITS.parts, LIMITS.parts], rpcs: [] }));
    const chunks = [[]];
    let used = 0;
    for (const text of rows) {
      const size = Buffer.byteLength(text) + 1;
      let chunk = chunks[chunks.length - 1];
      if (chunk.length && (used + size > room || chunk.length >= LIMITS.rows)) {
        chunk = [];
        chunks.push(chunk);
        used = 0;
      }
      if (size > room) throw new Error(`one row is larger than a datagram: ${size} bytes`);
      chunk.push(text);
      used += size;
    }
    if (chunks.length > LIMITS.parts) throw new Error(`${chunks.length} parts; at most ${LIMITS.parts}`);
    return chunks.map((chunk, i) => {
      const head = JSON.stringify({ ...header, part: [i, chunks.length] });
      return Buffer.from(`${head.slice(0, -1)},"rpcs":[${chunk.join(',')}]}`);
    });
  }

  /** One errno-style send result (0, or minus the errno). */
  sendOne(buf) {
    return new Promise((resolve) => {
      this.socket.send(buf, 0, buf.length, this.path, (err) => resolve(err ? err.errno : 0));
    });
  }

  /** Sends one part, waiting (up to `deadline`) while the sidecar's queue is full. */
  async sendPart(buf, deadline) {
    let wait = 1;
    for (;;) {
      const err = await this.sendOne(buf);
      if (err === 0) {
        this.sent += 1;
        return true;
      }
      if (!FULL.has(err)) {
        this.counts.send_errors += 1;
        return false;
      }
      if (Date.now() + wait > deadline) return false;
      this.waits += 1;
      await new Promise((r) => { setTimeout(r, wait); });
      wait = Math.min(wait * 2, 20);
    }
  }

  /** Takes one snapshot and sends all its parts; a snapshot with a lost part counts one drop. */
  flush(final = false) {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      const parts = this.encode(final);
      this.seq += 1;
      const deadline = Date.now() + (final ? this.finalPace : this.pace) * 1000;
      let ok = true;
      for (const buf of parts) {
        if (!(await this.sendPart(buf, deadline))) {
          ok = false;
          break;
        }
      }
      if (!ok) this.counts.dropped += 1;
      const pushed = { seq: this.seq - 1, parts: parts.length, ok, final };
      if (this.onPush) this.onPush(pushed);
      return pushed;
    })().finally(() => { this.flushing = null; });
    return this.flushing;
  }

  /** The last snapshot, `final` on every part; then the socket closes. */
  async close() {
    if (this.closed) return null;
    this.closed = true;
    clearInterval(this.timer);
    if (this.flushing) await this.flushing;
    const result = await this.flush(true);
    this.socket.close();
    return result;
  }
}

module.exports = { Reporter, CODES, BUCKETS, LIMITS, cleanName };
