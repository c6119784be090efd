// nginx's proxy_read/send_timeout, send_timeout and client_body_timeout as one rule: a transfer ends when
// no byte has moved for a while. One sweep for every response in flight, not a timer each; undici's own
// headers/body timeouts (the same value) do not see a client that stopped sending or reading.
import { ClientTimeoutError, UpstreamTimeoutError } from '../errors.js'
import { formatDuration } from '../config/units.js'

/** A response in flight, as the sweeper sees it. */
export interface Watched {
  /** Bytes moved on the client connection, either way. */
  clientBytes (): number
  /** Bytes moved from upstreams; null when no upstream is involved (a copy from the cache). */
  upstreamBytes (): number | null
  /** Whether berth waits on the client: for more of the body, or for it to read what was sent. */
  waitingOnClient (): boolean
  /** Ends the response: the client stalled (ClientTimeoutError), or nothing moved (UpstreamTimeoutError). */
  expire (err: Error): void
}

interface Seen { client: number, clientAt: number, moved: number, movedAt: number }

export class IdleSweeper {
  /** ms without a byte on either connection (upstream.timeouts.idle), and without one from or to the client. */
  idle: number
  clientIdle: number
  readonly #watched = new Map<Watched, Seen>()
  readonly #timer: NodeJS.Timeout

  constructor (idle: number, clientIdle: number) {
    this.idle = idle
    this.clientIdle = clientIdle
    this.#timer = setInterval(() => { this.sweep() }, Math.max(10, Math.min(1000, Math.floor(Math.min(idle, clientIdle) / 4)))).unref()
  }

  get size (): number { return this.#watched.size }

  watch (w: Watched): void {
    const now = Date.now()
    this.#watched.set(w, { client: -1, clientAt: now, moved: -1, movedAt: now })
  }

  unwatch (w: Watched): void { this.#watched.delete(w) }

  sweep (now = Date.now()): void {
    for (const [w, seen] of this.#watched) {
      const client = w.clientBytes()
      const upstream = w.upstreamBytes()
      const moved = client + (upstream ?? 0)
      if (client !== seen.client) { seen.client = client; seen.clientAt = now }
      if (moved !== seen.moved) { seen.moved = moved; seen.movedAt = now }
      if (w.waitingOnClient() && now - seen.clientAt >= this.clientIdle) {
        seen.clientAt = now
        w.expire(new ClientTimeoutError(formatDuration(this.clientIdle)))
      } else if (upstream !== null && now - seen.movedAt >= this.idle) {
        seen.movedAt = now // a next attempt, if any, gets a whole idle period
        w.expire(new UpstreamTimeoutError())
      }
    }
  }

  close (): void { clearInterval(this.#timer) }
}
