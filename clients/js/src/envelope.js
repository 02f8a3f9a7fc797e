'use strict';
/**
 * The mobile-sdk's helper functions and constants, under their own names, so code written for
 * it keeps working: an envelope is `{meta: {timestamp, ...metadata}, data: {action, payload}}`.
 */

const { md5 } = require('./md5');

// data.action values on the wire (docs/guide.md, "The envelope").
const SAVE_ID = 'saveId';
const REQUEST_ID = 'requestId';
const SEND_TO_OTHERS = 'sendToOthers';
const RE_CONNECT_AND_UPDATES = 'reConnectAndUpdates';
const RE_CONNECT_UPDATED = 'reConnectUpdated';
const DENY = 'deny';
const EXCHANGE = 'exchange';
const BROADCAST = 'broadcast';
const CONNECT = 'connect';
const DISCONNECT = 'disconnect';
// wxio's additions: inbox acknowledgement, keepalive, and the answer to a send or broadcast.
const ACK = 'ack';
const PING = 'ping';
const PONG = 'pong';
const RESULT = 'result';
// A delivery receipt: the target acknowledged a message sent with meta.receipt = true.
const RECEIPT = 'receipt';
// Token connections: a new token before the old one's exp, and the server's answer.
const REFRESH = 'refresh';
const REFRESHED = 'refreshed';
// socket.io event names of the core namespace.
const REQUEST_MESSAGE = 'requestMessage';
const RESPONSE_MESSAGE = 'responseMessage';

/** `{meta: {timestamp: now, ...metadata}, data: {action, payload}}`, as the mobile-sdk built it. */
function parseMsg(action, payload = {}, metadata = {}) {
  const meta = Object.assign({}, { timestamp: Date.now() }, metadata);
  return { meta, data: { action, payload } };
}

function parseBroadcastMsg(payload = {}, metadata = {}) {
  return parseMsg(BROADCAST, payload, metadata);
}

function parseDenyMsg(payload = {}, metadata = {}) {
  return parseMsg(DENY, payload, metadata);
}

function parseExchangeMsg(payload = {}, metadata = {}) {
  return parseMsg(EXCHANGE, payload, metadata);
}

/**
 * `{app, timestamp, sign}` with `sign = md5(app + key + timestamp)`. For demos and tests only:
 * a key shipped inside a mini program or a web page is no secret. Let your backend sign.
 */
function signMd5(app, key, timestamp) {
  const ts = timestamp === undefined || timestamp === null ? Date.now() : Number(timestamp);
  return { app, timestamp: ts, sign: md5(`${app}${key}${ts}`) };
}

module.exports = {
  SAVE_ID,
  REQUEST_ID,
  SEND_TO_OTHERS,
  RE_CONNECT_AND_UPDATES,
  RE_CONNECT_UPDATED,
  DENY,
  EXCHANGE,
  BROADCAST,
  CONNECT,
  DISCONNECT,
  ACK,
  PING,
  PONG,
  RESULT,
  RECEIPT,
  REFRESH,
  REFRESHED,
  REQUEST_MESSAGE,
  RESPONSE_MESSAGE,
  parseMsg,
  parseBroadcastMsg,
  parseDenyMsg,
  parseExchangeMsg,
  signMd5,
  md5,
};
