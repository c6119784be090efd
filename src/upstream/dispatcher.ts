// The connections to one upstream server: an undici Pool, kept alive, TLS verified with the name pinned
// to the upstream URL.
//
// @fastify/reply-from is not used: it sets rejectUnauthorized: false, derives the TLS name from the
// client's Host, and hides the dispatcher berth needs for streaming, retries and Range resumes.
import { readFileSync } from 'node:fs'
import type { Dispatcher } from 'undici'
// The two parts of undici berth uses, by their files: undici's index also loads fetch, WebSocket, the
// caches and the mocks, about 7 MB of resident memory that an idle berth would carry for nothing.
import Pool from 'undici/lib/dispatcher/pool.js'
import buildConnector from 'undici/lib/core/connect.js'
import type { BerthConfig } from '../config/schema.js'
import { isIpAddress } from '../net.js'
import { writeQueues } from './write-queue.js'

/** TLS toward upstreams, read once per configuration: for the dispatchers and the health probes. */
export interface UpstreamTls { ca: Buffer | undefined, verify: boolean }

export function upstreamTls (config: BerthConfig): UpstreamTls {
  const { ca, verify } = config.upstream.tls
  return { ca: ca === undefined ? undefined : readFileSync(ca), verify }
}

/**
 * The TLS name an upstream's certificate is checked against: its own URL's host, never the client's Host
 * (which berth passes on). None for an IP address: Node then checks the certificate's IP SANs.
 */
export function tlsName (hostname: string): string | undefined {
  return isIpAddress(hostname) ? undefined : hostname.replace(/^\[|\]$/g, '')
}

/**
 * undici closes its connection after every HEAD unless told otherwise (for servers that send a body
 * anyway), so each HEAD would cost a new TCP and TLS handshake with the registry, and docker and skopeo
 * send a HEAD for every manifest and layer they check. A registry (Go's net/http) never sends a body with
 * a HEAD answer, so HEADs go with `reset: false` and keep their connection.
 */
export class UpstreamDispatcher {
  readonly #pool: Pool
  /** undici drops a kept-alive connection whenever a request names another server name: name one. */
  readonly #servername: string

  /** `name`: the name to ask for and verify instead of the URL's host (a peer reached at its pod address). */
  constructor (url: URL, config: BerthConfig, tls: UpstreamTls, name?: string) {
    const { timeouts } = config.upstream
    const servername = name ?? tlsName(url.hostname)
    this.#servername = name ?? url.hostname
    const base = buildConnector({ ca: tls.ca, rejectUnauthorized: tls.verify, timeout: timeouts.connect })
    this.#pool = new Pool(url.origin, {
      // The connector calls back (err) on failure, (null, socket) on success.
      connect: (opts, cb) => base({ ...opts, servername }, (...args) => {
        if (args[0] === null && args[1] !== undefined) writeQueues.add(args[1])
        cb(...args)
      }),
      headersTimeout: timeouts.idle,
      bodyTimeout: timeouts.idle,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000
    })
  }

  dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    // `servername` is not in undici's types, but its Request reads it.
    const options = { ...opts, servername: this.#servername, ...(opts.method === 'HEAD' ? { reset: false } : {}) } as Dispatcher.DispatchOptions
    return this.#pool.dispatch(options, handler)
  }

  /** Waits for requests in flight, then closes every connection. */
  async close (): Promise<void> {
    await this.#pool.close()
  }
}

/** What a server's connections depend on: when it changes, a reload makes new dispatchers. */
export const dispatcherKey = (config: BerthConfig): string => JSON.stringify([config.upstream.tls, config.upstream.timeouts])
