// berth's Prometheus registry and the per-request metrics (prom-client). Every other owner of state (the
// pool, the cache, auth, load shedding, reloads) registers its own collectors on the same registry.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
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

/** pull, push or other, as the registry action and method say. */
function actionLabel (request: FastifyRequest): 'pull' | 'push' | 'other' {
  const kind = request.registryAction?.kind
  if (kind === undefined || kind === 'base' || kind === 'catalog' || kind === 'other' || request.raw.method === 'OPTIONS') return 'other'
  const action = methodAction(request.raw.method)
  return action === 'delete' ? 'other' : action
}

export interface RequestMetrics {
  /** A request came in. */
  start (): void
  /** Its response is done. */
  done (request: FastifyRequest, status: number, seconds: number): void
}

export function requestMetrics (registry: Registry): RequestMetrics {
  const registers = [registry]
  const requests = new Counter({ name: 'berth_requests_total', help: 'Requests answered, by method, status class and action.', labelNames: ['method', 'status', 'action'], registers })
  const duration = new Histogram({
    name: 'berth_request_duration_seconds',
    help: 'Time from the request to the end of its response, by action.',
    labelNames: ['action'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers
  })
  const bytesIn = new Counter({ name: 'berth_received_bytes_total', help: 'Request body bytes read from clients.', registers })
  const bytesOut = new Counter({ name: 'berth_sent_bytes_total', help: 'Response body bytes sent to clients.', registers })
  const inFlight = new Gauge({ name: 'berth_requests_in_flight', help: 'Requests being answered now.', registers })
  inFlight.set(0)
  return {
    start () { inFlight.inc() },
    done (request, status, seconds) {
      inFlight.dec()
      const action = actionLabel(request)
      requests.inc({ method: request.raw.method ?? 'OTHER', status: `${Math.floor(status / 100)}xx`, action })
      duration.observe({ action }, seconds)
      const req = request.raw
      const length = Number(req.headers['content-length'] ?? 0)
      bytesIn.inc(req.complete && length > 0 ? length : request.bodyBytesReceived)
      bytesOut.inc(request.bodyBytesSent)
    }
  }
}
