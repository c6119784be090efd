// berth's Prometheus registry and the per-request metrics (prom-client). Every other owner of state (the
// pool, the cache, auth, load shedding, reloads) registers its own collectors on the same registry.
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client'
import type { FastifyRequest } from 'fastify'
import { methodAction } from './registry/path.js'
import { VERSION } from './version.js'

export function createRegistry (): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'berth_' })
  // As Prometheus' own *_build_info: constant 1, the facts in labels.
  new Gauge({ name: 'berth_build_info', help: 'berth\'s version and the Node.js it runs on (always 1).', labelNames: ['version', 'node'], registers: [registry] })
    .set({ version: VERSION, node: process.versions.node }, 1)
  return registry
}

const ACTIONS = ['pull', 'push', 'other'] as const
const PULL = 0
const PUSH = 1
const OTHER = 2
/** Status classes 1xx to 5xx, at 1 to 5 (0 unused). */
const CLASSES = 6

/** pull, push or other (an index into ACTIONS), as the registry action and method say. */
function actionOf (request: FastifyRequest): number {
  const kind = request.registryAction?.kind
  if (kind === undefined || kind === 'base' || kind === 'catalog' || kind === 'other' || request.raw.method === 'OPTIONS') return OTHER
  const action = methodAction(request.raw.method)
  return action === 'pull' ? PULL : action === 'push' ? PUSH : OTHER
}

export interface RequestMetrics {
  /** A request came in. */
  start (): void
  /** Its response is done. */
  done (request: FastifyRequest, status: number, seconds: number): void
}

/**
 * The request durations by action, as a Prometheus histogram. Kept as plain counts and exported in the
 * shape of prom-client's own histograms (its registry and its cluster aggregation read them alike).
 */
class Durations {
  readonly name = 'berth_request_duration_seconds'
  readonly help = 'Time from the request to the end of its response, by action.'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #bounds: readonly number[]
  /** Per action: the observations at or under each bound (not cumulative), then those above the last. */
  readonly #buckets: Float64Array[]
  readonly #sum = new Float64Array(ACTIONS.length)
  readonly #count = new Float64Array(ACTIONS.length)

  constructor (bounds: readonly number[]) {
    this.#bounds = bounds
    this.#buckets = ACTIONS.map(() => new Float64Array(bounds.length + 1))
  }

  observe (action: number, seconds: number): void {
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && seconds > bounds[i]) i++
    this.#buckets[action][i]++
    this.#sum[action] += seconds
    this.#count[action]++
  }

  /** prom-client's `get()`: the actions seen so far, each with its cumulative buckets, sum and count. */
  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, value: number, metricName: string }> }> {
    const values = []
    for (let a = 0; a < ACTIONS.length; a++) {
      if (this.#count[a] === 0) continue
      const action = ACTIONS[a]
      let below = 0
      for (let i = 0; i < this.#bounds.length; i++) {
        below += this.#buckets[a][i]
        values.push({ labels: { le: this.#bounds[i], action }, value: below, metricName: `${this.name}_bucket` })
      }
      values.push({ labels: { le: '+Inf', action }, value: this.#count[a], metricName: `${this.name}_bucket` })
      values.push({ labels: { action }, value: this.#sum[a], metricName: `${this.name}_sum` })
      values.push({ labels: { action }, value: this.#count[a], metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    for (const b of this.#buckets) b.fill(0)
    this.#sum.fill(0)
    this.#count.fill(0)
  }
}

/**
 * The per-request metrics. A request adds to plain numbers; prom-client reads them when it collects (a
 * scrape). Its labelled `inc()` and `observe()` check and join their labels into a key on every call:
 * 1 KB of garbage per request and about 4 % of berth's CPU on the 401 path (docs/measurements.md).
 */
export function requestMetrics (registry: Registry): RequestMetrics {
  const registers = [registry]
  /** Per method: answers by action and status class, at action * CLASSES + class. */
  const answered = new Map<string, Float64Array>()
  const durations = new Durations([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300])
  let inFlight = 0
  let bytesIn = 0
  let bytesOut = 0
  new Counter({
    name: 'berth_requests_total',
    help: 'Requests answered, by method, status class and action.',
    labelNames: ['method', 'status', 'action'],
    registers,
    collect () {
      this.reset()
      for (const [method, counts] of answered) {
        for (let i = 0; i < counts.length; i++) {
          if (counts[i] > 0) this.inc({ method, status: `${i % CLASSES}xx`, action: ACTIONS[Math.floor(i / CLASSES)] }, counts[i])
        }
      }
    }
  })
  registry.registerMetric(durations as unknown as Metric)
  new Counter({ name: 'berth_received_bytes_total', help: 'Request body bytes read from clients.', registers, collect () { this.reset(); this.inc(bytesIn) } })
  new Counter({ name: 'berth_sent_bytes_total', help: 'Response body bytes sent to clients.', registers, collect () { this.reset(); this.inc(bytesOut) } })
  new Gauge({ name: 'berth_requests_in_flight', help: 'Requests being answered now.', registers, collect () { this.set(inFlight) } })
  return {
    start () { inFlight++ },
    done (request, status, seconds) {
      inFlight--
      const action = actionOf(request)
      // Node's parser takes only the methods it knows: a bounded set of labels.
      const method = request.raw.method ?? 'OTHER'
      let counts = answered.get(method)
      if (counts === undefined) answered.set(method, counts = new Float64Array(ACTIONS.length * CLASSES))
      counts[action * CLASSES + Math.min(5, Math.max(1, Math.floor(status / 100)))]++
      durations.observe(action, seconds)
      const req = request.raw
      const length = Number(req.headers['content-length'] ?? 0)
      bytesIn += req.complete && length > 0 ? length : request.bodyBytesReceived
      bytesOut += request.bodyBytesSent
    }
  }
}
