// The upstream registries and the choice of server per request: smooth weighted round robin (nginx) or
// least connections, backups, passive failures. A reload builds a new pool that keeps the servers that
// stay, with their health and, when their TLS and timeouts are unchanged, their connections.
import type { BerthConfig } from '../config/schema.js'
import { formatDuration } from '../config/units.js'
import { UpstreamDispatcher, dispatcherKey, upstreamTls, type UpstreamTls } from './dispatcher.js'
import { Upstream, type UpstreamSnapshot } from './upstream.js'

export { Upstream, type UpstreamSnapshot, type ProbeResult } from './upstream.js'

export class UpstreamPool {
  readonly servers: readonly Upstream[]
  readonly balance: 'round_robin' | 'least_conn'
  readonly dispatcherKey: string
  /** Every server's origin (`https://host:port`), for the Location and Link headers that name one. */
  readonly origins: ReadonlySet<string>
  /** The upstream CA and verification, read once for the connections and the health probes. */
  readonly tls: UpstreamTls
  /** Smooth weighted round robin state, per server. */
  readonly #current = new Map<Upstream, number>()

  /** With `previous` (a reload): servers that stay keep their health and counters, and their
   * kept-alive connections when the TLS and timeout settings are unchanged. */
  constructor (config: BerthConfig, previous: UpstreamPool | null = null) {
    const initial = config.upstream.healthCheck?.initialState ?? 'up'
    this.balance = config.upstream.balance
    this.dispatcherKey = dispatcherKey(config)
    const sameConnections = previous !== null && previous.dispatcherKey === this.dispatcherKey
    this.tls = upstreamTls(config)
    this.servers = config.upstream.servers.map((s) => {
      const url = new URL(s.url)
      const settings = { weight: s.weight, backup: s.backup, maxFails: s.maxFails, failTimeout: s.failTimeout }
      const before = previous?.servers.find((p) => p.url === url.origin)
      if (before !== undefined && sameConnections) {
        before.configure(settings)
        return before
      }
      // `servername`: not in the schema; cache placement names its peers' certificate (src/cluster/placement.ts).
      const fresh = new Upstream(url, settings, new UpstreamDispatcher(url, config, this.tls, (s as { servername?: string }).servername), initial)
      if (before !== undefined) fresh.inherit(before)
      return fresh
    })
    this.origins = new Set(this.servers.map((s) => s.url))
  }

  /** nginx ignores max_fails for a group of one server: one failure must not refuse the only registry. */
  get #single (): boolean { return this.servers.length === 1 }

  #candidates (tried: ReadonlySet<Upstream> | null, now: number): Upstream[] {
    for (const backup of [false, true]) {
      const found = this.servers.filter((s) => s.backup === backup && s.available(now, this.#single) && tried?.has(s) !== true)
      if (found.length > 0) return found
    }
    // Every server the probes call up is out for passive failures: try them anyway, as nginx does,
    // rather than refuse every request until a failTimeout ends.
    if (this.servers.some((s) => s.available(now))) return []
    return this.servers.filter((s) => s.state === 'up' && tried?.has(s) !== true)
  }

  /**
   * The next server for a request, skipping those already `tried` for it: primaries while any is
   * available, else backups, else (all failed) any the probes call up; null when none can take it.
   */
  pick (tried: ReadonlySet<Upstream> | null = null, now = Date.now()): Upstream | null {
    let candidates = this.#candidates(tried, now)
    if (candidates.length === 0) return null
    if (this.balance === 'least_conn') {
      const least = Math.min(...candidates.map((s) => s.active / s.weight))
      candidates = candidates.filter((s) => s.active / s.weight === least)
    }
    // nginx's smooth weighted round robin over the candidates: 3:1 goes a, a, b, a, never a, a, a, b.
    let total = 0
    let best = candidates[0]
    for (const s of candidates) {
      this.#current.set(s, (this.#current.get(s) ?? 0) + s.weight)
      total += s.weight
      if ((this.#current.get(s) as number) > (this.#current.get(best) as number)) best = s
    }
    this.#current.set(best, (this.#current.get(best) as number) - total)
    return best
  }

  /** Whether pick(tried) would find a server, without moving the round robin. */
  hasCandidate (tried: ReadonlySet<Upstream>, now = Date.now()): boolean {
    return this.#candidates(tried, now).length > 0
  }

  /**
   * A request failed on `s` (connection error, timeout, invalid or wrong response). Returns what the
   * error log should say when this failure took `s` out of rotation, else null.
   */
  passiveFailure (s: Upstream, now = Date.now()): string | null {
    // One server alone is never taken out (nginx ignores max_fails there): nothing to say.
    if (!s.recordFailure(now) || this.#single) return null
    const { maxFails, failTimeout } = s.failSettings
    return `${s.address}: ${maxFails} failure${maxFails === 1 ? '' : 's'} within failTimeout: out of rotation for ${formatDuration(failTimeout)}`
  }

  /** Whether any server can take a request now (readiness). */
  anyAvailable (now = Date.now()): boolean {
    return this.servers.some((s) => s.available(now, this.#single))
  }

  snapshot (now = Date.now()): UpstreamSnapshot[] {
    return this.servers.map((s) => s.snapshot(now, this.#single))
  }

  async close (): Promise<void> {
    await Promise.all(this.servers.map((s) => s.dispatcher.close()))
  }
}
