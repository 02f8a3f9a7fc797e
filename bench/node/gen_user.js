// bench/node/gen.js with three more scenarios, for the routing core with user ids (clients that
// connect with a `userId`, so that every message sent to them is kept in their user's inbox
// until they acknowledge it). bench/compare.py runs this file instead of gen.js for the
// `core-user` and `idle-user` scenarios, bench/validate_capacity.py for `capacity`.
//
// It runs gen.js's own code (its WebSocket client, frames, signer, /proc readings, `pingPong`,
// `measure` and `main`), with its scenario table replaced by the one below, so that these
// scenarios are driven exactly as `core-raw` and `idle` are.
//
//   core-user   raw /ws clients, client i with userId "u<i>", in pairs; each keeps `window`
//               signed sendToOthers in flight to its partner, as core-raw, and acknowledges
//               every exchange it receives ({"data":{"action":"ack"},"meta":{"msgId":...}}),
//               in the same write as the messages that exchange triggers. The sender's `result`
//               is counted by its guarantee (until_acked: kept; sent: not kept).
//               `spec.sio`: socket.io clients instead ({app, timestamp, sign, userId} in the
//               CONNECT auth, requestMessage as core-sio), which acknowledge as a socket.io
//               client with an ack callback does: an exchange the server sent with an ack id
//               (42<id>["responseMessage",...]) is answered 43<id>[]; one without is not.
//               `spec.ack` false: nothing is acknowledged (a client of the predecessor, which
//               kept nothing).
//   idle-user   gen.js's `idle` with raw /ws clients that each name their own user id.
//   capacity    (bench/validate_capacity.py) `spec.users` raw /ws clients, client i with userId
//               "u<first+i>" (`spec.first`, 0 by default), spread round-robin over `spec.ports`,
//               `spec.concurrency` connecting at a time; then `spec.rate` signed sendToOthers a
//               second in all, paced by a 1 ms timer (as `latency`), each from a random client
//               to another random client's client id; every exchange received is acknowledged
//               at once. Results are counted by status and guarantee, deliveries, acks and
//               denials, over `spec.duration` after `spec.warmup` (`measure`).
//               `spec.barrier`: once connected (and `spec.settle` s later), it prints
//               {"event":"connected"} and waits for a line on stdin before sending; it prints
//               {"event":"start"} and {"event":"end"} at the edges of the timed window, so that
//               the caller can read its own counters over the same window.
//
// Usage: node gen_user.js '<spec JSON>'   (as gen.js)
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

function userScenarios() {
  // This function's text runs inside gen.js's scope (see the end of this file): spec, signer,
  // Conn, frame, openSio, openMany, pingPong, envelope, measure, closeAll, failed, sleep,
  // procRssKb, procCpu and selfCpu are gen.js's.

  /** A raw /ws client naming a user id (the app's user_id = "client" policy lets a signed
   * client do so); resolves once the `connect` envelope has given its client id. */
  function openRawUser(port, user, spread) {
    return new Promise((resolve, reject) => {
      const [ts, sign] = signer.now();
      const url = `/ws?app=${spec.app}&timestamp=${ts}&sign=${sign}&userId=${user}`;
      const c = new Conn(port, url, { spread });
      let ready = false;
      c.onFail = (_, why) => (ready ? failed(c, why) : reject(new Error(why)));
      c.onText = (conn, buf, s, e) => {
        if (ready) {
          conn.onMessage(conn, buf, s, e);
          return;
        }
        const env = JSON.parse(buf.toString("utf8", s, e));
        if (env.data.action !== "connect" || env.meta.userId !== user) {
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

  const ackFrame = (msgId) => frame(`{"data":{"action":"ack"},"meta":{"msgId":"${msgId}"}}`);
  const sioAckFrame = (ackId) => frame(`43${ackId}[]`); // Engine.IO message, Socket.IO ACK

  /** A socket.io client naming a user id in its CONNECT auth. */
  function openSioUser(port, user) {
    const [ts, sign] = signer.now();
    return openSio(port, { auth: { app: spec.app, timestamp: ts, sign, userId: user } });
  }

  async function coreUser() {
    const port = spec.ports[0];
    const sio = Boolean(spec.sio);
    const acking = spec.ack !== false;
    const conns = await openMany(2 * spec.pairs, 50, (i) =>
      sio ? openSioUser(port, `u${i}`) : openRawUser(port, `u${i}`, false),
    );
    const counts = { kept: 0, unkept: 0, acks: 0, deny: 0, firstDeny: null };
    // What acknowledges the exchange just classified (its msgId; on socket.io the EVENT's ack
    // id, null when the server asked for none), for the receiver to send.
    let msgId = null;
    const classify = (buf, s, e) => {
      const text = buf.latin1Slice(s, e);
      if (text.includes('"action":"exchange"')) {
        if (sio) {
          let j = 2; // after "42": the ack id's digits, if any, come before the "["
          while (text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++;
          msgId = j > 2 ? text.slice(2, j) : null;
        } else {
          const i = text.indexOf('"msgId":"') + 9;
          msgId = text.slice(i, text.indexOf('"', i));
        }
        return 1;
      }
      if (text.includes('"action":"result"')) {
        if (text.includes('"guarantee":"until_acked"')) counts.kept++;
        else counts.unkept++;
        return 0;
      }
      if (text.includes('"action":"deny"')) {
        counts.deny++;
        if (counts.firstDeny === null) counts.firstDeny = buf.toString("utf8", s, e);
        return 2; // never delivered: the sender sends another to keep its window full
      }
      return 0;
    };
    const run = pingPong(
      conns,
      classify,
      sio
        ? (c) => frame(`42["requestMessage",${envelope(c.partner.sid)}]`)
        : (c) => frame(envelope(c.partner.sid)),
    );
    // pingPong has set every client's handlers and sent the first window, and now waits for
    // the warm-up: add the acks. A chunk's acks and the messages it triggers go out in one
    // write (cork), acks first; acks go on after the timed part too, until the end.
    for (const c of conns) {
      const onMessage = c.onMessage;
      const onChunk = c.onChunk;
      c.acks = [];
      c.onMessage = (conn, buf, s, e) => {
        msgId = null;
        onMessage(conn, buf, s, e);
        if (msgId !== null && acking) conn.acks.push(msgId);
      };
      c.onChunk = (conn) => {
        const ids = conn.acks;
        if (ids.length === 0) {
          onChunk(conn);
          return;
        }
        conn.acks = [];
        counts.acks += ids.length;
        conn.sock.cork();
        const ack = sio ? sioAckFrame : ackFrame;
        conn.write(ids.length === 1 ? ack(ids[0]) : Buffer.concat(ids.map(ack)));
        onChunk(conn);
        conn.sock.uncork();
      };
    }
    const m = await run;
    m.kept = counts.kept;
    m.unkept = counts.unkept;
    m.acks = counts.acks;
    if (counts.deny) m.denied = counts.deny;
    if (counts.firstDeny) m.first_deny = counts.firstDeny.slice(0, 300);
    return { ...m, clients: conns.length };
  }

  /** gen.js's `idle`, the clients on raw /ws with a user id each. */
  async function idleUser() {
    const pid = spec.pids[0];
    const conns = [];
    let n = 0;
    const open = () => openRawUser(spec.ports[0], `u${n++}`, true);
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

  /** One line on stdin (the caller's go-ahead). */
  function nextLine() {
    return new Promise((resolve) => {
      process.stdin.setEncoding("utf8");
      process.stdin.once("data", (d) => {
        process.stdin.pause();
        resolve(d);
      });
    });
  }

  const event = (name, extra = {}) =>
    process.stdout.write(`${JSON.stringify({ event: name, ...extra })}\n`);

  /** Many users and a paced load of messages between them, kept until acked and acked. */
  async function capacity() {
    const ports = spec.ports;
    const first = spec.first || 0;
    const conns = await openMany(spec.users, spec.concurrency, (i) =>
      openRawUser(ports[(first + i) % ports.length], `u${first + i}`, true),
    );
    const counts = {
      sent: 0,
      results: 0,
      deliveries: 0,
      acks: 0,
      deny: 0,
      other: 0,
      status: {},
      guarantee: {},
      firstDeny: null,
    };
    for (const c of conns) {
      c.onMessage = (conn, buf, s, e) => {
        const text = buf.latin1Slice(s, e);
        if (text.includes('"action":"exchange"')) {
          const i = text.indexOf('"msgId":"') + 9;
          conn.write(ackFrame(text.slice(i, text.indexOf('"', i))));
          counts.deliveries++;
          counts.acks++;
        } else if (text.includes('"action":"result"')) {
          const p = JSON.parse(buf.toString("utf8", s, e)).data.payload;
          counts.results++;
          counts.status[p.status] = (counts.status[p.status] || 0) + 1;
          counts.guarantee[p.guarantee] = (counts.guarantee[p.guarantee] || 0) + 1;
        } else if (text.includes('"action":"deny"')) {
          counts.deny++;
          if (counts.firstDeny === null) counts.firstDeny = buf.toString("utf8", s, e);
        } else {
          counts.other++;
        }
      };
    }
    if (spec.settle) await sleep(spec.settle);
    if (failure) throw new Error(failure);
    if (spec.barrier) {
      event("connected", { clients: conns.length });
      await nextLine();
    }
    const pick = () => conns[Math.floor(Math.random() * conns.length)];
    const t0 = performance.now();
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * spec.rate);
      for (; counts.sent < due; counts.sent++) {
        const from = pick();
        let to = pick();
        while (to === from) to = pick();
        from.write(frame(envelope(to.sid)));
      }
    }, 1);
    const copy = () => ({
      ...counts,
      status: { ...counts.status },
      guarantee: { ...counts.guarantee },
    });
    let a = null;
    const m = await measure(
      () => counts.deliveries,
      () => {
        a = copy();
        if (spec.barrier) event("start");
      },
    );
    const b = copy();
    if (spec.barrier) event("end");
    clearInterval(timer);
    // Let what is in flight be answered and delivered (up to 5 s).
    const until = performance.now() + 5000;
    const done = () =>
      counts.results + counts.deny >= counts.sent && counts.deliveries >= counts.results;
    while (!done() && performance.now() < until) await sleep(0.05);
    const diff = (x, y) => {
      const out = {};
      for (const k of Object.keys(x)) if (x[k] - (y[k] || 0)) out[k] = x[k] - (y[k] || 0);
      return out;
    };
    m.clients = conns.length;
    m.offered = spec.rate;
    m.sent = b.sent - a.sent;
    m.results = b.results - a.results;
    m.acks = b.acks - a.acks;
    m.denied = b.deny - a.deny;
    m.status = diff(b.status, a.status);
    m.guarantee = diff(b.guarantee, a.guarantee);
    m.in_flight_at_end = b.sent - b.results - b.deny;
    m.total = {
      sent: counts.sent,
      results: counts.results,
      deliveries: counts.deliveries,
      denied: counts.deny,
      other: counts.other,
    };
    m.unanswered = counts.sent - counts.results - counts.deny;
    m.undelivered = counts.results - counts.deliveries;
    if (counts.firstDeny) m.first_deny = counts.firstDeny.slice(0, 300);
    closeAll(conns);
    return m;
  }

  return { "core-user": coreUser, "idle-user": idleUser, capacity };
}

// gen.js, its scenario table (`const SCENARIOS = { ... };`) replaced by userScenarios().
const genPath = path.join(__dirname, "gen.js");
const source = fs.readFileSync(genPath, "utf8");
const start = source.indexOf("\nconst SCENARIOS = {");
const end = start < 0 ? -1 : source.indexOf("\n};\n", start);
if (end < 0) {
  process.stdout.write(`${JSON.stringify({ error: `no scenario table found in ${genPath}` })}\n`);
  process.exit(1);
}
const body =
  `${source.slice(0, start)}\nconst SCENARIOS = (${userScenarios.toString()})();\n` +
  source.slice(end + 4);
vm.runInThisContext(`(function (require, process) {${body}\n})`, { filename: genPath })(
  require,
  process,
);
