// Forwards every request to an upstream and streams both bodies without buffering, straight from the
// undici dispatcher to the client socket (no intermediate streams). Its routes and its catch-all body
// parser are encapsulated so that they do not leak into user plugins.
import fp from 'fastify-plugin'
import type { IncomingMessage, ServerResponse, OutgoingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { requestBody } from './body-limit.js'
import type { Upstream } from './upstream-pool.js'
import {
  UpstreamTimeoutError, UpstreamUnavailableError, writeRegistryError, type RegistryErrorShape
} from '../src/errors.js'

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

// RFC 9110 7.6.1, plus `trailer` and the non-standard `proxy-connection`. Never forwarded either way.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
// Request headers berth sets itself (`expect` is answered by berth, and undici refuses it).
const REPLACED = new Set(['x-real-ip', 'x-forwarded-for', 'x-forwarded-proto', 'expect'])

function connectionTokens (value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null
  const list = (Array.isArray(value) ? value.join(',') : value).toLowerCase().split(',')
  return new Set(list.map((t) => t.trim()).filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive'))
}

function peerAddress (req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? ''
  return a.startsWith('::ffff:') ? a.slice(7) : a
}

/** The seed's proxy_set_header lines, done right; Host passes unchanged. Flat [name, value, …] for undici. */
export function upstreamRequestHeaders (req: IncomingMessage, proto: string): string[] {
  const raw = req.rawHeaders
  const named = connectionTokens(req.headers.connection)
  const out: string[] = []
  let xff = ''
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name))) continue
    if (REPLACED.has(name)) {
      if (name === 'x-forwarded-for') xff = xff === '' ? raw[i + 1] : `${xff}, ${raw[i + 1]}`
      continue
    }
    out.push(name, raw[i + 1])
  }
  const peer = peerAddress(req)
  out.push('x-real-ip', peer, 'x-forwarded-for', xff === '' ? peer : `${xff}, ${peer}`, 'x-forwarded-proto', proto)
  return out
}

/** Response headers minus hop-by-hop ones; everything else, Location included, passes unchanged. */
export function clientResponseHeaders (headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const named = connectionTokens(headers.connection)
  const out: OutgoingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name))) continue
    out[name] = headers[name]
  }
  return out
}

function classify (err: Error & { code?: string }): RegistryErrorShape {
  if ((err as RegistryErrorShape).registryCode !== undefined) return err as RegistryErrorShape
  switch (err.code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return new UpstreamTimeoutError({ cause: err })
    default:
      return new UpstreamUnavailableError({ cause: err })
  }
}

/** One forwarded request. undici's handler API: the response body goes from the upstream socket to res. */
class ProxyHandler implements Dispatcher.DispatchHandler {
  request: FastifyRequest
  res: ServerResponse
  upstream: Upstream
  hasBody: boolean
  controller: Dispatcher.DispatchController | null = null
  onDrain: (() => void) | null = null
  /** Bytes moved on either connection at the last idle sweep, and when that number last changed. */
  moved = -1
  movedAt = 0

  constructor (request: FastifyRequest, res: ServerResponse, upstream: Upstream, hasBody: boolean) {
    this.request = request
    this.res = res
    this.upstream = upstream
    this.hasBody = hasBody
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    // The client may have gone while the request waited for a connection.
    if (this.res.destroyed) controller.abort(new Error('client closed the connection'))
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    const res = this.res
    if (res.destroyed) return
    try {
      res.writeHead(statusCode, clientResponseHeaders(headers))
    } catch (err) {
      // A header value Node refuses to send (it validates what undici's parser let through): 502.
      res.removeHeader('content-length')
      controller.abort(new UpstreamUnavailableError({ cause: err }))
      return
    }
    this.onDrain = () => controller.resume()
    res.on('drain', this.onDrain)
  }

  /** Total bytes moved so far, client side (either way) and upstream side (response body). */
  activity (): number {
    const socket = this.request.raw.socket
    return (socket === null ? 0 : socket.bytesRead + socket.bytesWritten) + this.request.bodyBytesSent
  }

  /** Ends the transfer (504 before the response started, an abrupt close after). */
  expire (): void {
    const err = new UpstreamTimeoutError()
    if (this.controller !== null) this.controller.abort(err)
    else this.onResponseError(null, err)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.request.bodyBytesSent += chunk.length
    if (!this.res.write(chunk)) controller.pause()
  }

  onResponseEnd (): void {
    this.res.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController | null, err: Error): void {
    const res = this.res
    if (res.destroyed || res.writableEnded) {
      // The client left first (its close aborted this request): nothing to answer.
      this.request.log.debug({ err, upstream: this.upstream.address }, 'upstream request aborted')
      return
    }
    const error = classify(err)
    if (res.headersSent) {
      // Mid-body: end the client's connection abruptly, never with a clean short response.
      this.request.log.error({ err, upstream: this.upstream.address }, 'upstream response failed mid-body')
      res.destroy(err)
      return
    }
    if ((error.statusCode ?? 500) >= 500) this.request.log.error({ err, upstream: this.upstream.address }, 'upstream request failed')
    // When the request body may be unread, close rather than let Node drain it.
    this.request.bodyBytesSent = writeRegistryError(res, error, this.hasBody && !this.request.raw.complete)
  }
}

/**
 * nginx's proxy_read/send_timeout and send_timeout as one rule: a transfer ends when no byte has moved
 * either way, on either connection, for `idle` ms. One sweep for all requests, not a timer each; undici's
 * own headers/body timeouts (same value) do not see a client that stopped sending or reading.
 */
class IdleSweeper {
  active = new Set<ProxyHandler>()
  idle: number
  timer: NodeJS.Timeout

  constructor (idle: number) {
    this.idle = idle
    this.timer = setInterval(() => { this.sweep() }, Math.max(10, Math.min(1000, Math.floor(idle / 4)))).unref()
  }

  sweep (): void {
    const now = Date.now()
    for (const h of this.active) {
      const moved = h.activity()
      if (moved !== h.moved) {
        h.moved = moved
        h.movedAt = now
      } else if (now - h.movedAt >= this.idle) {
        this.active.delete(h)
        h.expire()
      }
    }
  }

  close (): void { clearInterval(this.timer) }
}

function forward (fastify: FastifyInstance, proto: string, limit: number, sweeper: IdleSweeper, request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack()
  const req = request.raw
  const res = reply.raw
  const upstream = fastify.upstreams.pick()
  const body = requestBody(req, limit)
  request.upstreamAddress = upstream.address
  if (body !== null && req.headers.expect !== undefined) res.writeContinue()
  const handler = new ProxyHandler(request, res, upstream, body !== null)
  handler.movedAt = Date.now()
  sweeper.active.add(handler)
  res.once('close', () => {
    sweeper.active.delete(handler)
    if (!res.writableFinished) handler.controller?.abort(new Error('client closed the connection'))
  })
  upstream.dispatcher.dispatch({
    path: req.url as string,
    method: req.method as Dispatcher.HttpMethod,
    headers: upstreamRequestHeaders(req, proto),
    // undici accepts async iterables (the counted chunked body) although its types list only streams.
    body: body as Dispatcher.DispatchOptions['body'],
    // Not in undici's types, but read by its Request: keeps one TLS name per pool whatever the Host.
    servername: upstream.servername
  } as Dispatcher.DispatchOptions, handler)
}

export default fp(async function proxy (fastify) {
  const proto = fastify.berthConfig.tls ? 'https' : 'http'
  const limit = fastify.berthConfig.limits.maxBodySize
  const sweeper = new IdleSweeper(fastify.berthConfig.upstream.timeouts.idle)
  fastify.addHook('onClose', async () => { sweeper.close() })
  await fastify.register(async function routes (instance) {
    // Every body passes through untouched: drop Fastify's buffering JSON and text parsers first.
    instance.removeAllContentTypeParsers()
    instance.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
    instance.route({
      method: METHODS,
      url: '/*',
      handler: (request, reply) => { forward(fastify, proto, limit, sweeper, request, reply) }
    })
  })
}, { name: 'berth-proxy', fastify: '5.x', dependencies: ['berth-upstream-pool', 'berth-body-limit', 'berth-request-target'] })
