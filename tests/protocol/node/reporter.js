'use strict';
// A minimal reporter for the oracle-sidecar push protocol, version 1, written from
// docs/protocol.md, docs/metrics.md and `oracle-sidecar serve --help` alone (no Python source read).
// It counts RPCs per method and code into the classic histogram and pushes cumulative snapshots
// over a Unix datagram socket every interval, split into paced parts, with `final` on exit.

const crypto = require('crypto');
const os = require('os');
const unix = require('unix-dgram');

// Code names in gRPC's numeric order: Go's spelling (sent) and the gRPC spec's (also taken).
const CODES = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound',
  'AlreadyExists', 'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted',
  'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated'];
const SPEC_CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED',
  'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION',
  'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
  'UNAUTHENTICATED'];
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];
const TYPES = ['unary', 'client_stream', 'server_stream', 'bidi_stream'];
const STATUSES = ['healthy', 'degraded', 'down'];
const LIMITS = {
  datagram: 65536, rows: 512, parts: 64, name: 256, exceptionName: 128, text: 1024, checks: 63,
  exceptions: 63, health: 16384, series: 1000, maxWait: 50, budget: 0.5, finalBudget: 2,
};
const E = os.constants.errno;
const FULL = new Set([-E.EAGAIN, -E.EWOULDBLOCK, -E.ENOBUFS]);
const CC_CS = /^[\p{Cc}\p{Cs}]$/u; // the only code points a name or text must not hold

/** Cc and Cs code points replaced by U+FFFD, cut to `limit` code points; `empty` for "". */
function clean(text, limit, empty) {
  const points = Array.from(String(text), (c) => (CC_CS.test(c) ? '\uFFFD' : c));
  return points.length ? points.slice(0, limit).join('') : empty;
}

/** Go's name of a status: a number (grpc-js's status.code) or either spelling; else Unknown. */
function codeName(code) {
  const i = Number.isInteger(code) ? code : Math.max(CODES.indexOf(code), SPEC_CODES.indexOf(code));
  return CODES[i] || 'Unknown';
}

const bytes = (value) => Buffer.byteLength(JSON.stringify(value));
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

class Row {
  constructor(service, method, type) {
    Object.assign(this, { service, method, type, started: 0, sum: 0, max: 0, lastError: null });
    this.codes = {};
    this.hist = new Array(BUCKETS.length + 1).fill(0);
    this.exceptions = {};
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
    if (exception !== undefined && exception !== null) {
      let name = clean(exception, LIMITS.exceptionName, '\uFFFD');
      const full = Object.keys(this.exceptions).length >= LIMITS.exceptions - 1;
      if (!(name in this.exceptions) && full) name = '(other)';
      this.exceptions[name] = (this.exceptions[name] || 0) + 1;
    }
  }

  wire() {
    const row = {
      service: this.service, method: this.method, type: this.type, started: this.started,
      codes: this.codes, hist: this.hist, sum: this.sum, max: this.max,
    };
    if (Object.keys(this.exceptions).length) row.exceptions = this.exceptions;
    if (this.lastError) row.last_error = this.lastError;
    return row;
  }
}

class Reporter {
  /**
   * @param {object} opts socket (path), interval (seconds), service, version, onPush (called with
   *   {seq, parts, ok, final} after every push)
   */
  constructor(opts = {}) {
    this.path = opts.socket || process.env.ORACLE_METRICS_SOCKET
      || '/var/run/oracle-sidecar/metrics.sock';
    this.interval = opts.interval || 1;
    this.source = {
      id: crypto.randomBytes(8).toString('hex'), pid: process.pid, started: Date.now() / 1000,
    };
    if (opts.service) this.source.service = clean(opts.service, LIMITS.name, '\uFFFD');
    if (opts.version) this.source.version = clean(opts.version, LIMITS.name, '\uFFFD');
    this.seq = 1;
    this.rows = new Map();
    this.health = { status: 'healthy', checks: {} };
    this.counts = { dropped: 0, send_errors: 0, overflow: 0 };
    this.sent = 0; // datagrams handed to the kernel
    this.waits = 0; // sends that found the queue full and were retried (pacing)
    this.resume = 0; // the first part given up by the last snapshot: the next one starts there
    this.cursor = 0; // with more rows than 64 parts hold: the row the next snapshot starts at
    this.socket = unix.createSocket('unix_dgram');
    this.socket.on('error', () => {}); // every send passes a callback; nothing reaches here
    this.onPush = opts.onPush || null;
    this.timer = null;
    this.flushing = null;
    this.closed = false;
  }

  start() {
    this.timer = setInterval(() => { this.flush(); }, this.interval * 1000);
    return this;
  }

  row(service, method, type) {
    const s = clean(service, LIMITS.name, 'unknown');
    const m = clean(method, LIMITS.name, 'unknown');
    const key = JSON.stringify([s, m]);
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

  /** Checks in order while the encoded health fits 16 384 bytes; a note says what was left out. */
  setHealth(status, checks = {}) {
    if (!STATUSES.includes(status)) {
      throw new TypeError(`health status ${JSON.stringify(status)}: one of ${STATUSES.join(', ')}`);
    }
    const entries = Object.entries(checks);
    const kept = {};
    let n = 0;
    for (const [name, text] of entries.slice(0, LIMITS.checks)) {
      const key = clean(name, LIMITS.name, '\uFFFD');
      const value = clean(text, LIMITS.text, '');
      if (bytes({ status, checks: { ...kept, [key]: value } }) + 64 > LIMITS.health) break;
      kept[key] = value;
      n += 1;
    }
    if (n < entries.length) kept.health_checks = `${entries.length - n} checks left out`;
    this.health = { status, checks: kept };
  }

  /** The datagrams of one snapshot: every part repeats the header, health included. */
  encode(final = false) {
    const header = {
      v: 1, source: this.source, seq: this.seq, time: Date.now() / 1000, part: [0, 1],
      buckets: BUCKETS, reporter: { ...this.counts },
    };
    if (final) header.final = true;
    const health = final ? { ...this.health, status: 'down' } : this.health;
    const room = LIMITS.datagram - 1
      - bytes({ ...header, part: [LIMITS.parts, LIMITS.parts], health, rpcs: [] });
    const rows = Array.from(this.rows.values());
    const start = this.cursor < rows.length ? this.cursor : 0;
    const chunks = [[]];
    let used = 0;
    let taken = 0;
    for (; taken < rows.length; taken += 1) {
      const text = JSON.stringify(rows[(start + taken) % rows.length].wire());
      const size = Buffer.byteLength(text) + 1;
      if (size > room) { // only possible with \uXXXX escapes, which JSON.stringify never writes
        console.error(`reporter: a row of ${size} bytes cannot fit a datagram; left out`);
        continue;
      }
      let chunk = chunks[chunks.length - 1];
      if (chunk.length && (used + size > room || chunk.length >= LIMITS.rows)) {
        if (chunks.length === LIMITS.parts) break; // the rest goes first in the next snapshot
        chunk = [];
        chunks.push(chunk);
        used = 0;
      }
      chunk.push(text);
      used += size;
    }
    this.cursor = taken < rows.length ? (start + taken) % rows.length : 0;
    return chunks.map((chunk, i) => {
      // Health in every part: the spec lets later parts leave it out, older receivers require it.
      const head = { ...header, part: [i, chunks.length], health };
      return Buffer.from(`${JSON.stringify(head).slice(0, -1)},"rpcs":[${chunk.join(',')}]}`);
    });
  }

  /** Minus the errno of one send, or 0. */
  sendOne(buf) {
    return new Promise((resolve) => {
      this.socket.send(buf, 0, buf.length, this.path, (err) => resolve(err ? err.errno : 0));
    });
  }

  /**
   * Sends the parts in order, starting with the first one the last snapshot gave up; on a full
   * queue it retries the same part after 1 ms, doubling to 50 ms, as long as the sending has
   * taken less than `budget` seconds since the first part. Returns how many parts were given up.
   */
  async send(parts, budget) {
    const first = this.resume < parts.length ? this.resume : 0;
    const deadline = Date.now() + budget * 1000;
    for (let k = 0; k < parts.length; k += 1) {
      const i = (first + k) % parts.length;
      let wait = 1;
      for (;;) {
        const err = await this.sendOne(parts[i]);
        if (err === 0) break;
        if (!FULL.has(err) || Date.now() >= deadline) {
          this.counts.dropped += parts.length - k;
          if (!FULL.has(err)) this.counts.send_errors += 1;
          this.resume = FULL.has(err) ? i : 0;
          return parts.length - k;
        }
        await sleep(wait);
        this.waits += 1;
        wait = Math.min(wait * 2, LIMITS.maxWait);
      }
      this.sent += 1;
    }
    this.resume = 0;
    return 0;
  }

  /** Takes one snapshot and sends all its parts; a flush still sending is joined, not doubled. */
  flush(final = false) {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      const seq = this.seq;
      const parts = this.encode(final);
      this.seq += 1;
      // A part of the final snapshot that is lost is lost for good (no next snapshot repairs
      // it), and it follows a push whose parts may still fill the queue: it may wait longer.
      const budget = final ? LIMITS.finalBudget : Math.min(this.interval / 2, LIMITS.budget);
      const lost = await this.send(parts, budget);
      const pushed = { seq, parts: parts.length, ok: lost === 0, final };
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

module.exports = { Reporter, CODES, BUCKETS, LIMITS, clean, codeName };
