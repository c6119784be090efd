// Forwards every request to an upstream and streams both bodies without buffering, straight from the
// undici dispatcher to the client socket (no intermediate streams). Its routes and its catch-all body
// parser are encapsulated so that they do not leak into user plugins.
import fp from 'fastify-plugin'
import type { ServerResponse, OutgoingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { requestBody } from './body-limit.js'
import { clientResponseHeaders, upstreamRequestHeaders, type Forwarding as ForwardingHeaders } from '../src/proxy/headers.js'
import type { Upstream, UpstreamPool } from './upstream-pool.js'
import { cacheableBlob, serveCopy, type BlobCache, type Fill } from './blob-cache.js'
import type { BerthConfig } from '../src/config/schema.js'
import { peerAddress } from '../src/net.js'
import { createHash, type Hash } from 'node:crypto'
import {
  API_VERSION, API_VERSION_HEADER, ClientTimeoutError, UpstreamTimeoutError, UpstreamUnavailableError, writeRegistryError, type RegistryErrorShape
} from '../src/errors.js'
import { filteredCatalog } from '../src/registry/catalog.js'
import { formatDuration } from '../src/config/units.js'

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

type Cause = 'error' | 'timeout' | 'invalid_header' | `http_${number}`

/** Aborts an attempt whose status is listed in nextUpstream.on, to try the next server. */
class RetryStatus extends Error {
  status: number
  constructor (status: number) { super(`status ${status}`); this.status = status }
}

/** A response berth cannot pass on (header bytes Node refuses to send, a bad Range answer). */
class InvalidResponse extends Error {}

/** nginx's proxy_next_upstream vocabulary for what went wrong with one upstream attempt. */
function causeOf (err: Error & { code?: string }): Cause {
  if (err instanceof RetryStatus) return `http_${err.status}`
  if (err instanceof InvalidResponse) return 'invalid_header'
  switch (err.code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'BERTH_ERR_UPSTREAM_TIMEOUT':
      return 'timeout'
  }
  if (typeof err.code === 'string' && err.code.startsWith('HPE_')) return 'invalid_header'
  return 'error'
}

/** What the header policy needs to know of a request. */
function forwardingOf (request: FastifyRequest, opts: ProxyOptions): ForwardingHeaders {
  const req = request.raw
  let fallbackHost = ''
  if (req.headers.host === undefined) {
    // HTTP/1.0 without Host: the configured public name, else the address the client connected to.
    const local = req.socket?.localAddress ?? '127.0.0.1'
    const address = local.startsWith('::ffff:') ? local.slice(7) : local
    fallbackHost = opts.publicHost ?? `${address.includes(':') ? `[${address}]` : address}:${req.socket?.localPort ?? 0}`
  }
  return { proto: opts.proto, client: request.clientAddress, peer: peerAddress(req), trusted: request.viaTrustedProxy, fallbackHost }
}

const DIGEST = /^([a-z0-9]+)(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const REPLAY_ONCE_SENT = new Set(['POST', 'PATCH', 'PUT'])
/** nginx lingering_time. */
const LINGER = 30_000

/**
 * How much of a response may wait in berth for a slow client before the upstream is paused. Node's
 * 16 KiB highWaterMark would pause and resume the upstream for nearly every TLS record of a download:
 * measured on 250 MB downloads, that alone made berth 0.6-0.8x nginx; 1 MiB made it 1.0-1.1x (raising
 * the server's highWaterMark instead did not help). The total is bounded: 4 MiB shared by all responses
 * in flight, between Node's 16 KiB and 1 MiB each, so that one download gets the whole window and 100
 * concurrent ones hold no more than before (a 16 MiB budget raised the soak's peak RSS by 40 MB).
 */
const SEND_BUDGET = 4 << 20
export const sendWindow = (responses: number): number => Math.max(16 << 10, Math.min(1 << 20, Math.floor(SEND_BUDGET / Math.max(1, responses))))

/** A request can go to another server only if it can be replayed there (nginx's rules, stricter for bodies). */
export function canReplay (method: string, hasBody: boolean, sent: boolean, nonIdempotent: boolean): boolean {
  if (!sent) return true // nothing reached the failed server; the body was not read
  if (hasBody) return false // a body that started streaming can never be replayed
  return !REPLAY_ONCE_SENT.has(method) || nonIdempotent
}

export interface ProxyOptions {
  proto: 'http' | 'https'
  /** listen.publicHost: the Host for requests without one. */
  publicHost: string | null
  limit: number
  retryOn: ReadonlySet<string>
  tries: number
  budget: number
  nonIdempotent: boolean
}

/**
 * One client request and every upstream attempt made for it: the next server while nothing was sent to
 * the client (nginx's proxy_next_upstream, with its replay rules), and a Range resume from another
 * server when a digest-addressed download dies mid-body.
 */
class Forwarding {
  request: FastifyRequest
  res: ServerResponse
  pool: UpstreamPool
  opts: ProxyOptions
  headers: string[]
  /** The origin the client sees, for Location and Link headers that name an upstream server. */
  publicOrigin: string
  body: Readable | null
  tried = new Set<Upstream>()
  reasons: string[] = []
  startedAt = Date.now()
  attempt: Attempt | null = null
  finished = false
  reply: FastifyReply
  /** Digest-addressed GETs can be resumed: total length and a running digest of what was sent. */
  resumable: boolean
  digest: string | null = null
  total = -1
  hash: Hash | null = null
  pieces = 0
  /** Idle sweep state: bytes moved (all, and on the client connection) at the last sweep, and when. */
  moved = -1
  movedAt = Date.now()
  clientMoved = -1
  clientMovedAt = Date.now()

  /** Every response in flight (the idle sweeper's set): they share one send budget. */
  inFlight: ReadonlySet<Forwarding>
  /** A blob download the cache may keep (plugins/blob-cache.ts), and its fill once the 200 arrived. */
  cacheable: { cache: BlobCache, repository: string, digest: string } | null
  fill: Fill | null = null

  constructor (request: FastifyRequest, reply: FastifyReply, pool: UpstreamPool, opts: ProxyOptions, inFlight: ReadonlySet<Forwarding>, cacheable: Forwarding['cacheable'] = null) {
    this.request = request
    this.inFlight = inFlight
    this.cacheable = cacheable
    this.reply = reply
    this.res = reply.raw
    this.pool = pool
    this.opts = opts
    const req = request.raw
    const upstream = upstreamRequestHeaders(req, forwardingOf(request, opts))
    this.headers = upstream.headers
    this.publicOrigin = upstream.publicOrigin
    this.body = requestBody(request, opts.limit)
    const action = request.registryAction
    this.resumable = req.method === 'GET' && pool.servers.length > 1 && req.headers.range === undefined &&
      action !== null && (action.kind === 'blob' || action.kind === 'manifest') && DIGEST.test(action.reference ?? '')
    if (this.resumable) this.digest = action?.reference ?? null
  }

  /** The upstream's headers (hop-by-hop ones dropped) plus those hooks set with reply.header(). */
  responseHeaders (headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
    const out = clientResponseHeaders(headers, this.pool.origins, this.publicOrigin)
    const added = this.reply.getHeaders()
    for (const name in added) if (out[name] === undefined) out[name] = added[name]
    return out
  }

  start (): void {
    const upstream = this.pool.pick(this.tried)
    if (upstream === null) { this.giveUp(null); return }
    this.dispatch(upstream, -1)
  }

  dispatch (upstream: Upstream, from: number): void {
    this.tried.add(upstream)
    const r = this.request
    r.upstreamAddress = r.upstreamAddress === '' ? upstream.address : `${r.upstreamAddress}, ${upstream.address}`
    upstream.active++
    upstream.requests++
    const attempt = new Attempt(this, upstream, from)
    this.attempt = attempt
    const req = r.raw
    upstream.dispatcher.dispatch({
      path: req.url as string,
      method: req.method as Dispatcher.HttpMethod,
      headers: from < 0 ? this.headers : [...this.headers, 'range', `bytes=${from}-`],
      body: from < 0 ? this.body : null,
      // Not in undici's types, but read by its Request: keeps one TLS name per pool whatever the Host.
      servername: upstream.servername
    } as Dispatcher.DispatchOptions, attempt)
  }

  /** Bytes moved on the client connection so far, either way. */
  clientActivity (): number {
    const socket = this.request.raw.socket
    return socket === null ? 0 : socket.bytesRead + socket.bytesWritten
  }

  /** Whether berth is waiting on the client: for more of the body, or for it to read what was sent. */
  waitingOnClient (): boolean {
    return (this.body !== null && !this.request.raw.complete) || this.res.writableNeedDrain
  }

  /** Ends the current attempt: the client stalled (408 or a cut), or nothing moved (504, next, resume). */
  expire (err: Error): void {
    const attempt = this.attempt
    if (attempt === null || this.finished) return
    if (attempt.controller !== null) attempt.controller.abort(err)
    else this.failed(attempt, err)
  }

  withinBudget (): boolean {
    if (this.opts.tries > 0 && this.tried.size >= this.opts.tries) return false
    return this.opts.budget === 0 || Date.now() - this.startedAt < this.opts.budget
  }

  replayable (attempt: Attempt): boolean {
    return canReplay(this.request.raw.method ?? '', this.body !== null, attempt.sent, this.opts.nonIdempotent)
  }

  /** Should a response with this status go to the next server instead of to the client? */
  retryStatus (attempt: Attempt, status: number): boolean {
    return this.opts.retryOn.has(`http_${status}`) && this.replayable(attempt) && this.withinBudget() && this.pool.hasCandidate(this.tried)
  }

  #drain: (() => void) | null = null
  /** Backpressure: the client socket drained, so the current attempt may read on. */
  onDrain (controller: Dispatcher.DispatchController): void {
    if (this.#drain !== null) this.res.off('drain', this.#drain)
    this.#drain = () => { if (this.fill === null || !this.fill.needDrain) controller.resume() }
    this.res.on('drain', this.#drain)
  }

  /** Starts keeping a blob download in the cache, when it may (a whole 200 of known length). */
  startFill (statusCode: number, length: number): void {
    const c = this.cacheable
    if (c !== null && statusCode === 404) c.cache.unconfirm(c.repository, c.digest)
    if (c === null || statusCode !== 200 || !Number.isSafeInteger(length)) return
    c.cache.confirm(c.repository, c.digest) // the upstream just served it for this repository
    if (this.request.raw.method !== 'GET' || this.request.raw.headers.range !== undefined) return
    this.fill = c.cache.startFill(c.digest, length)
    // The file fell behind: the upstream waits for it as it waits for a slow client.
    this.fill?.onDrain(() => { if (!this.res.writableNeedDrain) this.attempt?.controller?.resume() })
  }

  dropFill (): void {
    this.fill?.abort()
    this.fill = null
  }

  /** The last chunk of a verified download, held back until the digest matched. */
  last: Buffer | null = null

  write (chunk: Buffer, controller: Dispatcher.DispatchController): void {
    this.request.bodyBytesSent += chunk.length
    if (this.fill !== null && !this.fill.write(chunk)) controller.pause()
    if (this.hash !== null) {
      this.hash.update(chunk)
      // Without its last bytes the client cannot take a wrong body for a whole one.
      if (this.request.bodyBytesSent === this.total) { this.last = chunk; return }
    }
    // Past the window, wait for 'drain' (onDrain resumes; a resume that was not paused does nothing).
    if (!this.res.write(chunk) && this.res.writableLength >= sendWindow(this.inFlight.size)) controller.pause()
  }

  complete (attempt: Attempt): void {
    if (attempt !== this.attempt || this.finished) return
    attempt.upstream.active--
    this.finished = true
    if (this.hash !== null) {
      // The pieces must add up: the length, and the digest berth computed on the way.
      const got = `${(this.digest as string).split(':')[0]}:${this.hash.digest('hex')}`
      if (this.request.bodyBytesSent !== this.total || got !== this.digest) {
        this.request.log.error({ expected: this.digest, got, bytes: this.request.bodyBytesSent, total: this.total, pieces: this.pieces }, 'download does not match its digest: connection closed')
        this.dropFill()
        this.res.destroy()
        return
      }
      if (this.pieces > 1) this.request.log.warn({ digest: this.digest, pieces: this.pieces, servers: this.request.upstreamAddress }, 'download resumed from another server and verified')
    }
    this.res.end(this.last)
    if (this.fill !== null) {
      // The fill checks the digest itself: a registry that sent a wrong body gets nothing kept.
      const { digest } = this.fill
      this.fill.commit().then((kept) => {
        if (!kept) this.request.log.warn({ digest, upstream: this.request.upstreamAddress }, 'blob did not match its digest: not cached')
      }, (err: Error) => { this.request.log.warn({ err, digest }, 'blob cache: could not keep a copy') })
    }
  }

  failed (attempt: Attempt, err: Error & { code?: string }): void {
    if (attempt !== this.attempt || this.finished) return
    attempt.upstream.active--
    const res = this.res
    if (res.destroyed || res.writableEnded) {
      this.dropFill()
      // The client left first (its close aborted this attempt): nothing to answer.
      this.finished = true
      this.request.log.debug({ err, upstream: attempt.upstream.address }, 'upstream request aborted')
      return
    }
    if (err instanceof ClientTimeoutError) {
      // The client stalled: not the upstream's fault, nothing to retry.
      this.request.log.info({ upstream: attempt.upstream.address }, 'client stalled: request ended')
      this.dropFill()
      if (res.headersSent) { this.finished = true; res.destroy(); return }
      this.finish(err as RegistryErrorShape)
      return
    }
    if ((err as RegistryErrorShape).registryCode === 'SIZE_INVALID') { this.finish(err as RegistryErrorShape); return }
    const cause = causeOf(err)
    if (cause === 'error' || cause === 'timeout' || cause === 'invalid_header') this.pool.passiveFailure(attempt.upstream)
    this.reasons.push(`${attempt.upstream.address}: ${cause === 'error' ? `${err.code ?? ''} ${err.message}`.trim() : cause}`)
    if (!res.headersSent) {
      if (this.opts.retryOn.has(cause) && this.replayable(attempt) && this.withinBudget()) {
        const next = this.pool.pick(this.tried)
        if (next !== null) { this.dispatch(next, -1); return }
      }
      this.giveUp(cause)
      return
    }
    // Mid-body. An immutable, digest-addressed download continues from another server.
    if (this.hash !== null && this.total > this.request.bodyBytesSent) {
      const next = this.pool.pick(this.tried)
      if (next !== null) {
        this.request.log.warn({ upstream: attempt.upstream.address, next: next.address, at: this.request.bodyBytesSent, total: this.total, err: err.message }, 'upstream died mid-download: resuming with a Range request')
        this.dispatch(next, this.request.bodyBytesSent)
        return
      }
    }
    this.finished = true
    this.dropFill()
    // End the client's connection abruptly, never with a clean short response.
    this.request.log.error({ err, tried: this.reasons }, 'upstream response failed mid-body')
    res.destroy(err)
  }

  /** No server could take the request: 502, or 504 when the last failure was a timeout. */
  giveUp (cause: Cause | null): void {
    const error = cause === 'timeout' ? new UpstreamTimeoutError() : new UpstreamUnavailableError()
    this.request.log.error({ tried: this.reasons, cause: cause ?? 'no server available' }, 'no upstream could take the request')
    this.finish(error)
  }

  finish (error: RegistryErrorShape): void {
    this.finished = true
    const req = this.request.raw
    if (this.body !== null && !req.complete) {
      if (error.registryCode === 'SIZE_INVALID' || error instanceof ClientTimeoutError) {
        // Over the limit, or a stalled client: close rather than read on.
        this.request.bodyBytesSent = writeRegistryError(this.res, error, true)
        return
      }
      // nginx's lingering close: read and drop the rest of the body for a while, so that the client,
      // still sending, gets to read this answer instead of a reset connection.
      const timer = setTimeout(() => req.socket?.destroy(), LINGER).unref()
      req.once('end', () => clearTimeout(timer))
      req.resume()
    }
    this.request.bodyBytesSent = writeRegistryError(this.res, error)
  }
}

/** One upstream attempt, as an undici dispatch handler: the body goes from the upstream socket to res. */
class Attempt implements Dispatcher.DispatchHandler {
  f: Forwarding
  upstream: Upstream
  /** -1, or the offset this attempt resumes from (a Range request). */
  from: number
  controller: Dispatcher.DispatchController | null = null
  /** The request reached the server (headers written, body streaming). */
  sent = false

  constructor (f: Forwarding, upstream: Upstream, from: number) {
    this.f = f
    this.upstream = upstream
    this.from = from
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    this.sent = true
    // The client may have gone while the request waited for a connection.
    if (this.f.res.destroyed) controller.abort(new Error('client closed the connection'))
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    const f = this.f
    const res = f.res
    if (res.destroyed || f.attempt !== this) return
    if (this.from >= 0) {
      // A resume must continue exactly where the client is: 206 for the missing bytes of the same total.
      if (statusCode !== 206 || headers['content-range'] !== `bytes ${this.from}-${f.total - 1}/${f.total}`) {
        controller.abort(new InvalidResponse(`resume answered ${statusCode} ${String(headers['content-range'])}`))
        return
      }
      f.pieces++
    } else {
      if (f.retryStatus(this, statusCode)) { controller.abort(new RetryStatus(statusCode)); return }
      try {
        res.writeHead(statusCode, f.responseHeaders(headers))
      } catch (err) {
        // A header value Node refuses to send (it validates what undici's parser let through).
        res.removeHeader('content-length')
        controller.abort(new InvalidResponse((err as Error).message))
        return
      }
      const length = Number(headers['content-length'])
      f.startFill(statusCode, length)
      if (f.resumable && statusCode === 200 && Number.isSafeInteger(length)) {
        f.total = length
        f.pieces = 1
        f.hash = createHash((f.digest as string).startsWith('sha512:') ? 'sha512' : 'sha256')
      }
    }
    f.onDrain(controller)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.f.attempt === this) this.f.write(chunk, controller)
  }

  onResponseEnd (): void {
    this.f.complete(this)
  }

  onResponseError (_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.f.failed(this, err)
  }
}

/**
 * nginx's proxy_read/send_timeout and send_timeout as one rule: a transfer ends when no byte has moved
 * either way, on either connection, for `idle` ms. One sweep for all requests, not a timer each; undici's
 * own headers/body timeouts (same value) do not see a client that stopped sending or reading.
 */
class IdleSweeper {
  active = new Set<Forwarding>()
  idle: number
  clientIdle: number
  timer: NodeJS.Timeout

  constructor (idle: number, clientIdle: number) {
    this.idle = idle
    this.clientIdle = clientIdle
    this.timer = setInterval(() => { this.sweep() }, Math.max(10, Math.min(1000, Math.floor(Math.min(idle, clientIdle) / 4)))).unref()
  }

  sweep (): void {
    const now = Date.now()
    for (const f of this.active) {
      const client = f.clientActivity()
      const moved = client + f.request.bodyBytesSent
      if (client !== f.clientMoved) { f.clientMoved = client; f.clientMovedAt = now }
      if (moved !== f.moved) { f.moved = moved; f.movedAt = now }
      if (f.waitingOnClient() && now - f.clientMovedAt >= this.clientIdle) {
        // nginx's client_body_timeout / send_timeout: the client stopped sending or reading.
        f.clientMovedAt = now
        f.expire(new ClientTimeoutError(formatDuration(this.clientIdle)))
      } else if (now - f.movedAt >= this.idle) {
        f.movedAt = now // a next attempt, if any, gets a whole idle period
        f.expire(new UpstreamTimeoutError())
      }
    }
  }

  close (): void { clearInterval(this.timer) }
}

function forward (pool: UpstreamPool, opts: ProxyOptions, sweeper: IdleSweeper, cache: BlobCache | null, request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack()
  const repository = request.registryAction?.repository ?? null
  if (cache !== null && repository !== null && request.raw.method === 'DELETE') {
    // A blob or a manifest goes: what berth remembers of the repository goes with it, also once the
    // registry answered (a download confirming the repository meanwhile must not outlive the delete).
    cache.forgetRepository(repository)
    reply.raw.once('finish', () => { cache.forgetRepository(repository) })
  }
  if (request.catalogFilter !== null && request.registryAction?.kind === 'catalog' && request.raw.method === 'GET') {
    catalog(pool, opts, request, reply.raw, request.catalogFilter)
    return
  }
  const blob = cache === null ? null : cacheableBlob(request)
  if (cache === null || blob === null) { proxyRequest(pool, opts, sweeper, request, reply, null); return }
  const cacheable = { cache, ...blob }
  if (cache.sizeOf(blob.digest) === undefined) {
    cache.stats.misses++
    proxyRequest(pool, opts, sweeper, request, reply, cacheable)
    return
  }
  fromCache(pool, opts, sweeper, request, reply, cacheable).catch((err: Error) => {
    request.log.error({ err }, 'blob cache: could not serve a copy')
    if (!reply.raw.headersSent) proxyRequest(pool, opts, sweeper, request, reply, null)
    else reply.raw.destroy()
  })
}

/**
 * A cached blob, served only for a repository the upstream confirmed holds it (a HEAD, remembered), so
 * that the cache never hands one repository's blob to a request for another.
 */
async function fromCache (pool: UpstreamPool, opts: ProxyOptions, sweeper: IdleSweeper, request: FastifyRequest, reply: FastifyReply, c: NonNullable<Forwarding['cacheable']>): Promise<void> {
  const { cache, repository, digest } = c
  if (!cache.confirmed(repository, digest)) {
    const status = await upstreamStatus(pool, `/v2/${repository}/blobs/${digest}`, confirmHeaders(request, opts))
    if (status !== 200) {
      if (status === 404) cache.unconfirm(repository, digest)
      // Not there (404), or no answer: the upstream answers the request itself, as without a cache.
      proxyRequest(pool, opts, sweeper, request, reply, null)
      return
    }
    cache.confirm(repository, digest)
  }
  if (reply.raw.destroyed) return
  if (!await serveCopy(cache, request, reply.raw, digest)) proxyRequest(pool, opts, sweeper, request, reply, c)
}

/** The request's own headers for the confirming HEAD, without Range and conditions (a HEAD asks "is it there"). */
function confirmHeaders (request: FastifyRequest, opts: ProxyOptions): string[] {
  const all = upstreamRequestHeaders(request.raw, forwardingOf(request, opts)).headers
  const out: string[] = []
  for (let i = 0; i < all.length; i += 2) {
    if (all[i] === 'range' || all[i].startsWith('if-')) continue
    out.push(all[i], all[i + 1])
  }
  return out
}

/** The status of one HEAD on a server the pool picks; 0 when none answered. */
function upstreamStatus (pool: UpstreamPool, path: string, headers: string[]): Promise<number> {
  const upstream = pool.pick(new Set())
  if (upstream === null) return Promise.resolve(0)
  return new Promise((resolve) => {
    // undici takes a handler without onRequestStart for one of its older shape: all four are needed.
    upstream.dispatcher.dispatch({ path, method: 'HEAD', headers, servername: upstream.servername } as Dispatcher.DispatchOptions, {
      onRequestStart () {},
      onResponseStart (_controller, statusCode) { resolve(statusCode) },
      onResponseData () {},
      onResponseEnd () {},
      onResponseError () { resolve(0) }
    })
  })
}

/** GET /v2/_catalog for a requester who may see part of it: the registry's pages, filtered. */
function catalog (pool: UpstreamPool, opts: ProxyOptions, request: FastifyRequest, res: ServerResponse, visible: (name: string) => boolean): void {
  const url = request.raw.url ?? ''
  const q = url.indexOf('?')
  const { headers, publicOrigin } = upstreamRequestHeaders(request.raw, forwardingOf(request, opts))
  const fetchPage = async (query: string) => {
    const upstream = pool.pick(new Set())
    if (upstream === null) throw new UpstreamUnavailableError()
    request.upstreamAddress = upstream.address
    const answer = await upstream.dispatcher.pool.request({ path: `/v2/_catalog${query === '' ? '' : `?${query}`}`, method: 'GET', headers, servername: upstream.servername } as Dispatcher.RequestOptions)
    return { status: answer.statusCode, headers: answer.headers, body: Buffer.from(await answer.body.arrayBuffer()) }
  }
  filteredCatalog(q === -1 ? '' : url.slice(q + 1), visible, fetchPage).then((answer) => {
    if (res.destroyed) return
    const out = clientResponseHeaders(answer.headers, pool.origins, publicOrigin)
    delete out['content-length']
    res.writeHead(answer.status, { ...out, 'content-length': answer.body.length, [API_VERSION_HEADER]: API_VERSION })
    res.end(answer.body)
    request.bodyBytesSent = answer.body.length
  }, (err: Error) => {
    request.log.error({ err }, 'catalog: the registry could not be listed')
    request.bodyBytesSent = writeRegistryError(res, new UpstreamUnavailableError())
  })
}

function proxyRequest (pool: UpstreamPool, opts: ProxyOptions, sweeper: IdleSweeper, request: FastifyRequest, reply: FastifyReply, cacheable: Forwarding['cacheable']): void {
  const res = reply.raw
  const f = new Forwarding(request, reply, pool, opts, sweeper.active, cacheable)
  if (f.body !== null && request.raw.headers.expect !== undefined) res.writeContinue()
  sweeper.active.add(f)
  res.once('close', () => {
    sweeper.active.delete(f)
    if (!res.writableFinished) {
      f.dropFill()
      f.attempt?.controller?.abort(new Error('client closed the connection'))
    }
  })
  f.start()
}

export default fp(async function proxy (fastify) {
  const options = (config: BerthConfig): ProxyOptions => ({
    proto: config.tls ? 'https' : 'http',
    publicHost: config.listen.publicHost ?? null,
    limit: config.limits.maxBodySize,
    retryOn: new Set(config.upstream.nextUpstream.on),
    tries: config.upstream.nextUpstream.tries,
    budget: config.upstream.nextUpstream.timeout,
    nonIdempotent: config.upstream.nextUpstream.nonIdempotent
  })
  let opts = options(fastify.berthConfig)
  const sweeper = new IdleSweeper(fastify.berthConfig.upstream.timeouts.idle, fastify.berthConfig.timeouts.clientIdle)
  fastify.addHook('onClose', async () => { sweeper.close() })
  fastify.onReload({
    name: 'proxy',
    async prepare (next) {
      const fresh = options(next)
      return { commit () { opts = fresh; sweeper.idle = next.upstream.timeouts.idle; sweeper.clientIdle = next.timeouts.clientIdle } }
    }
  })
  await fastify.register(async function routes (instance) {
    // Every body passes through untouched: drop Fastify's buffering JSON and text parsers first.
    instance.removeAllContentTypeParsers()
    instance.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
    instance.route({
      method: METHODS,
      url: '/*',
      handler: (request, reply) => { forward(fastify.upstreams, opts, sweeper, fastify.blobCache, request, reply) }
    })
  })
}, { name: 'berth-proxy', fastify: '5.x', dependencies: ['berth-upstream-pool', 'berth-body-limit', 'berth-request-target', 'berth-blob-cache'] })
