// One upstream server: its address, its connections, and its health, which changes only through its
// verbs (a probe result, a request failure; requests are counted as they are dispatched). Others read
// it through getters or snapshot().
import type { Dispatcher } from 'undici'
import type { UpstreamDispatcher } from './dispatcher.js'

export interface ProbeResult { ok: boolean, at: number, ms: number, error?: string }

export interface ServerSettings { weight: number, backup: boolean, maxFails: number, failTimeout: number }

export interface UpstreamSnapshot {
  url: string
  /** From the health probes. */
  state: 'up' | 'down'
  /** Whether it takes requests now (probes and passive failures). */
  available: boolean
  weight: number
  backup: boolean
  /** Probe results in a row, toward `rise` and `fall`. */
  successesInARow: number
  failuresInARow: number
  lastProbe: { ok: boolean, at: string, ms: number, error?: string } | null
  active: number
  requests: number
  /** Requests that failed on this server (connection errors, timeouts, invalid or wrong responses). */
  failures: number
}

/** The probe state machine: `fall` failures in a row mark a server down, `rise` successes mark it up. */
export function nextProbeState (s: { state: 'up' | 'down', successesInARow: number, failuresInARow: number }, ok: boolean, rise: number, fall: number): 'up' | 'down' | null {
  if (ok) {
    s.successesInARow++
    s.failuresInARow = 0
    if (s.state === 'down' && s.successesInARow >= rise) { s.state = 'up'; return 'up' }
  } else {
    s.failuresInARow++
    s.successesInARow = 0
    if (s.state === 'up' && s.failuresInARow >= fall) { s.state = 'down'; return 'down' }
  }
  return null
}

export class Upstream {
  readonly url: string
  /** `host:port`, as the access log shows it. */
  readonly address: string
  readonly hostname: string
  readonly port: number
  readonly https: boolean
  #settings: ServerSettings
  readonly #dispatcher: UpstreamDispatcher
  readonly #probe = { state: 'up' as 'up' | 'down', successesInARow: 0, failuresInARow: 0 }
  #lastProbe: ProbeResult | null = null
  /** nginx max_fails / fail_timeout: failures inside the current window, and out of rotation until. */
  #windowFails = 0
  #windowStart = 0
  #downUntil = 0
  #active = 0
  #requests = 0
  #failures = 0

  constructor (url: URL, settings: ServerSettings, dispatcher: UpstreamDispatcher, initialState: 'up' | 'down') {
    this.url = url.origin
    this.address = url.host
    this.hostname = url.hostname.replace(/^\[|\]$/g, '')
    this.port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
    this.https = url.protocol === 'https:'
    this.#settings = settings
    this.#dispatcher = dispatcher
    this.#probe.state = initialState
  }

  get weight (): number { return this.#settings.weight }
  get backup (): boolean { return this.#settings.backup }
  get state (): 'up' | 'down' { return this.#probe.state }
  get lastProbe (): ProbeResult | null { return this.#lastProbe }
  get active (): number { return this.#active }
  get requests (): number { return this.#requests }
  get failures (): number { return this.#failures }
  get dispatcher (): UpstreamDispatcher { return this.#dispatcher }

  /** New settings from a reload (the connections and the health stay). */
  configure (settings: ServerSettings): void { this.#settings = settings }

  /** Takes over the health and counters of the same server before a reload that changed its connections. */
  inherit (before: Upstream): void {
    Object.assign(this.#probe, before.#probe)
    this.#lastProbe = before.#lastProbe
    this.#windowFails = before.#windowFails
    this.#windowStart = before.#windowStart
    this.#downUntil = before.#downUntil
    this.#requests = before.#requests
    this.#failures = before.#failures
  }

  /** Whether it takes requests at `now`; `ignoreFailures` for a pool of one (nginx ignores max_fails there). */
  available (now: number, ignoreFailures = false): boolean {
    return this.#probe.state === 'up' && (ignoreFailures || this.#downUntil <= now)
  }

  /** Sends one request; requests in flight and in all are counted here. */
  dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.#requests++
    this.#active++
    this.#dispatcher.dispatch(opts, new Counted(this, handler))
  }

  /** @internal Counted's end of a request. */
  settled (): void { this.#active-- }

  /** A connection error, timeout or invalid response: nginx's max_fails within fail_timeout. */
  /** Counts a failure; true when it takes the server out of rotation for failTimeout. */
  recordFailure (now = Date.now()): boolean {
    this.#failures++
    const { maxFails, failTimeout } = this.#settings
    if (maxFails === 0) return false
    if (now - this.#windowStart >= failTimeout) {
      this.#windowStart = now
      this.#windowFails = 0
    }
    if (++this.#windowFails >= maxFails) {
      this.#downUntil = now + failTimeout
      this.#windowFails = 0
      this.#windowStart = now
      return true
    }
    return false
  }

  /** maxFails and failTimeout in force, for the error log. */
  get failSettings (): { maxFails: number, failTimeout: number } {
    return { maxFails: this.#settings.maxFails, failTimeout: this.#settings.failTimeout }
  }

  /** A health probe finished; returns the state it changed to, if it changed. */
  recordProbe (result: ProbeResult, rise: number, fall: number): 'up' | 'down' | null {
    this.#lastProbe = result
    return nextProbeState(this.#probe, result.ok, rise, fall)
  }

  snapshot (now: number, ignoreFailures = false): UpstreamSnapshot {
    const p = this.#lastProbe
    return {
      url: this.url,
      state: this.#probe.state,
      available: this.available(now, ignoreFailures),
      weight: this.weight,
      backup: this.backup,
      successesInARow: this.#probe.successesInARow,
      failuresInARow: this.#probe.failuresInARow,
      lastProbe: p === null ? null : { ...p, at: new Date(p.at).toISOString() },
      active: this.#active,
      requests: this.#requests,
      failures: this.#failures
    }
  }
}

/** Passes every event on, and tells its server when the request is over. */
class Counted implements Dispatcher.DispatchHandler {
  readonly #upstream: Upstream
  readonly #inner: Dispatcher.DispatchHandler
  #open = true

  constructor (upstream: Upstream, inner: Dispatcher.DispatchHandler) {
    this.#upstream = upstream
    this.#inner = inner
  }

  #close (): void {
    if (!this.#open) return
    this.#open = false
    this.#upstream.settled()
  }

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void { this.#inner.onRequestStart?.(controller, context) }
  onResponseStart (controller: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>, message: string): void {
    this.#inner.onResponseStart?.(controller, status, headers, message)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void { this.#inner.onResponseData?.(controller, chunk) }
  onResponseEnd (controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.#close()
    this.#inner.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Dispatcher.DispatchController, err: Error): void {
    this.#close()
    this.#inner.onResponseError?.(controller, err)
  }
}
