// One upstream attempt, as an undici dispatch handler: it tells its exchange what the upstream did, and
// nothing else (the exchange decides; an attempt that is no longer current is ignored).
import type { Dispatcher } from 'undici'
import type { Upstream } from '../upstream/pool.js'

/** What an attempt reports to (src/proxy/exchange.ts). */
export interface AttemptOwner {
  readonly res: { destroyed: boolean }
  isCurrent (attempt: Attempt): boolean
  requestStarted (attempt: Attempt, controller: Dispatcher.DispatchController): void
  responseStarted (attempt: Attempt, status: number, headers: Record<string, string | string[] | undefined>): Error | null
  data (chunk: Buffer): void
  ended (attempt: Attempt): void
  failed (attempt: Attempt, err: Error): void
}

export class Attempt implements Dispatcher.DispatchHandler {
  readonly exchange: AttemptOwner
  readonly upstream: Upstream
  /** -1, or the offset this attempt resumes from (a Range request). */
  readonly from: number
  controller: Dispatcher.DispatchController | null = null
  /** The request reached the server (headers written, body streaming). */
  sent = false

  constructor (exchange: AttemptOwner, upstream: Upstream, from: number) {
    this.exchange = exchange
    this.upstream = upstream
    this.from = from
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    this.sent = true
    if (this.exchange.isCurrent(this)) this.exchange.requestStarted(this, controller)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (!this.exchange.isCurrent(this) || this.exchange.res.destroyed) return
    const refused = this.exchange.responseStarted(this, statusCode, headers)
    if (refused !== null) controller.abort(refused)
  }

  onResponseData (_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.exchange.isCurrent(this)) this.exchange.data(chunk)
  }

  onResponseEnd (): void {
    this.exchange.ended(this)
  }

  onResponseError (_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.exchange.failed(this, err)
  }
}
