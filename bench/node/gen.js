// The load generator of bench/compare.py: one Node process, raw `net` sockets speaking
// WebSocket (the upgrade written by hand, masked frames built once and reused, incoming frames
// parsed only as far as counting needs). It runs one scenario against one server and prints one
// JSON line with the counts and the CPU times, taken from /proc, of the server process(es), of
// itself and of the whole machine over the timed window.
//
// Usage: node gen.js '<spec JSON>'   (bench/compare.py writes the spec; see `main` below)
"use strict";

const net = require("node:net");
const crypto = require("node:crypto");
const fs = require("node:fs");

const spec = JSON.parse(process.argv[2]);
const HOST = "127.0.0.1";
const CLK_TCK = spec.clk_tck || 100;
const TEXT = "hello from the comparison benchmark";

// ---------------------------------------------------------------------------------------------
// /proc

function procCpu(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime, fields 14 and 15
}

function procRssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "latin1"));
  return m ? Number(m[1]) : 0;
}

/** Busy CPU seconds from /proc/stat: of the whole machine ("cpu") and of one core ("cpuN"). */
function busy() {
  const out = {};
  for (const line of fs.readFileSync("/proc/stat", "latin1").split("\n")) {
    if (!line.startsWith("cpu")) break;
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    const parts = line.split(/\s+/);
    const v = parts.slice(1, 9).map(Number);
    out[parts[0]] = (v.reduce((a, b) => a + b, 0) - v[3] - v[4]) / CLK_TCK;
  }
  return out;
}

function selfCpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function snapshot(count) {
  const b = busy();
  return {
    t: performance.now() / 1000,
    count,
    server: spec.pids.reduce((a, pid) => a + procCpu(pid), 0),
    gen: selfCpu(),
    machine: b.cpu,
    serverCore: spec.server_core === null ? null : b[`cpu${spec.server_core}`],
  };
}

const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
const nowUs = () => Math.round(performance.now() * 1000);

// ---------------------------------------------------------------------------------------------
// WebSocket frames

/** A masked client text frame (the mask key is random, chosen once per built frame). */
function frame(text, opcode = 0x1) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const buf = Buffer.allocUnsafe(hl + 4 + n);
  buf[0] = 0x80 | opcode;
  if (n < 126) {
    buf[1] = 0x80 | n;
  } else if (n < 65536) {
    buf[1] = 0x80 | 126;
    buf.writeUInt16BE(n, 2);
  } else {
    buf[1] = 0x80 | 127;
    buf.writeUInt32BE(0, 2);
    buf.writeUInt32BE(n, 6);
  }
  crypto.randomFillSync(buf, hl, 4);
  for (let i = 0; i < n; i++) buf[hl + 4 + i] = payload[i] ^ buf[hl + (i & 3)];
  return buf;
}

/** One pre-built frame, and k copies of it back to back for one write of k messages. */
class Repeated {
  constructor(text) {
    this.one = frame(text);
    this.cache = [Buffer.alloc(0), this.one];
  }
  times(k) {
    let b = this.cache[k];
    if (b === undefined) {
      b = Buffer.concat(Array(k).fill(this.one));
      if (k <= 256) this.cache[k] = b;
    }
    return b;
  }
}

const PONG_EIO = frame("3"); // Engine.IO pong, the answer to the server's "2"

let nextLocal = 0;
/** Source addresses 127.0.0.2-127.0.0.17 in turn, so that many connections (and the TIME_WAIT
 * ones left by the connect scenario) do not run out of ephemeral ports on one address. */
function localAddress() {
  nextLocal = (nextLocal + 1) % 16;
  return `127.0.0.${nextLocal + 2}`;
}

/**
 * A client connection: the HTTP upgrade, then a minimal frame parser. Hooks:
 *   onText(conn, buf, start, end)  every text frame (the payload is buf[start:end])
 *   onChunk(conn)                  after each chunk read from the socket (batch writes here)
 */
class Conn {
  constructor(port, path, { spread = false } = {}) {
    this.buf = null;
    this.upgraded = false;
    this.closed = false;
    this.pending = 0;
    this.onText = null;
    this.onMessage = () => {};
    this.onChunk = null;
    this.onFail = null;
    const opts = { port, host: HOST, noDelay: true };
    if (spread) opts.localAddress = localAddress();
    const sock = (this.sock = net.connect(opts));
    sock.setNoDelay(true);
    sock.on("connect", () => {
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\n` +
          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
          "Sec-WebSocket-Version: 13\r\n\r\n",
      );
    });
    sock.on("data", (d) => this.data(d));
    sock.on("error", (e) => this.fail(e.message));
    sock.on("close", () => {
      if (!this.closed) this.fail("closed by the server");
    });
  }

  fail(why) {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    if (this.onFail) this.onFail(this, why);
  }

  close() {
    this.closed = true;
    this.sock.destroy();
  }

  write(b) {
    if (!this.closed) this.sock.write(b);
  }

  data(d) {
    let buf = this.buf === null ? d : Buffer.concat([this.buf, d]);
    let pos = 0;
    if (!this.upgraded) {
      const i = buf.indexOf("\r\n\r\n");
      if (i < 0) {
        this.buf = buf;
        return;
      }
      const status = buf.toString("latin1", 0, i).split("\r\n")[0];
      if (!status.startsWith("HTTP/1.1 101")) {
        this.fail(`upgrade refused: ${status}`);
        return;
      }
      this.upgraded = true;
      pos = i + 4;
    }
    const len = buf.length;
    while (pos + 2 <= len && !this.closed) {
      const b1 = buf[pos + 1] & 0x7f;
      let hl = 2;
      let n = b1;
      if (b1 === 126) {
        if (pos + 4 > len) break;
        n = buf.readUInt16BE(pos + 2);
        hl = 4;
      } else if (b1 === 127) {
        if (pos + 10 > len) break;
        n = buf.readUInt32BE(pos + 2) * 2 ** 32 + buf.readUInt32BE(pos + 6);
        hl = 10;
      }
      if (pos + hl + n > len) break;
      const op = buf[pos] & 0x0f;
      const s = pos + hl;
      pos = s + n;
      if (op === 1) this.onText(this, buf, s, pos);
      else if (op === 9) this.write(frame(buf.toString("latin1", s, pos), 0xa));
      else if (op === 8) this.fail(`close frame ${n >= 2 ? buf.readUInt16BE(s) : ""}`);
    }
    this.buf = pos < len ? buf.subarray(pos) : null;
    if (this.onChunk !== null) this.onChunk(this);
  }
}

/**
 * A Socket.IO v5 client over Engine.IO v4, websocket only. `auth` goes in the CONNECT packet;
 * `nsp` other than "/" is prefixed. Resolves with the connection once CONNECT is answered;
 * `conn.sid` is the namespace sid. Afterwards Engine.IO pings are answered and every other
 * text frame goes to `conn.onMessage(conn, buf, start, end)`.
 */
function openSio(port, { auth = null, nsp = "/", spread = false } = {}) {
  return new Promise((resolve, reject) => {
    const c = new Conn(port, "/socket.io/?EIO=4&transport=websocket", { spread });
    c.t0 = performance.now();
    const prefix = nsp === "/" ? "" : `${nsp},`;
    let state = 0;
    c.onFail = (_, why) => (state < 2 ? reject(new Error(why)) : failed(c, why));
    c.onText = (conn, buf, s, e) => {
      if (state === 2) {
        if (e - s === 1 && buf[s] === 0x32) conn.write(PONG_EIO);
        else conn.onMessage(conn, buf, s, e);
        return;
      }
      const text = buf.toString("utf8", s, e);
      if (state === 0 && text[0] === "0") {
        state = 1;
        conn.write(frame(`40${prefix}${auth ? JSON.stringify(auth) : ""}`));
      } else if (state === 1 && text.startsWith(`40${prefix}`)) {
        state = 2;
        conn.sid = JSON.parse(text.slice(2 + prefix.length)).sid;
        resolve(conn);
      } else if (state === 1 && text.startsWith(`44${prefix}`)) {
        reject(new Error(`connect_error ${text}`));
        conn.close();
      } else if (text === "2") {
        conn.write(PONG_EIO);
      }
    };
  });
}

/** A client of wxio's raw JSON endpoint /ws; resolves once the `connect` envelope has given the
 * client id (`conn.sid`). Later text frames go to `conn.onMessage`. */
function openRaw(port) {
  return new Promise((resolve, reject) => {
    const [ts, sign] = signer.now();
    const c = new Conn(port, `/ws?app=${spec.app}&timestamp=${ts}&sign=${sign}`);
    let ready = false;
    c.onFail = (_, why) => (ready ? failed(c, why) : reject(new Error(why)));
    c.onText = (conn, buf, s, e) => {
      if (ready) {
        conn.onMessage(conn, buf, s, e);
        return;
      }
      const env = JSON.parse(buf.toString("utf8", s, e));
      if (env.data.action !== "connect") {
        reject(new Error(`refused: ${JSON.stringify(env)}`));
        conn.close();
        return;
      }
      ready = true;
      conn.sid = env.meta.client;
      resolve(conn);
    };
  });
}

/** md5(app + key + timestamp) for the current millisecond (the guide's md5 scheme). */
const signer = {
  ts: 0,
  sign: "",
  now() {
    const ts = Date.now();
    if (ts !== this.ts) {
      this.ts = ts;
      this.sign = crypto.createHash("md5").update(`${spec.app}${spec.key}${ts}`).digest("hex");
    }
    return [this.ts, this.sign];
  },
};

let failure = null;
function failed(conn, why) {
  if (failure === null && running) failure = `a connection failed during the run: ${why}`;
}
let running = true;

async function openMany(n, concurrency, open) {
  const out = new Array(n);
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      out[i] = await open(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

/** Warm up, then time `spec.duration` seconds (`onStart()` when timing starts); fails when the
 * count stops moving for 5 s. */
async function measure(count, onStart = () => {}) {
  await sleep(spec.warmup);
  if (failure) throw new Error(failure);
  onStart();
  const a = snapshot(count());
  let last = a.count;
  let lastMove = a.t;
  const end = a.t + spec.duration;
  for (;;) {
    const now = performance.now() / 1000;
    if (now >= end) break;
    await sleep(Math.min(0.25, end - now));
    if (failure) throw new Error(failure);
    const c = count();
    if (c !== last) {
      last = c;
      lastMove = performance.now() / 1000;
    } else if (performance.now() / 1000 - lastMove > 5) {
      throw new Error(`stalled: no progress for 5 s (count ${c})`);
    }
  }
  const b = snapshot(count());
  const seconds = b.t - a.t;
  return {
    seconds,
    count: b.count - a.count,
    rate: (b.count - a.count) / seconds,
    server_cpu_s: b.server - a.server,
    gen_cpu_s: b.gen - a.gen,
    machine_cpu_s: b.machine - a.machine,
    server_core_busy_s: a.serverCore === null ? null : b.serverCore - a.serverCore,
  };
}

function closeAll(conns) {
  running = false;
  for (const c of conns) c.close();
}

// ---------------------------------------------------------------------------------------------
// Scenarios

const isEvent = (buf, s) => buf[s] === 0x34 && buf[s + 1] === 0x32; // "42"

/** Pairs ping-pong: every client starts `window` messages to its partner, and every message a
 * client receives makes it send one more, so each client keeps `window` in flight (a refused
 * message is replaced too). Frames are built once per client (`conn.frameText`), or per message
 * by `build(conn)` where they must change (signatures). */
async function pingPong(conns, isDelivery, build) {
  let delivered = 0;
  let refused = 0;
  let sent = 0;
  for (let i = 0; i < conns.length; i += 2) {
    conns[i].partner = conns[i + 1];
    conns[i + 1].partner = conns[i];
  }
  for (const c of conns) {
    c.out = build ? null : new Repeated(c.frameText(c.partner.sid));
    c.onMessage = (conn, buf, s, e) => {
      const what = isDelivery(buf, s, e); // 1: a delivery, 2: a refusal, to be replaced
      if (what === 1) delivered++;
      else if (what === 2) refused++;
      if (what !== 0) conn.pending++;
    };
    c.onChunk = (conn) => {
      const k = conn.pending;
      if (k === 0 || !running) return;
      conn.pending = 0;
      sent += k;
      if (conn.out !== null) conn.write(conn.out.times(k));
      else {
        const parts = [];
        for (let j = 0; j < k; j++) parts.push(build(conn));
        conn.write(parts.length === 1 ? parts[0] : Buffer.concat(parts));
      }
    };
  }
  for (const c of conns) {
    if (c.out !== null) c.write(c.out.times(spec.window));
    else for (let j = 0; j < spec.window; j++) c.write(build(c));
    sent += spec.window;
  }
  const m = await measure(() => delivered);
  // Stop sending, let what is in flight arrive (up to 3 s): every message sent must have been
  // delivered or refused, or the server lost it.
  running = false;
  const until = performance.now() + 3000;
  while (delivered + refused < sent && performance.now() < until) await sleep(0.05);
  m.undelivered = sent - delivered - refused;
  closeAll(conns);
  return m;
}

async function relay() {
  const conns = await openMany(2 * spec.pairs, 50, () => openSio(spec.ports[0]));
  for (const c of conns) c.frameText = (to) => `42["relay",{"to":"${to}","text":"${TEXT}"}]`;
  const m = await pingPong(conns, (buf, s) => (isEvent(buf, s) ? 1 : 0));
  return { ...m, clients: conns.length };
}

function envelope(target) {
  const [ts, sign] = signer.now();
  return (
    `{"meta":{"timestamp":${ts},"app":"${spec.app}","sign":"${sign}","target":"${target}"},` +
    `"data":{"action":"sendToOthers","payload":{"text":"${TEXT}"}}}`
  );
}

/** Counts deliveries (`exchange`) and denials of the routing core; results are just read. */
function coreCounter() {
  const counts = { deny: 0, firstDeny: null };
  const isExchange = (buf, s, e) => {
    const text = buf.latin1Slice(s, e);
    if (text.includes('"action":"exchange"')) return 1;
    if (text.includes('"action":"deny"')) {
      // The message will never arrive: the sender sends another to keep its window full.
      counts.deny++;
      if (counts.firstDeny === null) counts.firstDeny = buf.toString("utf8", s, e);
      return 2;
    }
    return 0;
  };
  return [counts, isExchange];
}

async function coreRun(conns) {
  const [counts, isExchange] = coreCounter();
  const m = await pingPong(conns, isExchange, spec.sio
    ? (c) => frame(`42["requestMessage",${envelope(c.partner.sid)}]`)
    : (c) => frame(envelope(c.partner.sid)));
  if (counts.deny) m.denied = counts.deny;
  if (counts.firstDeny) m.first_deny = counts.firstDeny.slice(0, 300);
  return { ...m, clients: conns.length };
}

async function coreRaw() {
  // spec.ports: one port, or [a, b] with pairs split across the two nodes.
  const [a, b] = [spec.ports[0], spec.ports[spec.ports.length - 1]];
  const conns = await openMany(2 * spec.pairs, 50, (i) => openRaw(i % 2 === 0 ? a : b));
  return coreRun(conns);
}

async function coreSio() {
  const conns = await openMany(2 * spec.pairs, 50, () => {
    const [ts, sign] = signer.now();
    return openSio(spec.ports[0], { auth: { app: spec.app, timestamp: ts, sign } });
  });
  return coreRun(conns);
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function latency() {
  const conns = await openMany(2 * spec.pairs, 50, () => openSio(spec.ports[0]));
  for (let i = 0; i < conns.length; i += 2) {
    conns[i].partner = conns[i + 1];
    conns[i + 1].partner = conns[i];
  }
  let delivered = 0;
  let record = false;
  const lat = [];
  for (const c of conns) {
    c.onMessage = (_, buf, s, e) => {
      if (!isEvent(buf, s)) return;
      delivered++;
      if (record) {
        const text = buf.latin1Slice(s, e);
        const i = text.indexOf('"t":');
        lat.push(nowUs() - parseInt(text.slice(i + 4), 10));
      }
    };
  }
  const t0 = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - t0) / 1000) * spec.rate);
    for (; sent < due; sent++) {
      const c = conns[sent % conns.length];
      c.write(frame(`42["relay",{"to":"${c.partner.sid}","t":${nowUs()},"text":"${TEXT}"}]`));
    }
  }, 1);
  const m = await measure(
    () => delivered,
    () => (record = true),
  );
  record = false;
  clearInterval(timer);
  closeAll(conns);
  lat.sort((x, y) => x - y);
  return {
    ...m,
    samples: lat.length,
    p50_ms: percentile(lat, 50) / 1000,
    p99_ms: percentile(lat, 99) / 1000,
    max_ms: lat.length ? lat[lat.length - 1] / 1000 : null,
    offered: spec.rate,
  };
}

async function broadcast() {
  const n = spec.clients;
  const conns = await openMany(n, 100, () => openSio(spec.ports[0], { spread: true }));
  const sender = conns[0];
  const out = new Repeated(`42["bcast",{"text":"${TEXT}"}]`);
  let delivered = 0;
  let sent = 0;
  const topUp = () => {
    const k = spec.window - (sent - Math.floor(delivered / n));
    if (k > 0 && running) {
      sent += k;
      sender.write(out.times(k));
    }
  };
  for (const c of conns) {
    c.onMessage = (_, buf, s) => {
      if (isEvent(buf, s)) delivered++;
    };
    c.onChunk = topUp;
  }
  topUp();
  const m = await measure(() => delivered);
  closeAll(conns);
  return { ...m, clients: n };
}

async function connectRate() {
  let done = 0;
  let errors = 0;
  let firstError = null;
  const times = [];
  let record = false;
  async function worker() {
    while (running) {
      try {
        const c = await openSio(spec.ports[0], { spread: true });
        const ms = performance.now() - c.t0;
        c.close();
        done++;
        if (record) times.push(ms);
      } catch (e) {
        errors++;
        if (firstError === null) firstError = e.message;
        if (errors > 1000) throw new Error(`too many failed connects: ${firstError}`);
      }
    }
  }
  const workers = Array.from({ length: spec.concurrency }, worker);
  const run = (async () => {
    const r = await measure(
      () => done,
      () => (record = true),
    );
    running = false;
    return r;
  })();
  const m = await Promise.race([run, Promise.all(workers).then(() => null)]);
  running = false;
  await Promise.allSettled(workers);
  if (m === null) throw new Error(`connect workers ended early: ${firstError}`);
  times.sort((x, y) => x - y);
  return {
    ...m,
    errors,
    first_error: firstError,
    concurrency: spec.concurrency,
    p50_ms: percentile(times, 50),
    p99_ms: percentile(times, 99),
  };
}

async function idle() {
  const pid = spec.pids[0];
  const conns = [];
  const open = () => openSio(spec.ports[0], { spread: true });
  const connectTo = async (total) => {
    const more = await openMany(total - conns.length, spec.concurrency, open);
    conns.push(...more);
  };
  await connectTo(spec.base);
  await sleep(spec.settle);
  const base = procRssKb(pid);
  const cpu0 = procCpu(pid);
  const g0 = selfCpu();
  const t0 = performance.now();
  const levels = [];
  for (const level of spec.levels) {
    await connectTo(spec.base + level);
    await sleep(spec.settle);
    if (failure) throw new Error(failure);
    const rss = procRssKb(pid);
    levels.push({ clients: level, rss_kb: rss, kb_per_conn: (rss - base) / level });
  }
  const seconds = (performance.now() - t0) / 1000;
  const m = {
    base_clients: spec.base,
    base_rss_kb: base,
    levels,
    seconds,
    server_cpu_s: procCpu(pid) - cpu0,
    gen_cpu_s: selfCpu() - g0,
  };
  closeAll(conns);
  return m;
}

const SCENARIOS = {
  relay,
  latency,
  broadcast,
  connect: connectRate,
  idle,
  "core-raw": coreRaw,
  "core-sio": coreSio,
  cross: coreRaw,
};

async function main() {
  const fn = SCENARIOS[spec.scenario];
  if (!fn) throw new Error(`unknown scenario ${spec.scenario}`);
  const result = await fn();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  // Give the kernel a moment to send what was written, then leave without waiting for closes.
  setTimeout(() => process.exit(0), 50);
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ error: e.message })}\n`);
  setTimeout(() => process.exit(1), 50);
});
