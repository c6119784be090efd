// Backpressure from the client (and the cache file) to the live upstream connection, across attempts:
// one stable valve in front of whichever undici controller streams the body now (undici's RetryHandler
// keeps one controller for the same reason), and the send window that decides how much may wait in
// berth for a slow client.
import type { ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { evenShare } from '../upstream/write-queue.js'

/** Holds the live upstream while any reason holds it; a new attempt's controller inherits the holds. */
export class Valve {
  #controller: Dispatcher.DispatchController | null = null
  readonly #holds = new Set<string>()

  attach (controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#holds.size > 0) controller.pause()
  }

  hold (reason: string): void {
    if (this.#holds.has(reason)) return
    if (this.#holds.size === 0) this.#controller?.pause()
    this.#holds.add(reason)
  }

  release (reason: string): void {
    if (!this.#holds.delete(reason)) return
    if (this.#holds.size === 0) this.#controller?.resume()
  }
}

/**
 * How much of the responses in flight may wait in berth for slow clients: 4 MiB shared, between Node's
 * 16 KiB and 1 MiB each, so that one download gets a whole 1 MiB window (Node's 16 KiB alone paused the
 * upstream for nearly every TLS record) and a hundred hold no more than before.
 */
export class SendBudget {
  static readonly TOTAL = 4 << 20
  #responses = 0

  open (): void { this.#responses++ }
  close (): void { this.#responses-- }

  window (): number {
    return evenShare(SendBudget.TOTAL, this.#responses, 16 << 10, 1 << 20)
  }
}

/**
 * Writes a response body to the client: past the send window, the valve holds the upstream. It keeps the
 * access log's $body_bytes_sent (request.bodyBytesSent), and nothing else writes that for a proxied body.
 */
export class ClientWriter {
  readonly res: ServerResponse
  readonly #request: FastifyRequest
  readonly #valve: Valve
  readonly #budget: SendBudget

  constructor (res: ServerResponse, request: FastifyRequest, valve: Valve, budget: SendBudget) {
    this.res = res
    this.#request = request
    this.#valve = valve
    this.#budget = budget
    res.on('drain', () => { valve.release('client') })
  }

  write (chunk: Buffer): void {
    this.#request.bodyBytesSent += chunk.length
    if (!this.res.write(chunk) && this.res.writableLength >= this.#budget.window()) this.#valve.hold('client')
  }

  end (chunk: Buffer | null): void {
    if (chunk !== null) this.#request.bodyBytesSent += chunk.length
    this.res.end(chunk)
  }
}
