'use strict';
/** wxio-client: the public surface (see index.d.ts and README.md). */

const envelope = require('./envelope');
const client = require('./client');

module.exports = Object.assign({}, envelope, {
  VERSION: '0.1.0',
  Client: client.Client,
  WxioError: client.WxioError,
  connect: client.connect,
});
