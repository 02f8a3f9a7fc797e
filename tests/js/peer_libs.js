'use strict';
/**
 * The four client libraries peer.js can drive, one descriptor each:
 *
 *   package        npm package (folder in node_modules) the library comes from
 *   caps           what the library can do (reported in the "ready" event):
 *                    ack        emit acks and answers to server acks work
 *                    binary     binary arguments survive both ways
 *                    onAny      catch-all listener; otherwise events need an "on" command
 *                    disconnect socket.disconnect() works
 *                    background the background/foreground commands exist (wx shim)
 *   shim           the WxShim the library runs under, or null for Node clients
 *   managerEvents  reconnect_* events are emitted by socket.io (the Manager), not the socket
 *   errorIsConnectError  the library reports a refused CONNECT through its "error" event
 *   connect(url, nsp, opts)  create the library's socket
 *   fromWire(value)          JSON value -> value for the library, {"$bin": b64} -> binary
 */

const path = require('node:path');
const { WxShim } = require('./wx_shim');

const isBin = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)
  && Object.keys(v).length === 1 && typeof v.$bin === 'string';

/** Replace every {"$bin": b64} inside `value` (in place) with makeBinary(bytes). */
function decodeBinaries(value, makeBinary) {
  if (isBin(value)) return makeBinary(Buffer.from(value.$bin, 'base64'));
  if (value !== null && typeof value === 'object') {
    for (const key of Object.keys(value)) value[key] = decodeBinaries(value[key], makeBinary);
  }
  return value;
}

/** Node clients take Buffers as binary. */
const nodeFromWire = (value) => decodeBinaries(JSON.parse(JSON.stringify(value)), (b) => b);

/** The namespace is the URL's path for every library here. */
function nspUrl(url, nsp) {
  const u = new URL(url);
  u.pathname = nsp.startsWith('/') ? nsp : `/${nsp}`;
  return u.toString();
}

function shimFor(hooks) {
  return new WxShim({ appid: process.env.WX_SHIM_APPID, onScriptError: hooks.onScriptError });
}

/** Mini-program code gets values of its own realm; binary is a realm ArrayBuffer. */
const realmFromWire = (shim) => (value) => decodeBinaries(
  shim.realm.JSON.parse(JSON.stringify(value)),
  (bytes) => shim.toArrayBuffer(bytes),
);

const LIBS = {
  // socket.io-client 4.x in Node: EIO=4, polling then websocket unless `transports` says otherwise.
  sio4: () => {
    const { io } = require('socket.io-client');
    return {
      package: 'socket.io-client',
      caps: { ack: true, binary: true, onAny: true, disconnect: true, background: false },
      shim: null,
      managerEvents: true,
      errorIsConnectError: false,
      // opts.parser "msgpack": the npm socket.io-msgpack-parser (the reference's parser option).
      connect: (url, nsp, opts) => io(nspUrl(url, nsp), opts.parser === 'msgpack'
        ? { ...opts, parser: require('socket.io-msgpack-parser') } : opts),
      fromWire: nodeFromWire,
    };
  },

  // socket.io-client 2.x in Node: EIO=3, no onAny, reconnect_* and "error" on the socket.
  sio2: () => {
    const io = require('socket.io-client-v2');
    return {
      package: 'socket.io-client-v2',
      caps: { ack: true, binary: true, onAny: false, disconnect: true, background: false },
      shim: null,
      managerEvents: false,
      errorIsConnectError: true,
      connect: (url, nsp, opts) => io(nspUrl(url, nsp), opts),
      fromWire: nodeFromWire,
    };
  },

  // weapp.socket.io 3.0.0 (bundled socket.io-client 3.x, EIO=4), websocket only, under the shim.
  weapp: (hooks) => {
    const shim = shimFor(hooks);
    const io = shim.loadMiniprogramModule(
      path.join(__dirname, 'node_modules/weapp.socket.io/lib/weapp.socket.io.js'));
    const fromWire = realmFromWire(shim);
    return {
      package: 'weapp.socket.io',
      caps: { ack: true, binary: true, onAny: true, disconnect: true, background: true },
      shim,
      managerEvents: true,
      errorIsConnectError: false,
      connect: (url, nsp, opts) => io(nspUrl(url, nsp), fromWire(opts)),
      fromWire,
    };
  },

  // wxapp-socket-io 1.0.0 (own client, EIO=3), legacy wx API, under the shim. It takes a ws(s)
  // URL and reads the query from it only, so http(s) becomes ws(s) and opts.query is folded in.
  wxapp: (hooks) => {
    const shim = shimFor(hooks);
    const io = shim.loadMiniprogramModule(
      path.join(__dirname, 'node_modules/wxapp-socket-io/build/index.js'));
    const fromWire = realmFromWire(shim);
    return {
      package: 'wxapp-socket-io',
      caps: { ack: false, binary: false, onAny: false, disconnect: false, background: true },
      shim,
      managerEvents: false,
      errorIsConnectError: true,
      connect: (url, nsp, { query, ...opts }) => {
        const u = new URL(nspUrl(url, nsp));
        u.protocol = u.protocol === 'https:' ? 'wss:' : u.protocol === 'http:' ? 'ws:' : u.protocol;
        for (const [key, value] of new URLSearchParams(query || '')) u.searchParams.append(key, value);
        return io(u.toString(), fromWire(opts));
      },
      fromWire,
    };
  },
};

module.exports = { LIBS };
