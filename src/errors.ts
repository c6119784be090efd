// One registry of the errors berth makes itself. Each HTTP error carries the status and the code of the
// registry's own error vocabulary (distribution's errcode), so docker prints "code: message" readably.
import createError from '@fastify/error'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'

export interface RegistryErrorShape extends Error {
  code: string
  statusCode?: number
  registryCode?: string
  detail?: unknown
}

function family (code: string, message: string, status: number, registryCode: string) {
  // No stack trace: these are answers, not bugs, and capturing one was a large share of the 401 path's CPU.
  const E = createError(code, message, status, Error, false)
  ;(E.prototype as unknown as RegistryErrorShape).registryCode = registryCode
  return E
}

export const BadRequestTargetError = family('BERTH_ERR_REQUEST_TARGET', 'bad request target: %s', 400, 'UNSUPPORTED')
export const BadRequestError = family('BERTH_ERR_BAD_REQUEST', 'bad request: %s', 400, 'UNSUPPORTED')
export const BodyTooLargeError = family('BERTH_ERR_BODY_TOO_LARGE', 'request body exceeds the limit of %s', 413, 'SIZE_INVALID')
export const UpstreamUnavailableError = family('BERTH_ERR_UPSTREAM_UNAVAILABLE', 'upstream registry unavailable', 502, 'UNAVAILABLE')
export const UpstreamTimeoutError = family('BERTH_ERR_UPSTREAM_TIMEOUT', 'upstream registry timed out', 504, 'UNAVAILABLE')
export const ShuttingDownError = family('BERTH_ERR_SHUTTING_DOWN', 'berth is shutting down; retry', 503, 'UNAVAILABLE')
export const UnauthorizedError = family('BERTH_ERR_UNAUTHORIZED', 'authentication required', 401, 'UNAUTHORIZED')
export const DeniedError = family('BERTH_ERR_DENIED', 'requested access to the resource is denied', 403, 'DENIED')
export const TooManyFailuresError = family('BERTH_ERR_THROTTLED', 'too many failed login attempts from this address; retry later', 429, 'TOOMANYREQUESTS')
export const NameInvalidError = family('BERTH_ERR_NAME_INVALID', 'invalid repository name', 400, 'NAME_INVALID')
export const OverloadedError = family('BERTH_ERR_OVERLOADED', 'berth is overloaded; retry later', 503, 'UNAVAILABLE')
export const ClientTimeoutError = family('BERTH_ERR_CLIENT_TIMEOUT', 'nothing moved on the connection for %s: request ended', 408, 'BLOB_UPLOAD_INVALID')
export const NotFoundError = family('BERTH_ERR_NOT_FOUND', 'not a registry API path', 404, 'UNSUPPORTED')

/** A configuration file with problems; `problems` are "key.path: what was expected, got what". */
export class ConfigError extends Error {
  code = 'BERTH_ERR_CONFIG'
  file: string
  problems: string[]
  constructor (file: string, problems: string[]) {
    super(problems.map((p) => `${file}: ${p}`).join('\n'))
    this.file = file
    this.problems = problems
  }
}

/** The 401 every unauthenticated refusal carries, with the challenge that makes `docker login` send credentials. */
export function challenged (reply: FastifyReply, challenge: string): Error {
  reply.header('www-authenticate', challenge)
  return new UnauthorizedError()
}

/** A registry-shaped error for plugins to throw from hooks (also `fastify.registryError`). */
export function registryError (statusCode: number, registryCode: string, message: string, detail?: unknown): RegistryErrorShape {
  return Object.assign(new Error(message), { code: `BERTH_PLUGIN_${registryCode}`, statusCode, registryCode, detail })
}

export const API_VERSION_HEADER = 'docker-distribution-api-version'
export const API_VERSION = 'registry/2.0'

function registryErrorBody (err: RegistryErrorShape): string {
  const code = err.registryCode ?? 'UNKNOWN'
  // 5xx messages from elsewhere may carry internals: only berth's own are shown as they are.
  const message = err.registryCode !== undefined ? err.message : 'internal error'
  return JSON.stringify({ errors: [{ code, message, detail: err.detail ?? null }] })
}

/** The status and body of a registry error; Fastify's own 4xx errors (a bad URL) keep their status. */
function answerOf (err: RegistryErrorShape): { status: number, body: string } {
  const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
  if (err.registryCode === undefined && status < 500) err.registryCode = 'UNSUPPORTED'
  return { status, body: registryErrorBody(err) }
}

const JSON_TYPE = 'application/json; charset=utf-8'

/** Whether the request announced a body that was not read: an answer then closes the connection. */
function bodyUnread (req: IncomingMessage): boolean {
  return !req.complete && (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0')
}

/** Sends a registry error's body on a Fastify reply; `length` is its byte length, for the access log. */
function sendError (reply: FastifyReply, status: number, body: string, length: number): void {
  const req = reply.request.raw
  // A refused upload's body was never read: close rather than let Node drain hundreds of megabytes.
  if (bodyUnread(req)) reply.header('connection', 'close')
  reply.request.bodyBytesSent = req.method === 'HEAD' ? 0 : length
  reply.code(status).header(API_VERSION_HEADER, API_VERSION).type(JSON_TYPE).send(body)
}

/** Answers a Fastify reply with a registry error (hooks, the error and not-found handlers). */
export function replyError (reply: FastifyReply, err: RegistryErrorShape): void {
  const { status, body } = answerOf(err)
  sendError(reply, status, body, Buffer.byteLength(body))
}

const UNAUTHORIZED_BODY = registryErrorBody(new UnauthorizedError())
const UNAUTHORIZED_LENGTH = Buffer.byteLength(UNAUTHORIZED_BODY)

/**
 * The 401 of `challenged`, answered from a hook, which then must not call `done`: no error object and no
 * trip through Fastify's error path and the error handler. It is the first answer every client gets
 * (docker asks without credentials, then logs in), and the one an unauthenticated flood costs; answering
 * it here took 6 % off its CPU, 11 % in a berth that had proxied before (docs/measurements.md). The
 * response is the error handler's, byte for byte (a test holds them equal).
 */
export function replyChallenge (reply: FastifyReply, challenge: string): void {
  reply.header('www-authenticate', challenge)
  sendError(reply, 401, UNAUTHORIZED_BODY, UNAUTHORIZED_LENGTH)
}

/**
 * Writes a registry error on a raw response (the proxy hijacks its replies); `close` asks the client to
 * reconnect. Returns the body's length, for the access log. A response already started is cut instead.
 */
export function writeRegistryError (res: ServerResponse, err: RegistryErrorShape, close = false): number {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return 0
  }
  const { status, body } = answerOf(err)
  const length = Buffer.byteLength(body)
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': length, [API_VERSION_HEADER]: API_VERSION, ...(close ? { connection: 'close' } : {}) })
  res.end(body)
  return length
}

/** nginx's lingering_time: how long the rest of an unread request body is read and dropped. */
const LINGER_BODY_MS = 30_000

/**
 * An answer goes out before the request body was read (a refusal, an upstream that failed first): read
 * and drop the rest for a while (nginx's lingering close), so that a client still sending reads the answer
 * instead of a reset connection; past that, the connection is closed.
 */
export function closeUnread (req: IncomingMessage): void {
  const timer = setTimeout(() => req.socket?.destroy(), LINGER_BODY_MS).unref()
  req.once('end', () => clearTimeout(timer))
  req.resume()
}

/** How long a connection refused at the parser keeps reading (and dropping) what the client still sends. */
const LINGER_MS = 5_000
const LINGER_BYTES = 1 << 20
const lingering = new WeakSet<object>()

/**
 * Node's parser refused what the client sent (headers over the limit, malformed framing). Answers once,
 * registry-shaped, then closes gracefully: a FIN after the answer, and what the client is still sending is
 * read and dropped for a while (nginx's lingering close). Closing at once (Node's and Fastify's way) resets
 * a connection whose client is still writing, and the reset often destroys the answer before it is read.
 */
export function answerClientError (err: Error & { code?: string }, socket: import('node:stream').Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || lingering.has(socket)) return
  lingering.add(socket)
  const [status, reason, message] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'Request Header Fields Too Large', 'request headers exceed the limit']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', 'request headers did not arrive in time']
      : [400, 'Bad Request', 'malformed request']
  const body = JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message, detail: null }] })
  if (!socket.writable) { socket.destroy(); return }
  const answer = `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${body.length}\r\n` +
    `${API_VERSION_HEADER}: ${API_VERSION}\r\nconnection: close\r\n\r\n${body}`
  // A client too slow to send its headers gets no more time.
  if (status === 408) { socket.end(answer, () => socket.destroy()); return }
  socket.end(answer)
  let dropped = 0
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref()
  socket.on('close', () => clearTimeout(timer))
  socket.on('end', () => socket.destroy())
  socket.on('data', (chunk: Buffer) => { dropped += chunk.length; if (dropped > LINGER_BYTES) socket.destroy() })
  socket.resume()
}
