// One client request and every upstream attempt made for it: the next server while nothing was sent to
// the client (src/proxy/retry.ts decides), and for a digest-addressed download a Range resume from another
// server when the one streaming it dies mid-body. The body goes from the upstream socket to the client
// socket; a digest-addressed one is hashed once on the way, its last chunk held back until the digest
// matched, and teed into the cache when the cache may keep it.
import type { ServerResponse, OutgoingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import type { Upstream, UpstreamPool } from '../upstream/pool.js'
import { clientResponseHeaders } from './headers.js'
import { causeOf, InvalidResponse, isServerFailure, RetryStatus, tryAgain, type Cause, type RetryPolicy } from './retry.js'
import { ClientWriter, Valve, type SendBudget } from './flow.js'
import { Attempt } from './attempt.js'
import { DigestVerifier } from '../registry/digest.js'
import type { BlobCache } from '../cache/store.js'
import type { Fill } from '../cache/fill.js'
import { ClientTimeoutError, UpstreamTimeoutError, UpstreamUnavailableError, closeUnread, writeRegistryError, type RegistryErrorShape } from '../errors.js'

/** A blob download the cache may keep, and the repository it is for. */
export interface Cacheable {
  cache: BlobCache
  repository: string
  digest: string
  /** Set when other misses for the digest wait for this download: told its fill (or null), once. */
  lead?: (fill: Fill | null) => void
}

export interface ExchangeOptions {
  request: FastifyRequest
  res: ServerResponse
  pool: UpstreamPool
  policy: RetryPolicy
  budget: SendBudget
  /** What goes upstream: [name, value, …], and the origin the client sees (for Location and Link). */
  headers: string[]
  publicOrigin: string
  body: Readable | null
  /** Set for a GET or HEAD of a blob when the cache is on. */
  cacheable: Cacheable | null
  /** Set for a GET of a body named by a digest berth can check (a blob, a manifest by digest). */
  digest: string | null
}

export class Exchange {
  readonly request: FastifyRequest
  readonly res: ServerResponse
  readonly #o: ExchangeOptions
  readonly #tried = new Set<Upstream>()
  readonly #reasons: string[] = []
  readonly #startedAt = Date.now()
  readonly #valve = new Valve()
  readonly #client: ClientWriter
  #attempt: Attempt | null = null
  #done = false
  /** Hashes a digest-addressed body; its byte count is where a resume continues. */
  #verifier: DigestVerifier | null = null
  /** The chunk held back until the next one (or, at the end, the verdict) arrives. */
  #pending: Buffer | null = null
  #fill: Fill | null = null
  /** Bytes received from upstreams (for the idle sweeper). */
  received = 0

  constructor (o: ExchangeOptions) {
    this.#o = o
    this.request = o.request
    this.res = o.res
    this.#client = new ClientWriter(o.res, o.request, this.#valve, o.budget)
  }

  get done (): boolean { return this.#done }
  get hasBody (): boolean { return this.#o.body !== null }

  start (): void {
    const upstream = this.#o.pool.pick(this.#tried)
    if (upstream === null) { this.#giveUp(null); return }
    this.#dispatch(upstream, -1)
  }

  /** Continues a download the client already has the first `verifier.bytes` bytes of (a dropped fill). */
  resume (verifier: DigestVerifier): void {
    this.#verifier = verifier
    const upstream = this.#o.pool.pick(this.#tried)
    if (upstream === null) { this.#cut(new Error('no server to resume from')); return }
    this.#dispatch(upstream, verifier.bytes)
  }

  #dispatch (upstream: Upstream, from: number): void {
    this.#tried.add(upstream)
    const r = this.request
    r.upstreamAddress = r.upstreamAddress === '' ? upstream.address : `${r.upstreamAddress}, ${upstream.address}`
    const attempt = new Attempt(this, upstream, from)
    this.#attempt = attempt
    upstream.dispatch({
      path: r.raw.url as string,
      method: r.raw.method as Dispatcher.HttpMethod,
      headers: from < 0 ? this.#o.headers : [...this.#o.headers, 'range', `bytes=${from}-`],
      body: from < 0 ? this.#o.body : null
    }, attempt)
  }

  isCurrent (attempt: Attempt): boolean { return attempt === this.#attempt && !this.#done }

  requestStarted (attempt: Attempt, controller: Dispatcher.DispatchController): void {
    this.#valve.attach(controller)
    // The client may have gone while the request waited for a connection.
    if (this.res.destroyed) controller.abort(new Error('client closed the connection'))
  }

  /** The upstream answered: pass it on, go to the next server, or refuse it. Returns an error to abort with. */
  responseStarted (attempt: Attempt, status: number, headers: Record<string, string | string[] | undefined>): Error | null {
    if (attempt.from >= 0) {
      // A resume must continue exactly where the client is: 206 for the missing bytes of the same total.
      const total = this.#verifier?.length ?? -1
      if (status !== 206 || headers['content-range'] !== `bytes ${attempt.from}-${total - 1}/${total}`) {
        return new InvalidResponse(`resume answered ${status} ${String(headers['content-range'])}`)
      }
      return null
    }
    if (this.#o.policy.retryOn.has(`http_${status}`) && this.#mayTryAgain(`http_${status}`, attempt)) return new RetryStatus(status)
    try {
      this.res.writeHead(status, this.#responseHeaders(headers))
    } catch (err) {
      // A header value Node refuses to send (it validates what undici's parser let through).
      this.res.removeHeader('content-length')
      return new InvalidResponse((err as Error).message)
    }
    const length = Number(headers['content-length'])
    const known = Number.isSafeInteger(length) && length >= 0 ? length : null
    if (status === 200 && this.#o.digest !== null) this.#verifier = new DigestVerifier(this.#o.digest, known)
    this.#cacheOutcome(status, known)
    return null
  }

  /** The upstream's headers: hop-by-hop ones dropped, upstream URLs rewritten. */
  #responseHeaders (headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
    return clientResponseHeaders(headers, this.#o.pool.origins, this.#o.publicOrigin)
  }

  /** What the answer tells the cache: the repository holds the blob (200) or not (404); a fill starts. */
  #cacheOutcome (status: number, length: number | null): void {
    const c = this.#o.cacheable
    if (c === null) return
    if (status === 404) c.cache.unconfirm(c.repository, c.digest)
    if (status === 200 && length !== null) c.cache.confirm(c.repository, c.digest) // the upstream just served it here
    const fill = status === 200 && length !== null && this.#verifier !== null && this.request.raw.method === 'GET'
      ? c.cache.startFill(c.digest, length)
      : null
    c.lead?.(fill)
    if (fill === null) return
    this.#fill = fill
    // The file fell behind: the upstream waits for it as it waits for a slow client.
    fill.on('drain', () => { this.#valve.release('fill') })
    // A fill that cannot write lets go of the download at once.
    fill.on('done', () => { if (this.#fill === fill) { this.#fill = null; this.#valve.release('fill') } })
  }

  data (chunk: Buffer): void {
    this.received += chunk.length
    if (this.#fill !== null && !this.#fill.write(chunk) && this.#fill.needDrain) this.#valve.hold('fill')
    if (this.#verifier === null) { this.#client.write(chunk); return }
    // A digest-addressed body: the client gets each chunk once the next arrived, and the last one only
    // once the whole matched, so that it can never take a wrong body for a whole one.
    this.#verifier.update(chunk)
    if (this.#pending !== null) this.#client.write(this.#pending)
    this.#pending = chunk
  }

  ended (attempt: Attempt): void {
    if (!this.isCurrent(attempt)) return
    this.#done = true
    const v = this.#verifier
    if (v !== null && !v.matches()) {
      this.#failure(attempt)
      this.request.log.error({ upstream: attempt.upstream.address, expected: v.digest, bytes: v.bytes, length: v.length },
        'the upstream sent a body that does not match its digest: connection closed')
      this.#fill?.drop()
      this.res.destroy()
      return
    }
    this.#client.end(this.#pending)
    this.#pending = null
    if (attempt.from >= 0) this.request.log.warn({ digest: v?.digest, servers: this.request.upstreamAddress }, 'download resumed from another server and verified')
    void this.#fill?.commit()
  }

  /** A failure that counts against the server (nginx max_fails); says so when it takes it out. */
  #failure (attempt: Attempt): void {
    const out = this.#o.pool.passiveFailure(attempt.upstream)
    if (out !== null) this.request.log.warn({ upstream: attempt.upstream.address }, `upstream ${out}`)
  }

  failed (attempt: Attempt, err: Error & { code?: string }): void {
    if (!this.isCurrent(attempt)) return
    const res = this.res
    if (res.destroyed || res.writableEnded) {
      // The client left first (its close aborted this attempt): nothing to answer.
      this.#end()
      this.request.log.debug({ err, upstream: attempt.upstream.address }, 'upstream request aborted')
      return
    }
    if (err instanceof ClientTimeoutError) {
      this.request.log.info({ upstream: attempt.upstream.address }, 'client stalled: request ended')
      if (res.headersSent) { this.#cut(null); return }
      this.#answer(err as RegistryErrorShape)
      return
    }
    if ((err as RegistryErrorShape).registryCode === 'SIZE_INVALID') { this.#answer(err as RegistryErrorShape); return }
    const cause = causeOf(err)
    if (isServerFailure(cause)) this.#failure(attempt)
    this.#reasons.push(`${attempt.upstream.address}: ${cause === 'error' ? `${err.code ?? ''} ${err.message}`.trim() : cause}`)
    if (!res.headersSent) {
      const next = this.#mayTryAgain(cause, attempt) ? this.#o.pool.pick(this.#tried) : null
      if (next !== null) { this.#dispatch(next, -1); return }
      this.#giveUp(cause)
      return
    }
    // Mid-body. An immutable, digest-addressed download of known length continues from another server.
    const v = this.#verifier
    if (v !== null && v.length !== null && v.length > v.bytes) {
      const next = this.#o.pool.pick(this.#tried)
      if (next !== null) {
        this.request.log.warn({ upstream: attempt.upstream.address, next: next.address, at: v.bytes, total: v.length, err: err.message }, 'upstream died mid-download: resuming with a Range request')
        this.#dispatch(next, v.bytes)
        return
      }
    }
    this.request.log.error({ err, tried: this.#reasons }, 'upstream response failed mid-body')
    this.#cut(err)
  }

  #mayTryAgain (cause: Cause, attempt: Attempt): boolean {
    return tryAgain(this.#o.policy, cause, {
      method: this.request.raw.method ?? '',
      hasBody: this.#o.body !== null,
      sent: attempt.sent,
      tried: this.#tried.size,
      elapsed: Date.now() - this.#startedAt,
      anotherServer: this.#o.pool.hasCandidate(this.#tried)
    })
  }

  /** Ends the current attempt: the client stalled (408 or a cut), or nothing moved (504, next, resume). */
  expire (err: Error): void {
    const attempt = this.#attempt
    if (attempt === null || this.#done) return
    if (attempt.controller !== null) attempt.controller.abort(err)
    else this.failed(attempt, err)
  }

  /** The client's connection closed before the response was complete. */
  clientClosed (): void {
    if (this.#done) return
    this.#attempt?.controller?.abort(new Error('client closed the connection'))
    this.#end()
  }

  /** Whether berth waits on the client: for more of the body, or for it to read what was sent. */
  waitingOnClient (): boolean {
    return (this.#o.body !== null && !this.request.raw.complete) || this.res.writableNeedDrain
  }

  /** No server could take the request: 502, or 504 when the last failure was a timeout. */
  #giveUp (cause: Cause | null): void {
    this.request.log.error({ tried: this.#reasons, cause: cause ?? 'no server available' }, 'no upstream could take the request')
    this.#answer(cause === 'timeout' ? new UpstreamTimeoutError() : new UpstreamUnavailableError())
  }

  /** A registry error instead of the upstream's answer (nothing was sent yet). */
  #answer (error: RegistryErrorShape): void {
    this.#end()
    const req = this.request.raw
    const unread = this.#o.body !== null && !req.complete
    // Over the limit, or a stalled client: close rather than read on; otherwise a lingering close.
    const close = unread && (error.registryCode === 'SIZE_INVALID' || error instanceof ClientTimeoutError)
    if (unread && !close) closeUnread(req)
    this.request.bodyBytesSent = writeRegistryError(this.res, error, close)
  }

  /** Ends the client's connection abruptly: never a clean, short or wrong response. */
  #cut (err: Error | null): void {
    this.#end()
    this.res.destroy(err ?? undefined)
  }

  #end (): void {
    this.#done = true
    this.#o.cacheable?.lead?.(null)
    this.#fill?.drop()
  }
}
