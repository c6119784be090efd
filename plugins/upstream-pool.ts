// The upstream registries: one undici Pool per server (kept-alive connections, verified TLS), and the
// choice of server per request. @fastify/reply-from is not used: it sets rejectUnauthorized: false,
// derives the TLS name from the client's Host and hides the dispatcher berth needs for streaming.
import fp from 'fastify-plugin'
import { Pool, buildConnector } from 'undici'
import { readFileSync } from 'node:fs'
import { isIpAddress } from '../src/config/load.js'
import type { BerthConfig } from '../src/config/schema.js'

export interface Upstream {
  readonly url: string
  /** `host:port`, as the access log shows it. */
  readonly address: string
  /** The name the upstream certificate is checked against (its own URL's host, never the client's Host). */
  readonly servername: string
  readonly weight: number
  readonly dispatcher: Pool
  /** Smooth weighted round robin state. */
  current: number
}

function createDispatcher (url: URL, config: BerthConfig): Pool {
  const { tls, timeouts } = config.upstream
  const hostname = url.hostname.replace(/^\[|\]$/g, '')
  const base = buildConnector({
    ca: tls.ca ? readFileSync(tls.ca) : undefined,
    rejectUnauthorized: tls.verify,
    timeout: timeouts.connect
  })
  // undici takes the TLS server name from each request's Host header; berth keeps the client's Host, so
  // pin the name to the upstream URL (none for an IP: Node then checks the certificate's IP SANs).
  const servername = isIpAddress(hostname) ? undefined : hostname
  const connect: buildConnector.connector = (opts, cb) => base({ ...opts, servername }, cb)
  return new Pool(url.origin, {
    connect,
    headersTimeout: timeouts.idle,
    bodyTimeout: timeouts.idle,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000
  })
}

export class UpstreamPool {
  readonly servers: Upstream[]
  #total: number

  constructor (config: BerthConfig) {
    this.servers = config.upstream.servers.map((s) => {
      const url = new URL(s.url)
      return {
        url: url.origin,
        address: url.host,
        servername: url.hostname,
        weight: s.weight,
        dispatcher: createDispatcher(url, config),
        current: 0
      }
    })
    this.#total = this.servers.reduce((n, s) => n + s.weight, 0)
  }

  /** nginx's smooth weighted round robin: a 3:1 pair goes a, a, b, a, never a, a, a, b. */
  pick (): Upstream {
    let best = this.servers[0]
    for (const s of this.servers) {
      s.current += s.weight
      if (s.current > best.current) best = s
    }
    best.current -= this.#total
    return best
  }

  async close (): Promise<void> {
    await Promise.all(this.servers.map((s) => s.dispatcher.close()))
  }
}

export default fp(async function upstreamPool (fastify) {
  const pool = new UpstreamPool(fastify.berthConfig)
  fastify.decorate('upstreams', pool)
  fastify.addHook('onClose', async () => { await pool.close() })
}, { name: 'berth-upstream-pool', fastify: '5.x' })
