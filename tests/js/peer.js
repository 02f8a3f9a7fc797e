#!/usr/bin/env node
'use strict';
/**
 * Test peer: drives one Socket.IO client library through a JSON line protocol, so that Python
 * tests can drive every library the same way.
 *
 *   node tests/js/peer.js <lib>        lib: sio4 | sio2 | weapp | wxapp
 *
 *   sio4   socket.io-client 4.8 (Node, EIO=4)
 *   sio2   socket.io-client 2.5 (Node, EIO=3)
 *   weapp  weapp.socket.io 3.0.0 under the wx shim (EIO=4, websocket only)
 *   wxapp  wxapp-socket-io 1.0.0 under the wx shim (EIO=3, websocket only)
 *
 * stdin: one JSON command per line. stdout: one JSON event per line and nothing else
 * (diagnostics go to stderr). Every command may carry an "id"; each command is answered with
 * {"ev":"done","id":..,"cmd":..} or {"ev":"error","id":..,"cmd":..,"message":..}.
 * "sock" names a socket handle (default "main"); several handles give several sockets or
 * namespaces (whether they share one connection is the library's multiplexing rule).
 *
 * Commands
 *   {"cmd":"connect","sock":"main","url":"http://127.0.0.1:PORT","nsp":"/","opts":{...}}
 *        opts go to the library: transports, auth, query, path, reconnection, extraHeaders,
 *        forceNew... "done" means the socket was created, not that it connected.
 *        "subscribe": ["x", ...] subscribes at once, as "on" would (for libraries without onAny)
 *   {"cmd":"emit","sock":"main","event":"x","args":[...],"ack":true}
 *        with "ack" (needs an "id") the ack's arguments come back as {"ev":"ack","id":..,...}
 *   {"cmd":"emit",...,"withAck":true[,"timeout":ms]}   sio4 only: emitWithAck (after
 *        socket.timeout(ms) if given): {"ev":"ack","id":..,"args":[first ack arg],"error":null}
 *        or, when no ack came in time (after the socket's `retries`), "args":null,"error":msg
 *   {"cmd":"on","sock":"main","event":"x","ackWith":[...]}
 *        subscribe to "x" (needed where the library has no onAny: sio2, wxapp) and/or set the
 *        reply sent when the server's "x" asks for an ack ("ackWith": null removes it)
 *   {"cmd":"ack","ackId":N,"args":[...]}   answer a server ack left pending (ackIds are unique
 *        across sockets)
 *   {"cmd":"disconnect","sock":"main"}
 *   {"cmd":"dropTransport","sock":"main"}   sio4: socket.io.engine.close() (a lost connection)
 *   {"cmd":"reconnect","sock":"main"}       socket.connect() again (after a disconnect)
 *   {"cmd":"background","cutMs":N} / {"cmd":"foreground"}  shim libraries only; the shim
 *        cuts every socket cutMs (default 5000) after "background"
 *   {"cmd":"exit"}    (end of stdin exits too)
 *
 * Events
 *   {"ev":"ready","lib":..,"package":..,"version":..,"caps":{ack,binary,onAny,disconnect,background}}
 *   {"ev":"connect","sock":..,"sid":..,"eioSid":..,"recovered":..}   sid = the library's
 *        socket.id; recovered = socket.recovered (connection state recovery; sio4)
 *   {"ev":"connect_error","sock":..,"message":..,"data":..[,"via":"error","raw":..]}
 *        via/raw: sio2 and wxapp report a refused CONNECT through their "error" event, whose
 *        argument (raw) is the packet's payload as the server sent it
 *   {"ev":"disconnect","sock":..,"reason":..}
 *   {"ev":"event","sock":..,"name":..,"args":[...],"hasAck":bool[,"ackId":N]}
 *        ackId is given when the server asked for an ack and no "ackWith" was set: answer it
 *        with the "ack" command; with "ackWith" the driver answers right after this line
 *   {"ev":"ack","id":..,"sock":..,"args":[...]}
 *   {"ev":"reconnect_attempt"|"reconnect","sock":..,"attempt":N}
 *   {"ev":"reconnect_error","sock":..,"message":..,"data":..} / {"ev":"reconnect_failed","sock":..}
 *   {"ev":"script_error","source":"callback"|"uncaught","message":..}
 *        a callback of library code threw (the mini-program runtime logs these and goes on)
 *
 * Binary values, in args both ways, are {"$bin":"<base64>"}: Buffers for the Node clients,
 * ArrayBuffers of the mini-program realm for the shim libraries.
 *
 * What each library cannot do is in README.md; in short wxapp-socket-io has no acks (the
 * callback goes out as a trailing null and ack packets are ignored), no binary (an ArrayBuffer
 * is sent as {}, an incoming binary frame throws in its message handler), its disconnect()
 * throws (after sending the DISCONNECT packet), and emits made before "connect" are lost.
 */

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { LIBS } = require('./peer_libs');

// stdout carries protocol lines only: any stray console output goes to stderr.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const libName = process.argv[2];
if (!Object.hasOwn(LIBS, libName)) {
  process.stderr.write(`usage: node peer.js <${Object.keys(LIBS).join('|')}>\n`);
  process.exit(2);
}

const report = (source) => (err) => out({
  ev: 'script_error', source, message: err && err.message !== undefined ? err.message : String(err),
});
process.on('uncaughtException', report('uncaught'));
const lib = LIBS[libName]({ onScriptError: report('callback') });

const typeTag = (v) => Object.prototype.toString.call(v);

/** Library value -> JSON, binary (ArrayBuffer of any realm, Buffer, typed array) as {"$bin"}. */
function toWire(value) {
  if (value === undefined || typeof value === 'function') return null;
  if (value === null || typeof value !== 'object') return value;
  if (typeTag(value) === '[object ArrayBuffer]') return { $bin: Buffer.from(value).toString('base64') };
  if (ArrayBuffer.isView(value)) {
    return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  }
  if (Array.isArray(value)) return value.map(toWire);
  if (typeof value.toJSON === 'function') return toWire(value.toJSON());
  const result = {};
  for (const [key, item] of Object.entries(value)) {
    if (item !== undefined && typeof item !== 'function') result[key] = toWire(item);
  }
  return result;
}

/** Error, {message, data} object, string or nothing -> {message, data}. */
function describeError(err) {
  if (err === undefined || err === null) return { message: null, data: null };
  if (typeof err !== 'object') return { message: String(err), data: null };
  return { message: err.message ?? null, data: toWire(err.data ?? null) };
}

// Names the libraries use for their own events: never subscribed to with "on".
const RESERVED = new Set(['connect', 'connect_error', 'connect_timeout', 'connecting', 'disconnect',
  'disconnecting', 'error', 'newListener', 'removeListener', 'ping', 'pong', 'reconnect',
  'reconnect_attempt', 'reconnecting', 'reconnect_error', 'reconnect_failed']);

const socks = new Map(); // handle name -> {name, socket, ackWith: Map, subscribed: Set}
const pendingAcks = new Map(); // ackId -> server ack callback
let lastAckId = 0;

function sockOf(cmd) {
  const entry = socks.get(cmd.sock ?? 'main');
  if (!entry) throw new Error(`no socket "${cmd.sock ?? 'main'}"`);
  return entry;
}

function onEvent(entry, name, args) {
  const ack = args.length && typeof args[args.length - 1] === 'function' ? args.pop() : null;
  const event = { ev: 'event', sock: entry.name, name, args: toWire(args), hasAck: Boolean(ack) };
  if (ack && entry.ackWith.has(name)) {
    out(event);
    ack(...lib.fromWire(entry.ackWith.get(name)));
    return;
  }
  if (ack) {
    lastAckId += 1;
    event.ackId = lastAckId;
    pendingAcks.set(lastAckId, ack);
  }
  out(event);
}

function watch(entry) {
  const { name, socket } = entry;
  socket.on('connect', () => out({
    ev: 'connect',
    sock: name,
    sid: socket.id ?? null,
    eioSid: (socket.io && socket.io.engine && socket.io.engine.id) || null,
    recovered: socket.recovered ?? null,
  }));
  socket.on('connect_error', (err) => out({ ev: 'connect_error', sock: name, ...describeError(err) }));
  if (lib.errorIsConnectError) {
    // raw: the CONNECT_ERROR payload as sent (socket.io 4 sends an EIO3 client err.data || err.message).
    socket.on('error', (err) => out({
      ev: 'connect_error', sock: name, ...describeError(err), via: 'error', raw: toWire(err ?? null),
    }));
  }
  socket.on('disconnect', (reason) => out({ ev: 'disconnect', sock: name, reason: toWire(reason) }));

  const manager = lib.managerEvents ? socket.io : socket;
  for (const ev of ['reconnect_attempt', 'reconnect']) {
    manager.on(ev, (attempt) => out({ ev, sock: name, attempt: attempt ?? null }));
  }
  manager.on('reconnect_error', (err) => out({ ev: 'reconnect_error', sock: name, ...describeError(err) }));
  manager.on('reconnect_failed', () => out({ ev: 'reconnect_failed', sock: name }));

  if (lib.caps.onAny) socket.onAny((event, ...args) => onEvent(entry, event, args));
}

const needShim = () => {
  if (!lib.shim) throw new Error(`${libName} does not run under the wx shim`);
  return lib.shim;
};

const commands = {
  connect(cmd) {
    const name = cmd.sock ?? 'main';
    if (socks.has(name)) throw new Error(`socket "${name}" already exists`);
    if (typeof cmd.url !== 'string') throw new Error('connect needs a "url"');
    const socket = lib.connect(cmd.url, cmd.nsp ?? '/', cmd.opts ?? {});
    const entry = { name, socket, ackWith: new Map(), subscribed: new Set() };
    socks.set(name, entry);
    watch(entry);
    // Listen before any packet can arrive: a namespace on an open connection may be joined
    // (and its first events delivered) before a separate "on" command would be read.
    for (const event of cmd.subscribe ?? []) commands.on({ sock: name, event });
  },

  emit(cmd) {
    const entry = sockOf(cmd);
    if (typeof cmd.event !== 'string') throw new Error('emit needs an "event"');
    const args = lib.fromWire(cmd.args ?? []);
    if (cmd.withAck) {
      // socket.io-client 4: [socket.timeout(ms).]emitWithAck(...), a promise of the first ack
      // argument that rejects when no ack comes in time (retries included).
      if (cmd.id === undefined) throw new Error('emit with "withAck" needs an "id"');
      const target = cmd.timeout !== undefined ? entry.socket.timeout(cmd.timeout) : entry.socket;
      target.emitWithAck(cmd.event, ...args).then(
        (reply) => out({ ev: 'ack', id: cmd.id, sock: entry.name, args: toWire([reply]), error: null }),
        (err) => out({
          ev: 'ack', id: cmd.id, sock: entry.name, args: null, error: err && err.message ? err.message : String(err),
        }),
      );
      return;
    }
    if (cmd.ack) {
      if (cmd.id === undefined) throw new Error('emit with "ack" needs an "id"');
      args.push((...reply) => out({ ev: 'ack', id: cmd.id, sock: entry.name, args: toWire(reply) }));
    }
    entry.socket.emit(cmd.event, ...args);
  },

  on(cmd) {
    const entry = sockOf(cmd);
    const { event } = cmd;
    if (typeof event !== 'string' || RESERVED.has(event)) throw new Error(`cannot subscribe to ${event}`);
    if (cmd.ackWith === null) entry.ackWith.delete(event);
    else if (cmd.ackWith !== undefined) entry.ackWith.set(event, cmd.ackWith);
    if (!lib.caps.onAny && !entry.subscribed.has(event)) {
      entry.subscribed.add(event);
      entry.socket.on(event, (...args) => onEvent(entry, event, args));
    }
  },

  ack(cmd) {
    const ack = pendingAcks.get(cmd.ackId);
    if (!ack) throw new Error(`no pending ack ${cmd.ackId}`);
    pendingAcks.delete(cmd.ackId);
    ack(...lib.fromWire(cmd.args ?? []));
  },

  disconnect(cmd) {
    sockOf(cmd).socket.disconnect();
  },

  dropTransport(cmd) {
    // sio4: close the Engine.IO connection under the socket, as a lost network would
    // ("transport close"); with `reconnection` the Manager reconnects.
    const { socket } = sockOf(cmd);
    if (!socket.io || !socket.io.engine) throw new Error(`${libName} has no Manager engine`);
    socket.io.engine.close();
  },

  reconnect(cmd) {
    sockOf(cmd).socket.connect();
  },

  background(cmd) {
    needShim().enterBackground({ cutMs: cmd.cutMs });
  },

  foreground() {
    needShim().enterForeground();
  },

  exit(cmd) {
    process.stdout.write(`${JSON.stringify({ ev: 'done', id: cmd.id ?? null, cmd: 'exit' })}\n`,
      () => process.exit(0));
  },
};

function handle(line) {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ ev: 'error', id: null, cmd: null, message: `bad JSON: ${err.message}` });
    return;
  }
  if (cmd === null || typeof cmd !== 'object') {
    out({ ev: 'error', id: null, cmd: null, message: 'a command is a JSON object' });
    return;
  }
  const id = cmd.id ?? null;
  try {
    if (!Object.hasOwn(commands, cmd.cmd)) throw new Error(`unknown command ${cmd.cmd}`);
    commands[cmd.cmd](cmd);
    if (cmd.cmd !== 'exit') out({ ev: 'done', id, cmd: cmd.cmd });
  } catch (err) {
    out({ ev: 'error', id, cmd: cmd.cmd ?? null, message: err.message });
  }
}

const version = JSON.parse(fs.readFileSync(
  path.join(__dirname, 'node_modules', lib.package, 'package.json'), 'utf8')).version;
out({ ev: 'ready', lib: libName, package: lib.package, version, caps: lib.caps });

readline.createInterface({ input: process.stdin }).on('line', handle).on('close', () => process.exit(0));
