// Sending a request upstream: the headers, the body, an exchange watched for idleness and counted in
// the send budget. What the proxy works with (ProxyContext) is read per request: a reload replaces it.
import type { ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import type { Placement } from '../cluster/placement.js'
import type { UpstreamPool } from '../upstream/pool.js'
import type { BlobCache } from '../cache/store.js'
import { checkable, type DigestVerifier } from '../registry/digest.js'
import { peerAddress } from '../net.js'
import { upstreamRequestHeaders, type ClientSide } from './headers.js'
import { requestBody } from './request-body.js'
import type { RetryPolicy } from './retry.js'
import type { SendBudget } from './flow.js'
import type { IdleSweeper } from './idle.js'
import { Exchange, type Cacheable } from './exchange.js'

export interface ProxyOptions {
  proto: 'http' | 'https'
  /** listen.publicHost: the Host for requests without one. */
  publicHost: string | null
  /** limits.maxBodySize (0 = none). */
  limit: number
  policy: RetryPolicy
}

export interface ProxyContext {
  pool: () => UpstreamPool
  options: () => ProxyOptions
  cache: BlobCache | null
  sweeper: IdleSweeper
  budget: SendBudget
  /** Blob cache placement across replicas (cluster.placement); null without it. */
  placement?: Placement | null
  /** Headers added to the upstream request (a peer's signature when the upstream is the blob's owner). */
  extraHeaders?: (request: FastifyRequest) => string[]
}

/** What the header policy needs to know of a request. */
export function clientSideOf (request: FastifyRequest, o: ProxyOptions): ClientSide {
  const req = request.raw
  let fallbackHost = ''
  if (req.headers.host === undefined) {
    // HTTP/1.0 without Host: the configured public name, else the address the client connected to.
    const local = req.socket?.localAddress ?? '127.0.0.1'
    const address = local.startsWith('::ffff:') ? local.slice(7) : local
    fallbackHost = o.publicHost ?? `${address.includes(':') ? `[${address}]` : address}:${req.socket?.localPort ?? 0}`
  }
  return { proto: o.proto, client: request.clientAddress, peer: peerAddress(req), trusted: request.viaTrustedProxy, fallbackHost }
}

/** The digest a GET's whole answer must match: a blob, or a manifest by digest, with no Range. */
function digestOf (request: FastifyRequest): string | null {
  const a = request.registryAction
  if (request.raw.method !== 'GET' || request.headers.range !== undefined || a === null) return null
  return (a.kind === 'blob' || a.kind === 'manifest') && checkable(a.reference) ? a.reference : null
}

/** Sends the request upstream (or, with `resumeAt`, continues a download the client has part of). */
export function sendUpstream (ctx: ProxyContext, request: FastifyRequest, res: ServerResponse, cacheable: Cacheable | null, resumeAt?: DigestVerifier): void {
  const o = ctx.options()
  const { headers, publicOrigin } = upstreamRequestHeaders(request.raw, clientSideOf(request, o))
  if (ctx.extraHeaders !== undefined) headers.push(...ctx.extraHeaders(request))
  const body = resumeAt === undefined ? requestBody(request, o.limit) : null
  const exchange = new Exchange({ request, res, pool: ctx.pool(), policy: o.policy, budget: ctx.budget, headers, publicOrigin, body, cacheable, digest: digestOf(request) })
  // Every check passed: now the client may send the body it announced.
  if (body !== null && request.headers.expect !== undefined) res.writeContinue()
  const socket = request.raw.socket
  const watched = {
    clientBytes: () => socket === null ? 0 : socket.bytesRead + socket.bytesWritten,
    upstreamBytes: () => exchange.received,
    waitingOnClient: () => exchange.waitingOnClient(),
    expire: (err: Error) => { exchange.expire(err) }
  }
  ctx.sweeper.watch(watched)
  ctx.budget.open()
  res.once('close', () => {
    ctx.budget.close()
    ctx.sweeper.unwatch(watched)
    if (!res.writableFinished) exchange.clientClosed()
  })
  if (resumeAt === undefined) exchange.start()
  else exchange.resume(resumeAt)
}

/** A response served by berth itself (a cached copy): only the client can stall it. */
export function watchClient (ctx: ProxyContext, request: FastifyRequest, res: ServerResponse): void {
  const socket = request.raw.socket
  const watched = {
    clientBytes: () => socket === null ? 0 : socket.bytesRead + socket.bytesWritten,
    upstreamBytes: () => null,
    waitingOnClient: () => res.writableNeedDrain,
    expire: () => { res.destroy() }
  }
  ctx.sweeper.watch(watched)
  res.once('close', () => { ctx.sweeper.unwatch(watched) })
}
