// Type declarations of router-client.js, the entry point: everything it exports, whichever of
// its sibling modules defines it (hand-written; keep in step with the runtime).

/** The subprotocol the router speaks: "router.v1". */
export const SUBPROTOCOL: 'router.v1';

/** Defaults of the numeric options of RouterClient. */
export const DEFAULTS: Readonly<{
  initialDelayMs: 500;
  maxDelayMs: 20000;
  requestTimeoutMs: 10000;
  connectTimeoutMs: 10000;
  refreshBeforeExpiryMs: 30000;
  stableConnectionMs: 5000;
  maxReconnectAttempts: number;
  closeTimeoutMs: 5000;
}>;

/** The final events of an agent run. */
export const FINAL_RUN_EVENTS: readonly ['agent_completed', 'agent_error', 'agent_stopped'];

export type FinalRunEventType = 'agent_completed' | 'agent_error' | 'agent_stopped';
export type RunEventType =
  | 'agent_started'
  | 'agent_thinking'
  | 'tool_executing'
  | 'tool_completed'
  | 'agent_progress'
  | FinalRunEventType;

/**
 * `data` of agent_completed: the agent's result. `stored: false` when the router could not
 * append it to the thread (the user's storage quota); the run completed all the same.
 */
export interface AgentCompletedData {
  stored?: false;
  [key: string]: unknown;
}

/** Error codes of the router's `error` frames (protocol/error_codes.hpp). */
export type ServerErrorCode =
  | 'invalid_json'
  | 'invalid_message'
  | 'unknown_type'
  | 'unknown_agent'
  | 'not_found'
  | 'rate_limited'
  | 'too_many_runs'
  | 'payload_too_large'
  | 'unavailable'
  | 'internal'
  | 'quota_exceeded';

/** Codes of errors raised by the client itself. */
export type ClientErrorCode = 'timeout' | 'closed' | 'session_lost';

/** Why a close is terminal (no automatic reconnect). */
export type TerminalReason =
  | 'client_closed'
  | 'protocol_error'
  | 'unsupported_data'
  | 'invalid_payload'
  | 'policy_violation'
  | 'message_too_big'
  | 'extension_required'
  | 'too_many_connections'
  | 'protocol_abuse'
  | 'disconnected_by_backend'
  | 'session_moved'
  | 'do_not_reconnect'
  | 'max_reconnect_attempts';

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Every frame the router sends has this envelope. */
export interface ServerFrame<D = any> {
  type: string;
  /** Per session: 0 on connection_established, then 1, 2, ... */
  event_id: number;
  user_id: string;
  thread_id: string | null;
  run_id: string | null;
  reply_to: string | null;
  /** RFC 3339 UTC with milliseconds. */
  timestamp: string;
  data: D;
}

export interface ConnectionLimits {
  max_message_bytes: number;
  outbound_queue_bytes: number;
  max_runs_per_connection: number;
  resume_window_ms: number;
  [key: string]: unknown;
}

export interface ConnectionEstablishedData {
  connection_id: string;
  session_id: string;
  resume_token: string;
  server_id: string;
  recovered: boolean;
  limits: ConnectionLimits;
}

export interface ErrorData {
  code: ServerErrorCode | string;
  message: string;
}

export interface Thread {
  thread_id: string;
  title: string;
  created_at_ms: number;
  updated_at_ms: number;
  message_count: number;
}

export interface ThreadMessage {
  seq: number;
  role: 'user' | 'agent';
  run_id: string | null;
  content: unknown;
  created_at_ms: number;
}

/** What a client sends: {type, id, thread_id?, payload}. */
export interface ClientMessage {
  type: string;
  id?: string;
  thread_id?: string;
  payload?: Record<string, unknown>;
}

/** A minimal WebSocket as the client uses it (the browser's, `ws`, undici's). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  readonly url: string;
  readonly bufferedAmount: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** `ws` package only: drops the TCP connection without a close frame (keeps the session resumable). */
  terminate?: () => void;
}

export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

export interface RouterClientOptions {
  /** ws:// or wss:// URL of the router's /ws endpoint. */
  url: string;
  /**
   * Returns the JWT; called on every (re)connect (so after a 4501, whose reconnect resumes the
   * session) and, where the WebSocket has terminate(), before the token expires. May be async.
   */
  getToken: () => string | Promise<string>;
  /** WebSocket constructor; default: globalThis.WebSocket. In Node.js pass e.g. the `ws` package's. */
  WebSocket?: WebSocketConstructor | (new (...args: any[]) => any);
  /** First reconnect delay cap (full jitter), ms. Default 500. */
  initialDelayMs?: number;
  /** Largest reconnect delay, ms. Default 20000. After 4029 the delay is drawn from [max/2, max]. */
  maxDelayMs?: number;
  /** Default timeout of request() (and of waiting for agent_started), ms. Default 10000. */
  requestTimeoutMs?: number;
  /** From creating a socket to connection_established, ms; past it the attempt fails. Default 10000. */
  connectTimeoutMs?: number;
  /**
   * Only where the WebSocket has terminate() (the `ws` package): move to a fresh token this long
   * before its exp (at the latest at half its remaining life), dropping the connection silently
   * and resuming; 0 disables. Without terminate() (browsers) it has no effect: the client waits
   * for the router's 4501 and resumes with a fresh token. Default 30000.
   */
  refreshBeforeExpiryMs?: number;
  /** An established connection that lasted this long resets the backoff, ms. Default 5000. */
  stableConnectionMs?: number;
  /** Consecutive failed reconnects before giving up (terminal 'max_reconnect_attempts'). Default Infinity. */
  maxReconnectAttempts?: number;
  /** How long close() waits for the closing handshake, ms. Default 5000. */
  closeTimeoutMs?: number;
  /** Random source of the backoff jitter, in [0, 1). Default Math.random. */
  random?: () => number;
}

export interface RequestOptions {
  /** Sent as the envelope's thread_id. */
  threadId?: string;
  /** Default: requestTimeoutMs. */
  timeoutMs?: number;
  /** Correlation id; default a generated unique id. */
  id?: string;
}

export interface RunOptions extends RequestOptions {
  /** Called with every event of the run, from the first. */
  onEvent?: (event: ServerFrame) => void;
}

export interface EstablishedInfo {
  /** The server's flag: true only when a resume succeeded. */
  recovered: boolean;
  /** Whether this connection asked to resume a session. */
  resumed: boolean;
  sessionId: string | null;
  connectionId: string | null;
  serverId: string | null;
  userId: string | null;
  limits: ConnectionLimits | null;
  lastEventId: number;
}

export interface StateEvent {
  state: ConnectionState;
  previous: ConnectionState;
  attempt?: number;
  resuming?: boolean;
  delayMs?: number;
  code?: number;
  reason?: string;
  sessionId?: string | null;
  recovered?: boolean | null;
  terminal?: boolean;
  terminalReason?: TerminalReason;
}

export interface ConnectingEvent {
  /** Reconnect attempts so far (0 on the first connect). */
  attempt: number;
  /** Whether the URL carries resume and last_event_id. */
  resuming: boolean;
}

export interface ReconnectingEvent {
  attempt: number;
  delayMs: number;
  code: number;
  reason: string;
}

export interface CloseEvent {
  code: number;
  reason: string;
  wasClean: boolean;
  terminal: boolean;
  terminalReason: TerminalReason | null;
  willReconnect: boolean;
  /** True for a reconnect the client made itself (token refresh, reconnect()). */
  initiatedByClient: boolean;
}

export interface ClosedEvent {
  code: number;
  reason: string;
  terminal: true;
  terminalReason: TerminalReason;
}

export interface GapEvent {
  previousSessionId: string;
  sessionId: string | null;
  /** The last event id delivered in the previous session. */
  lastEventId: number;
  /** Whether the client asked to resume. */
  resumed: boolean;
  /** Runs of the previous session; they failed with code 'session_lost'. */
  lostRuns: AgentRun[];
}

/**
 * 'expired': the router closed with 4501; the reconnect asks getToken() and resumes.
 * 'expiring': a refresh ahead of exp (only where the WebSocket has terminate()).
 */
export interface TokenRefreshEvent {
  reason: 'expiring' | 'expired';
  /** With 'expiring': the new token's exp, ms. */
  expiresAt?: number | null;
  /** With 'expired': 4501. */
  code?: number;
}

export interface ClientError extends Error {
  source?: 'socket' | 'getToken' | 'protocol' | 'listener';
}

export interface RouterClientEvents {
  state: StateEvent;
  connecting: ConnectingEvent;
  established: EstablishedInfo;
  reconnecting: ReconnectingEvent;
  close: CloseEvent;
  closed: ClosedEvent;
  gap: GapEvent;
  event: ServerFrame;
  publish: ServerFrame;
  error: ClientError;
  tokenRefresh: TokenRefreshEvent;
}

export class RouterError extends Error {
  constructor(code: string, message?: string, details?: { frame?: ServerFrame; closeCode?: number; closeReason?: string; cause?: unknown });
  readonly name: 'RouterError';
  /** A ServerErrorCode (from an `error` frame) or a ClientErrorCode. */
  code: ServerErrorCode | ClientErrorCode | string;
  /** The `error` frame, when the router sent one. */
  frame?: ServerFrame<ErrorData>;
  /** For code 'closed': the close code and reason. */
  closeCode?: number;
  closeReason?: string;
  terminalReason?: TerminalReason;
}

export class AgentRun implements AsyncIterable<ServerFrame> {
  private constructor();
  /** The id of the start_agent / user_message request (every event's reply_to but agent_stopped's after a stop). */
  readonly requestId: string;
  agent: string | null;
  /** Known once agent_started arrived. */
  runId: string | null;
  threadId: string | null;
  /** Every event of the run so far, in order. */
  readonly events: ServerFrame[];
  /** The final event, once it arrived. */
  final: ServerFrame | null;
  status: 'pending' | 'running' | 'completed' | 'error' | 'stopped' | 'failed';
  /** Set when the run failed to start or was lost (status 'failed'). */
  error: RouterError | null;
  readonly finished: boolean;
  /** Resolves with the final event (agent_completed, agent_error or agent_stopped); rejects when the run failed. */
  readonly done: Promise<ServerFrame>;
  /** Resolves with the run id once agent_started arrived. */
  readonly started: Promise<string>;
  /** Calls `listener` with every later event; returns a function that removes it. */
  onEvent(listener: (event: ServerFrame) => void): () => void;
  /** Sends stop_agent (once the run id is known); resolves with the final event. */
  stop(options?: RequestOptions): Promise<ServerFrame>;
  /** The run's events in order from the first, ending after the final event; throws if the run failed. */
  [Symbol.asyncIterator](): AsyncIterator<ServerFrame>;
}

export class RouterClient {
  constructor(options: RouterClientOptions);
  readonly url: string;
  readonly options: Readonly<Required<Omit<RouterClientOptions, 'url' | 'getToken' | 'WebSocket' | 'random'>>>;
  readonly state: ConnectionState;
  /** The server's `recovered` flag of the last connection_established (null before the first). */
  readonly recovered: boolean | null;
  readonly sessionId: string | null;
  readonly connectionId: string | null;
  readonly serverId: string | null;
  readonly userId: string | null;
  readonly limits: ConnectionLimits | null;
  /** The last event id delivered in the current session (the resume cursor). */
  readonly lastEventId: number;
  /** The last close (with terminalReason when terminal). */
  readonly lastClose: { code: number; reason: string; wasClean: boolean; terminal: boolean; terminalReason: TerminalReason | null } | null;
  /** Frames dropped because their event_id had been delivered already. */
  readonly duplicatesDropped: number;
  /** The current WebSocket (diagnostics), or null. */
  readonly socket: WebSocketLike | null;
  readonly isOpen: boolean;

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof RouterClientEvents>(type: K, listener: (event: RouterClientEvents[K]) => void): () => void;
  once<K extends keyof RouterClientEvents>(type: K, listener: (event: RouterClientEvents[K]) => void): () => void;
  off<K extends keyof RouterClientEvents>(type: K, listener: (event: RouterClientEvents[K]) => void): void;
  listenerCount(type: keyof RouterClientEvents): number;

  /** Starts connecting (or restarts after a terminal close by the server); resolves on the first connection_established. */
  connect(): Promise<EstablishedInfo>;
  /** Reconnects now, resuming the session where the WebSocket has terminate(). */
  reconnect(): void;
  /** Ends the client for good. */
  close(code?: number, reason?: string): Promise<void>;
  /** Sends a raw message; queued until connection_established. Returns true when sent now. Throws a RouterError `message_too_big` for a message over limits.max_message_bytes. */
  send(message: ClientMessage | string): boolean;
  /** Sends {type, id, thread_id?, payload}; resolves with the frame whose reply_to is the id, rejects on `error` (and with `message_too_big` for a message over limits.max_message_bytes, never sent). */
  request<D = any>(type: string, payload?: Record<string, unknown>, options?: RequestOptions): Promise<ServerFrame<D>>;
  /** ping -> pong; resolves with the round trip in ms. */
  ping(options?: RequestOptions): Promise<number>;
  createThread(title?: string | null, options?: RequestOptions): Promise<ServerFrame<Thread>>;
  /** A page of the threads, most recently updated first; while `has_more`, page on with `after` = the last thread. */
  listThreads(options?: RequestOptions & { limit?: number; after?: Pick<Thread, 'updated_at_ms' | 'thread_id'> }): Promise<ServerFrame<{ threads: Thread[]; has_more: boolean }>>;
  /** A page of the thread, oldest first; while `has_more`, page back with `beforeSeq` = the first message's `seq`. */
  getThreadHistory(threadId: string, options?: Omit<RequestOptions, 'threadId'> & { limit?: number; beforeSeq?: number }): Promise<ServerFrame<{ messages: ThreadMessage[]; has_more: boolean }>>;
  startAgent(agent: string, input?: unknown, options?: RunOptions): AgentRun;
  userMessage(text: string, options?: RunOptions): AgentRun;
  stopAgent(runId: string, options?: RequestOptions): Promise<ServerFrame>;
}

export default RouterClient;

export function closePolicy(code: number): {
  action: 'reconnect' | 'reconnect_slow' | 'refresh_token' | 'terminal';
  reason: TerminalReason | 'reconnect' | 'rate_limited' | 'token_expired';
};
export function backoffDelay(
  attempt: number,
  options?: { initialDelayMs?: number; maxDelayMs?: number; slow?: boolean },
  random?: () => number,
): number;
export function decodeJwtPayload(token: string): Record<string, unknown> | null;
export function tokenExpiresAt(token: string): number | null;
export function buildUrl(url: string, resume?: { token: string; lastEventId?: number } | null): string;
export function isPublishedType(type: string): boolean;
