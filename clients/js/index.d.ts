// Types for wxio-client (clients/js). See README.md.

export type Action =
  | 'saveId' | 'requestId' | 'sendToOthers' | 'reConnectAndUpdates' | 'reConnectUpdated'
  | 'deny' | 'exchange' | 'broadcast' | 'connect' | 'disconnect' | 'ack' | 'ping' | 'pong'
  | 'result' | 'receipt' | 'refresh' | 'refreshed';

export type DenyReason =
  | 'bad_signature' | 'expired' | 'unknown_app' | 'malformed' | 'unknown_action'
  | 'target_offline' | 'not_allowed' | 'too_large' | 'rate_limited' | 'unavailable';

/** Why a request failed: a deny reason, or one of the client's own. */
export type ErrorReason = DenyReason | 'timeout' | 'disconnected' | 'closed' | 'deny';

export interface Meta {
  timestamp?: number;
  app?: string;
  sign?: string;
  client?: string;
  userId?: string;
  target?: string;
  msgId?: string;
  nonce?: string;
  /** sendToOthers: ask for a delivery receipt; on an exchange: its sender asked for one. */
  receipt?: boolean;
  [key: string]: unknown;
}

export interface Envelope<P = unknown> {
  meta: Meta;
  data: { action: Action | string; payload: P };
}

/**
 * What the credentials callback returns: md5/hmac fields `{app, timestamp, sign, userId}`, or
 * `{app, token, exp?}` with a token (JWT) that the app's backend issued. With a token, the user
 * id is the token's `sub` (the server says it); the client sends `refresh` with a new token
 * before `exp`.
 */
export interface Credentials {
  app?: string;
  timestamp?: number;
  sign?: string;
  userId?: string | number;
  nonce?: string;
  token?: string;
  /** When the token expires, in seconds since the epoch (default: the token's own exp claim). */
  exp?: number;
  [key: string]: unknown;
}

export interface ClientOptions {
  /** Called at every (re)connect, before the credentials age out (a token: before its exp, for
   * `refresh`); a backend should sign or issue the token. */
  credentials: Credentials | (() => Credentials | Promise<Credentials>);
  /** Used when signed credentials carry no userId (never with a token). */
  userId?: string;
  /** 'ws' (default): the raw JSON endpoint; 'socketio': through `io`. */
  transport?: 'ws' | 'socketio';
  /** The socket.io client's io function (socket.io-client, weapp.socket.io...). */
  io?: (url: string, options: Record<string, unknown>) => any;
  /** Extra options for io(); auth, query and reconnection are set by the client. */
  ioOptions?: Record<string, unknown>;
  /** The wx object (default: the global wx of a mini program). */
  wx?: any;
  /** A WebSocket class (default: the global one; in Node pass require('ws')). */
  WebSocket?: any;
  /** Raw endpoint path when the URL has none (default '/ws'). */
  path?: string;
  reconnect?: boolean;
  /** First reconnect delay in ms (default 500), multiplied by `factor` (2) up to `maxDelay` (15000). */
  minDelay?: number;
  maxDelay?: number;
  factor?: number;
  /** Randomisation of each delay, 0..1 (default 0.5: +-50%). */
  jitter?: number;
  maxAttempts?: number;
  connectTimeout?: number;
  /** How long send() and broadcast() wait for the server's answer (default 10000 ms). */
  requestTimeout?: number;
  /** Fetch new credentials after this many ms (default 240000; the server's window is 300 s). */
  credentialsMaxAge?: number;
  /** Token connections: refresh this many ms before exp (default 5000; at least 20% of the
   * token's remaining lifetime, at most half of it). */
  refreshLead?: number;
  /** How many msgIds are remembered to drop duplicates, and receipts for receipt() (default
   * 1000). */
  dedupe?: number;
  /** How many sends are kept while disconnected (default 100). */
  outboxSize?: number;
  /** Raw transport: ping after this much silence (default 25000, 0: off). */
  pingInterval?: number;
  pingTimeout?: number;
  /** Close on wx.onAppHide, reconnect on wx.onAppShow (default true). */
  pauseInBackground?: boolean;
}

export interface Delivery<P = unknown> {
  payload: P;
  /** The sender's client id (null for the HTTP API). */
  from: string | null;
  userId: string | null;
  msgId: string | null;
  timestamp: number | null;
  envelope: Envelope<P>;
}

export interface Result {
  /** 'delivered': written to the target's connection on the server node that took the send;
   * 'forwarded': handed to the node that holds the target (a cluster; no answer is awaited from
   * that node: ask for a receipt to know it arrived); 'queued': in the user's offline inbox. */
  status: 'delivered' | 'forwarded' | 'queued';
  msgId: string;
  /** 'until_acked': kept in the target user's inbox until its client acknowledges it;
   * 'sent': written to a connection (a client without a user id), lost if it drops first. */
  guarantee: 'until_acked' | 'sent' | null;
  /** How many connections of the node that took it got it (broadcast: every other client of
   * the app). */
  delivered?: number;
  /** How many other server nodes it was handed to. */
  forwarded: number;
  /** Inbox messages dropped to make room (oldest first). */
  dropped: string[];
  target: string | null;
  envelope: Envelope;
}

/** A delivery receipt: the target acknowledged the message `msgId` (a send with
 * `{receipt: true}`). */
export interface Receipt {
  msgId: string;
  status: 'acked';
  /** When the server recorded the ack (ms since the epoch, the server's clock). */
  ackedAt: number | null;
  /** The client id the message was sent to. */
  target: string | null;
  envelope: Envelope;
}

export interface SendOptions {
  timeout?: number;
  /** Ask for a delivery receipt: the 'receipt' event and receipt(msgId). */
  receipt?: boolean;
}

export interface Deny {
  reason: DenyReason;
  message: string;
  envelope: Envelope | null;
}

export interface ConnectEvent {
  id: string;
  /** The user id the server gave the connection (a token's sub), null without one. */
  userId: string | null;
  /** True after a reconnect: the old ids were claimed with reConnectAndUpdates. */
  reconnected: boolean;
  /** The old ids that now route to this connection. */
  replaced: string[];
}

export interface DisconnectEvent {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  attempt: number;
  delay: number;
  code: number;
  reason: string;
}

export interface ClientEvents {
  exchange: Delivery;
  broadcast: Delivery;
  deny: Deny;
  result: Result;
  receipt: Receipt;
  connect: ConnectEvent;
  disconnect: DisconnectEvent;
  reconnecting: ReconnectingEvent;
  /** A token connection sent refresh and the server took the new token. */
  refreshed: RefreshedEvent;
  error: Error;
}

export interface RefreshedEvent {
  /** The new token's exp, in seconds since the epoch. */
  exp: number | null;
}

export interface ClientStats {
  received: number;
  duplicates: number;
  acks: number;
  reconnects: number;
}

export declare class WxioError extends Error {
  reason: ErrorReason;
  envelope: Envelope | null;
}

export declare class Client {
  constructor(url: string, options: ClientOptions);
  /** The current client id, null while disconnected. */
  readonly id: string | null;
  /** The user id the server gave this connection (a token's sub); null without one. */
  readonly userId: string | null;
  readonly state: 'connecting' | 'open' | 'closed';
  readonly connected: boolean;
  readonly stats: ClientStats;
  on<K extends keyof ClientEvents>(event: K, fn: (data: ClientEvents[K]) => void): () => void;
  once<K extends keyof ClientEvents>(event: K, fn: (data: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(event: K, fn: (data: ClientEvents[K]) => void): void;
  open(): this;
  send(target: string, payload: unknown, options?: SendOptions): Promise<Result>;
  /** The receipt of `msgId` (a send with `{receipt: true}`), at once if it came already;
   * rejects 'timeout' after `options.timeout` ms if given, 'closed' when the client closes. */
  receipt(msgId: string, options?: { timeout?: number }): Promise<Receipt>;
  broadcast(payload: unknown, options?: { timeout?: number }): Promise<Result>;
  /** Token connections: fetch new credentials and send refresh now (the client does this on
   * its own before exp); if it fails, the client reconnects with fresh credentials. */
  refresh(): Promise<Envelope<{ exp: number }>>;
  pause(): void;
  resume(): void;
  close(): void;
}

/** Create a client and start connecting. */
export declare function connect(url: string, options: ClientOptions): Client;

export declare function parseMsg<P = {}>(action: Action | string, payload?: P, metadata?: Meta): Envelope<P>;
export declare function parseBroadcastMsg<P = {}>(payload?: P, metadata?: Meta): Envelope<P>;
export declare function parseDenyMsg<P = {}>(payload?: P, metadata?: Meta): Envelope<P>;
export declare function parseExchangeMsg<P = {}>(payload?: P, metadata?: Meta): Envelope<P>;
/** md5(app + key + timestamp): demos and tests only; a key in a client is no secret. */
export declare function signMd5(app: string, key: string, timestamp?: number): { app: string; timestamp: number; sign: string };
export declare function md5(text: string): string;

export declare const VERSION: string;
export declare const SAVE_ID: 'saveId';
export declare const REQUEST_ID: 'requestId';
export declare const SEND_TO_OTHERS: 'sendToOthers';
export declare const RE_CONNECT_AND_UPDATES: 'reConnectAndUpdates';
export declare const RE_CONNECT_UPDATED: 'reConnectUpdated';
export declare const DENY: 'deny';
export declare const EXCHANGE: 'exchange';
export declare const BROADCAST: 'broadcast';
export declare const CONNECT: 'connect';
export declare const DISCONNECT: 'disconnect';
export declare const ACK: 'ack';
export declare const PING: 'ping';
export declare const PONG: 'pong';
export declare const RESULT: 'result';
export declare const RECEIPT: 'receipt';
export declare const REFRESH: 'refresh';
export declare const REFRESHED: 'refreshed';
export declare const REQUEST_MESSAGE: 'requestMessage';
export declare const RESPONSE_MESSAGE: 'responseMessage';

declare const wxio: {
  Client: typeof Client;
  WxioError: typeof WxioError;
  connect: typeof connect;
  parseMsg: typeof parseMsg;
  parseBroadcastMsg: typeof parseBroadcastMsg;
  parseDenyMsg: typeof parseDenyMsg;
  parseExchangeMsg: typeof parseExchangeMsg;
  signMd5: typeof signMd5;
  md5: typeof md5;
  VERSION: string;
  SAVE_ID: 'saveId';
  REQUEST_ID: 'requestId';
  SEND_TO_OTHERS: 'sendToOthers';
  RE_CONNECT_AND_UPDATES: 'reConnectAndUpdates';
  RE_CONNECT_UPDATED: 'reConnectUpdated';
  DENY: 'deny';
  EXCHANGE: 'exchange';
  BROADCAST: 'broadcast';
  CONNECT: 'connect';
  DISCONNECT: 'disconnect';
  ACK: 'ack';
  PING: 'ping';
  PONG: 'pong';
  RESULT: 'result';
  RECEIPT: 'receipt';
  REFRESH: 'refresh';
  REFRESHED: 'refreshed';
  REQUEST_MESSAGE: 'requestMessage';
  RESPONSE_MESSAGE: 'responseMessage';
};
export default wxio;
