// The upstream registries: kept-alive connections per server (verified TLS), the
// choice of server per request (smooth weighted round robin or least connections, backups), and each
// server's health: active probe state (plugins/health-probe.ts) and passive failures (nginx max_fails /
// fail_timeout). Others read it through snapshot(); only the proxy and the prober change it.
//
// @fastify/reply-from is not used: it sets rejectUnauthorized: false, derives the TLS name from the
// client's Host, and hides the dispatcher berth needs for streaming, retries and Range resumes.
import fp from 'fastify-plugin'
import { Pool, buildConnector, type Dispatcher } from 'undici'
import { readFileSync } from 'node:fs'
import { isIpAddress } from '../src/net.js'
import type { BerthConfig } from '../src/config/schema.js'

export interface ProbeResult { ok: boolean, at: number, ms: number, error?: string }

export interface Upstream {
  readonly url: string
  /** `host:port`, as the access log shows it. */
  readonly address: string
  readonly hostname: string
  readonly port: number
  readonly https: boolean
  /** The name the upstream certificate is checked against (its own URL's host, never the client's Host). */
  readonly servername: string
  weight: number
  backup: boolean
  maxFails: number
  failTimeout: number
  readonly dispatcher: UpstreamDispatcher
  /** Active probe state: `down` servers get no traffic. */
  state: 'up' | 'down'
  successes: number
  failuresInARow: number
  lastProbe: ProbeResult | null
  /** Passive failures (connection errors, timeouts, invalid responses) inside the current window. */
  passiveFails: number
  passiveWindowStart: number
  /** Out of rotation until then, after maxFails passive failures. */
  downUntil: number
  active: number
  requests: number
  failures: number
  /** Smooth weighted round robin state. */
  current: number
}

export interface UpstreamSnapshot {
  url: string
  state: 'up' | 'down'
  available: boolean
  weight: number
  backup: boolean
  successes: number
  failures: number
  lastProbe: { ok: boolean, at: string, ms: number, error?: string } | null
  active: number
  requests: number
  requestFailures: number
}

/**
 * The connections to one server: an undici Pool, kept alive, TLS verified with the name pinned to the
 * upstream URL. undici closes its connection after every HEAD unless told otherwise (undici#258, for
 * servers that send a body anyway), so each HEAD would cost a new TCP and TLS handshake with the registry,
 * and docker and skopeo send a HEAD for every manifest and layer they check: measured, HEAD manifest
 * through berth ran at a third of nginx's rate. A registry (Go's net/http) never sends a body with a HEAD
 * answer, so HEADs go with `reset: false` and keep their connection. (A node:https Agent for HEADs, tried
 * first, kept connections too but cost ~100 us more CPU per HEAD than undici.)
 */
export class UpstreamDispatcher {
  readonly pool: Pool

  constructor (url: URL, config: BerthConfig) {
    const { tls, timeouts } = config.upstream
    const hostname = url.hostname.replace(/^\[|\]$/g, '')
    // undici takes the TLS server name from each request's Host header; berth keeps the client's Host, so
    // pin the name to the upstream URL (none for an IP: Node then checks its IP SANs).
    const servername = isIpAddress(hostname) ? undefined : hostname
    const ca = tls.ca ? readFileSync(tls.ca) : undefined
    const base = buildConnector({ ca, rejectUnauthorized: tls.verify, timeout: timeouts.connect })
    this.pool = new Pool(url.origin, {
      connect: (opts, cb) => base({ ...opts, servername }, cb),
      headersTimeout: timeouts.idle,
      bodyTimeout: timeouts.idle,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000
    })
  }

  dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.pool.dispatch(opts.method === 'HEAD' ? { ...opts, reset: false } : opts, handler)
  }

  /** Waits for requests in flight, then closes every connection. */
  async close (): Promise<void> {
    await this.pool.close()
  }
}

/** What a server's connections depend on: when it changes, a reload makes new dispatchers. */
const dispatcherKey = (config: BerthConfig) => JSON.stringify([config.upstream.tls, config.upstream.timeouts])

export class UpstreamPool {
  readonly servers: Upstream[]
  readonly balance: 'round_robin' | 'least_conn'
  readonly dispatcherKey: string
  /** Every server's origin (`https://host:port`), for the Location and Link headers that name one. */
  readonly origins: ReadonlySet<string>

  /** With `previous` (a reload): servers that stay keep their health state, counters and, when the TLS and
   * timeout settings are unchanged, their kept-alive connections. */
  constructor (config: BerthConfig, previous: UpstreamPool | null = null) {
    const initial = config.upstream.healthCheck?.initialState ?? 'up'
    this.balance = config.upstream.balance
    this.dispatcherKey = dispatcherKey(config)
    const sameConnections = previous !== null && previous.dispatcherKey === this.dispatcherKey
    this.servers = config.upstream.servers.map((s) => {
      const url = new URL(s.url)
      const before = previous?.servers.find((p) => p.url === url.origin)
      if (before !== undefined && sameConnections) {
        return Object.assign(before, { weight: s.weight, backup: s.backup, maxFails: s.maxFails, failTimeout: s.failTimeout })
      }
      const fresh: Upstream = {
        url: url.origin,
        address: url.host,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
        https: url.protocol === 'https:',
        servername: url.hostname,
        weight: s.weight,
        backup: s.backup,
        maxFails: s.maxFails,
        failTimeout: s.failTimeout,
        dispatcher: new UpstreamDispatcher(url, config),
        state: initial,
        successes: 0,
        failuresInARow: 0,
        lastProbe: null,
        passiveFails: 0,
        passiveWindowStart: 0,
        downUntil: 0,
        active: 0,
        requests: 0,
        failures: 0,
        current: 0
      }
      if (before !== undefined) {
        const { state, successes, failuresInARow, lastProbe, passiveFails, passiveWindowStart, downUntil, requests, failures } = before
        Object.assign(fresh, { state, successes, failuresInARow, lastProbe, passiveFails, passiveWindowStart, downUntil, requests, failures })
      }
      return fresh
    })
    this.origins = new Set(this.servers.map((s) => s.url))
  }

  static available (s: Upstream, now: number): boolean {
    return s.state === 'up' && s.downUntil <= now
  }

  /**
   * The next server for a request, skipping those already `tried` for it: primaries while any is
   * available, else backups; null when none can take it.
   */
  pick (tried: ReadonlySet<Upstream> | null = null, now = Date.now()): Upstream | null {
    for (const backup of [false, true]) {
      let candidates = this.servers.filter((s) => s.backup === backup && UpstreamPool.available(s, now) && tried?.has(s) !== true)
      if (candidates.length === 0) continue
      if (this.balance === 'least_conn') {
        const least = Math.min(...candidates.map((s) => s.active / s.weight))
        candidates = candidates.filter((s) => s.active / s.weight === least)
      }
      // nginx's smooth weighted round robin over the candidates: 3:1 goes a, a, b, a, never a, a, a, b.
      let total = 0
      let best = candidates[0]
      for (const s of candidates) {
        s.current += s.weight
        total += s.weight
        if (s.current > best.current) best = s
      }
      best.current -= total
      return best
    }
    return null
  }

  /** Whether pick(tried) would find a server, without moving the round robin. */
  hasCandidate (tried: ReadonlySet<Upstream>, now = Date.now()): boolean {
    return this.servers.some((s) => UpstreamPool.available(s, now) && !tried.has(s))
  }

  /** A connection error, timeout or invalid response: nginx's max_fails within fail_timeout. */
  passiveFailure (s: Upstream, now = Date.now()): void {
    s.failures++
    if (s.maxFails === 0) return
    if (now - s.passiveWindowStart >= s.failTimeout) {
      s.passiveWindowStart = now
      s.passiveFails = 0
    }
    if (++s.passiveFails >= s.maxFails) {
      s.downUntil = now + s.failTimeout
      s.passiveFails = 0
      s.passiveWindowStart = now
    }
  }

  /** Whether any server can take a request now (readiness). */
  anyAvailable (now = Date.now()): boolean {
    return this.servers.some((s) => UpstreamPool.available(s, now))
  }

  snapshot (now = Date.now()): UpstreamSnapshot[] {
    return this.servers.map((s) => ({
      url: s.url,
      state: s.state,
      available: UpstreamPool.available(s, now),
      weight: s.weight,
      backup: s.backup,
      successes: s.successes,
      failures: s.failuresInARow,
      lastProbe: s.lastProbe === null ? null : { ...s.lastProbe, at: new Date(s.lastProbe.at).toISOString() },
      active: s.active,
      requests: s.requests,
      requestFailures: s.failures
    }))
  }

  async close (): Promise<void> {
    await Promise.all(this.servers.map((s) => s.dispatcher.close()))
  }
}

export default fp(async function upstreamPool (fastify) {
  let pool = new UpstreamPool(fastify.berthConfig)
  fastify.decorate('upstreams', { getter: () => pool })
  fastify.addHook('onClose', async () => { await pool.close() })
  fastify.onReload({
    name: 'upstreams',
    async prepare (next) {
      const fresh = new UpstreamPool(next, pool)
      const kept = new Set(fresh.servers.map((s) => s.dispatcher))
      return {
        commit () {
          const old = pool
          pool = fresh
          // Dispatchers no longer used close once their requests in flight are done.
          for (const s of old.servers) if (!kept.has(s.dispatcher)) void s.dispatcher.close()
        },
        abort () { for (const s of fresh.servers) if (!pool.servers.some((p) => p.dispatcher === s.dispatcher)) void s.dispatcher.close() }
      }
    }
  })
}, { name: 'berth-upstream-pool', fastify: '5.x' })
