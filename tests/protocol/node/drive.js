'use strict';
// Drives reporter.js for the tests: one JSON command per stdin line, one JSON answer per line on
// stdout. Commands: {"record": [{service, method, code, seconds, count?, type?, exception?}]},
// {"begin": {service, method, type?, count?}} (RPCs left running), {"health": {status, checks}}, {"flush": true}, {"send": "<base64 datagram>"}, {"exit": true}.
// Every periodic push prints {"pushed": {seq, parts, ok}}. stdin closing or SIGTERM exits too,
// after the `final` snapshot.
//   node drive.js --socket PATH [--interval S] [--service NAME] [--version V] [--no-start]

const readline = require('readline');
const { Reporter } = require('./reporter');

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i].replace(/^--/, '');
    if (key.startsWith('no-')) out[key.slice(3)] = false;
    else { out[key] = argv[i + 1]; i += 1; }
  }
  return out;
}

const opts = args(process.argv.slice(2));
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const reporter = new Reporter({
  socket: opts.socket, interval: Number(opts.interval || 1), service: opts.service,
  version: opts.version, onPush: (pushed) => say({ pushed, counts: reporter.counts, sent: reporter.sent, waits: reporter.waits }),
});

let exiting = false;
async function exit() {
  if (exiting) return;
  exiting = true;
  const last = await reporter.close();
  say({ exited: last });
  process.exit(0);
}

async function run(cmd) {
  if (cmd.record) {
    let n = 0;
    for (const c of cmd.record) {
      for (let i = 0; i < (c.count || 1); i += 1) {
        reporter.record(c.service, c.method, c.code, c.seconds, c);
        n += 1;
      }
    }
    return { recorded: n };
  }
  if (cmd.begin) { // RPCs that start and never finish
    const c = cmd.begin;
    for (let i = 0; i < (c.count || 1); i += 1) reporter.begin(c.service, c.method, c.type);
    return { begun: c.count || 1 };
  }
  if (cmd.health) {
    reporter.setHealth(cmd.health.status, cmd.health.checks);
    return { health: reporter.health.status };
  }
  if (cmd.flush) return { flushed: await reporter.flush(), counts: reporter.counts };
  if (cmd.send !== undefined) return { sent: await reporter.sendOne(Buffer.from(cmd.send, 'base64')) };
  if (cmd.exit) return exit();
  return { error: `unknown command: ${JSON.stringify(cmd)}` };
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let cmd;
    try { cmd = JSON.parse(line); } catch (err) { return say({ error: `bad JSON: ${err.message}` }); }
    try {
      return say(await run(cmd));
    } catch (err) {
      return say({ error: err.message });
    }
  });
});
lines.on('close', () => { queue.then(exit); });
process.on('SIGTERM', () => { queue.then(exit); });

if (opts.start !== false) reporter.start();
say({ source: reporter.source, interval: reporter.interval });
