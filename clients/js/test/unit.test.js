'use strict';
// Unit tests of the pieces that need no server; the client against a real server is tested
// from pytest (tests/adapter/test_js_client.py, tests/adapter/test_browser.py).
// Run: node --test clients/js/test/

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const wxio = require('..');
const { rawUrl } = require('../src/client');

test('md5 matches the guide and RFC 1321 vectors, UTF-8 included', () => {
  assert.equal(wxio.md5('demosecret1700000000000'), '0a40d27b61d4c698859e0b7156feb067');
  assert.equal(wxio.md5(''), 'd41d8cd98f00b204e9800998ecf8427e');
  assert.equal(wxio.md5('a'.repeat(56)), '3b0c8ac703f828b04c6c197006d17218');
  assert.equal(wxio.md5('12345678901234567890123456789012345678901234567890123456789012345678901234567890'),
    '57edf4a22be3c955ac49da2e2107b67a');
  assert.equal(wxio.md5('中文'), 'a7bac2239fcdcb3a067903d8077c4a07');
});

test('signMd5 is md5(app + key + timestamp), timestamp in ms', () => {
  assert.deepEqual(wxio.signMd5('demo', 'secret', 1700000000000),
    { app: 'demo', timestamp: 1700000000000, sign: '0a40d27b61d4c698859e0b7156feb067' });
  const now = wxio.signMd5('demo', 'secret');
  assert.ok(Math.abs(now.timestamp - Date.now()) < 1000);
});

test("the mobile-sdk's helpers and constants", () => {
  const msg = wxio.parseMsg(wxio.SEND_TO_OTHERS, { text: 'hi' }, { target: 't', timestamp: 5 });
  assert.deepEqual(msg, { meta: { timestamp: 5, target: 't' }, data: { action: 'sendToOthers', payload: { text: 'hi' } } });
  assert.equal(wxio.parseMsg('requestId').data.payload.constructor, Object);
  assert.ok(Math.abs(wxio.parseMsg('x').meta.timestamp - Date.now()) < 1000);
  assert.equal(wxio.parseBroadcastMsg(1).data.action, 'broadcast');
  assert.equal(wxio.parseDenyMsg(1).data.action, 'deny');
  assert.equal(wxio.parseExchangeMsg(1).data.action, 'exchange');
  assert.deepEqual(
    [wxio.SAVE_ID, wxio.REQUEST_ID, wxio.SEND_TO_OTHERS, wxio.RE_CONNECT_AND_UPDATES,
      wxio.RE_CONNECT_UPDATED, wxio.DENY, wxio.EXCHANGE, wxio.BROADCAST, wxio.CONNECT,
      wxio.DISCONNECT, wxio.REQUEST_MESSAGE],
    ['saveId', 'requestId', 'sendToOthers', 'reConnectAndUpdates', 'reConnectUpdated', 'deny',
      'exchange', 'broadcast', 'connect', 'disconnect', 'requestMessage']);
});

test('raw endpoint URL: scheme, default path, credentials in the query', () => {
  assert.equal(rawUrl('http://h:3000', '/ws', { app: 'a', timestamp: 1, sign: 's', userId: 'u 1' }),
    'ws://h:3000/ws?app=a&timestamp=1&sign=s&userId=u%201');
  assert.equal(rawUrl('https://h/', '/ws', { app: 'a', userId: null }), 'wss://h/ws?app=a');
  assert.equal(rawUrl('wss://h/custom?x=1', '/ws', { app: 'a' }), 'wss://h/custom?x=1&app=a');
});

test('the ES module has the same names as the CommonJS build', async () => {
  const esm = await import(path.join(__dirname, '..', 'dist', 'wxio.mjs'));
  assert.deepEqual(Object.keys(esm).filter((k) => k !== 'default').sort(), Object.keys(wxio).sort());
  assert.equal(esm.default.md5('a'), wxio.md5('a'));
});

test('a client needs credentials and a way to connect', () => {
  assert.throws(() => new wxio.Client('ws://h', {}), /credentials/);
  assert.throws(() => new wxio.Client('ws://h', { credentials: {} }), /WebSocket/);
  assert.throws(() => new wxio.Client('ws://h', { credentials: {}, transport: 'socketio' }), /io/);
});

test('duplicates by msgId are dropped, with bounded memory', () => {
  const fakeWs = class { send() {} close() {} };
  const client = new wxio.Client('ws://h', { credentials: {}, WebSocket: fakeWs, dedupe: 3 });
  const got = [];
  client.on('exchange', (m) => got.push(m.msgId));
  const env = (id) => ({ meta: { msgId: id, client: 'x' }, data: { action: 'exchange', payload: id } });
  ['1', '2', '1', '3', '4', '2', '1'].forEach((id) => client.onEnvelope(env(id)));
  // '1' and '2' repeat while remembered; after 3 and 4 the oldest ('1', then '2') are forgotten.
  assert.deepEqual(got, ['1', '2', '3', '4', '1']);
});

test('index.d.ts declares every export', () => {
  const dts = require('node:fs').readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const declared = new Set([...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]));
  assert.deepEqual(Object.keys(wxio).filter((k) => !declared.has(k)), []);
});

test('a credentials callback that throws is reported and retried, not thrown', async () => {
  const fakeWs = class { send() {} close() {} };
  let calls = 0;
  const client = new wxio.Client('ws://h', {
    WebSocket: fakeWs, minDelay: 10, maxDelay: 10, jitter: 0,
    credentials: () => { calls += 1; throw new Error('backend down'); },
  });
  const errors = [];
  client.on('error', (err) => errors.push(err.message));
  const retried = new Promise((resolve) => client.on('reconnecting', (e) => e.attempt === 2 && resolve()));
  client.open();
  await retried;
  client.close();
  assert.ok(calls >= 2);
  assert.equal(errors[0], 'backend down');
});

test('tokenExp reads a JWT exp without verifying it (base64url, UTF-8 claims)', () => {
  const { tokenExp, credsExpiry, base64urlDecode } = require('../src/client');
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const jwt = (claims) => `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.c2ln`;
  assert.equal(tokenExp(jwt({ sub: 'u', exp: 1700000000 })), 1700000000);
  assert.equal(tokenExp(jwt({ sub: '中文-~?>', info: { name: 'Zoë' }, exp: 1700000123 })), 1700000123);
  assert.equal(base64urlDecode(Buffer.from('ü?>~').toString('base64url')), 'ü?>~');
  assert.equal(tokenExp(jwt({ sub: 'u' })), null);
  assert.equal(tokenExp(jwt({ exp: '1700000000' })), null);
  assert.equal(tokenExp('not a token'), null);
  assert.equal(tokenExp('a.!!!.c'), null);
  // credentials: an explicit exp (seconds, or ms) wins; signed credentials have none
  assert.equal(credsExpiry({ token: jwt({ exp: 100 }) }), 100000);
  assert.equal(credsExpiry({ token: jwt({ exp: 100 }), exp: 200 }), 200000);
  assert.equal(credsExpiry({ token: jwt({ exp: 100 }), exp: 1700000000000 }), 1700000000000);
  assert.equal(credsExpiry({ app: 'a', timestamp: 1, sign: 'x', userId: 'u' }), null);
});

test('refreshDelay: lead of refreshLead, at least 20% and at most half of the lifetime left', () => {
  const { refreshDelay } = require('../src/client');
  assert.equal(refreshDelay(3000, 5000), 1500); // short tokens: halfway
  assert.equal(refreshDelay(60000, 5000), 48000); // 20% before
  assert.equal(refreshDelay(3600000, 5000), 2880000);
  assert.equal(refreshDelay(20000, 5000), 15000); // refreshLead before
  assert.equal(refreshDelay(0, 5000), 0);
  assert.equal(refreshDelay(-5, 5000), 0); // already expired: at once
  assert.equal(refreshDelay(1e13, 5000), 0x7fffffff); // setTimeout's limit
});
