// Prometheus metrics on the admin listener (GET /metrics), with prom-client and a registry of berth's
// own: requests by method, status class and action, durations, bytes, requests in flight, the upstream
// pool, auth outcomes, throttled clients, load shedding and reloads. Pool and auth state are read at
// scrape time through their read-only views; the request path only counts.
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { FastifyRequest } from 'fastify'
import { whenResponseDone } from '../src/response-done.js'

/** pull, push or other, as the registry action and method say. */
export function actionLabel (request: FastifyRequest): 'pull' | 'push' | 'other' {
  const kind = request.registryAction?.kind
  if (kind === undefined || kind === 'base' || kind === 'catalog' || kind === 'other') return 'other'
  switch (request.raw.method) {
    case 'GET': case 'HEAD': return 'pull'
    case 'POST': case 'PUT': case 'PATCH': return 'push'
    default: return 'other'
  }
}

export default fp(async function metrics (fastify) {
  const admin = fastify.adminServer
  if (admin === null) return
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'berth_' })
  const requests = new Counter({ name: 'berth_requests_total', help: 'Requests answered, by method, status class and action.', labelNames: ['method', 'status', 'action'], registers: [registry] })
  const duration = new Histogram({
    name: 'berth_request_duration_seconds',
    help: 'Time from the request to the end of its response, by action.',
    labelNames: ['action'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry]
  })
  const bytesIn = new Counter({ name: 'berth_received_bytes_total', help: 'Request body bytes read from clients.', registers: [registry] })
  const bytesOut = new Counter({ name: 'berth_sent_bytes_total', help: 'Response body bytes sent to clients.', registers: [registry] })
  const inFlight = new Gauge({ name: 'berth_requests_in_flight', help: 'Requests being answered now.', registers: [registry] })

  const pool = () => fastify.upstreams.snapshot()
  new Gauge({ name: 'berth_upstream_up', help: 'Upstream state from the health probes (1 up, 0 down).', labelNames: ['upstream'], registers: [registry], collect () { this.reset(); for (const s of pool()) this.set({ upstream: s.url }, s.state === 'up' ? 1 : 0) } })
  new Gauge({ name: 'berth_upstream_available', help: 'Whether the upstream takes requests now (probes and passive failures).', labelNames: ['upstream'], registers: [registry], collect () { this.reset(); for (const s of pool()) this.set({ upstream: s.url }, s.available ? 1 : 0) } })
  new Gauge({ name: 'berth_upstream_active_requests', help: 'Requests in flight per upstream.', labelNames: ['upstream'], registers: [registry], collect () { this.reset(); for (const s of pool()) this.set({ upstream: s.url }, s.active) } })
  new Counter({ name: 'berth_upstream_requests_total', help: 'Requests sent per upstream (attempts, retries and resumes included).', labelNames: ['upstream'], registers: [registry], collect () { this.reset(); for (const s of pool()) this.inc({ upstream: s.url }, s.requests) } })
  new Counter({ name: 'berth_upstream_failures_total', help: 'Connection errors, timeouts and invalid responses per upstream.', labelNames: ['upstream'], registers: [registry], collect () { this.reset(); for (const s of pool()) this.inc({ upstream: s.url }, s.failures) } })
  new Gauge({ name: 'berth_upstream_probe_seconds', help: 'Duration of the last health probe per upstream.', labelNames: ['upstream'], registers: [registry], collect () { this.reset(); for (const s of pool()) if (s.lastProbe !== null) this.set({ upstream: s.url }, s.lastProbe.ms / 1000) } })
  new Counter({ name: 'berth_reloads_total', help: 'Configuration reloads by outcome.', labelNames: ['outcome'], registers: [registry], collect () { this.reset(); this.inc({ outcome: 'ok' }, fastify.reloads.ok); this.inc({ outcome: 'failed' }, fastify.reloads.failed) } })
  new Counter({ name: 'berth_shed_requests_total', help: 'Requests refused by load shedding.', registers: [registry], collect () { this.reset(); this.inc(fastify.pressureStats.shed) } })
  if (fastify.berthConfig.auth) {
    new Counter({ name: 'berth_auth_total', help: 'Credential checks by result.', labelNames: ['result'], registers: [registry], collect () { this.reset(); const s = fastify.authState.stats; this.inc({ result: 'success' }, s.successes); this.inc({ result: 'failure' }, s.failures); this.inc({ result: 'throttled' }, s.throttled) } })
    new Gauge({ name: 'berth_auth_throttled_clients', help: 'Client addresses blocked by brute-force throttling now.', registers: [registry], collect () { this.set(fastify.authState.throttle.blocked()) } })
  }
  const cache = fastify.blobCache
  if (cache !== null) {
    new Counter({ name: 'berth_cache_requests_total', help: 'Blob requests the cache could answer, by result (hit: a copy on disk; follow: read from a fill another download grows; miss: fetched).', labelNames: ['result'], registers: [registry], collect () { this.reset(); this.inc({ result: 'hit' }, cache.stats.hits); this.inc({ result: 'follow' }, cache.stats.followers); this.inc({ result: 'miss' }, cache.stats.misses) } })
    new Counter({ name: 'berth_cache_fills_total', help: 'Blob copies kept, by outcome (rejected: wrong digest or cut short).', labelNames: ['outcome'], registers: [registry], collect () { this.reset(); this.inc({ outcome: 'kept' }, cache.stats.fills); this.inc({ outcome: 'rejected' }, cache.stats.rejected) } })
    new Counter({ name: 'berth_cache_skipped_total', help: 'Downloads not cached because their blob did not fit next to the fills in flight.', registers: [registry], collect () { this.reset(); this.inc(cache.stats.skipped) } })
    new Counter({ name: 'berth_cache_write_errors_total', help: 'Fills dropped because the cache directory could not be written.', registers: [registry], collect () { this.reset(); this.inc(cache.stats.writeErrors) } })
    new Gauge({ name: 'berth_cache_reserved_bytes', help: 'Bytes reserved by fills in flight.', registers: [registry], collect () { this.set(cache.reserved) } })
    new Counter({ name: 'berth_cache_evictions_total', help: 'Blob copies removed to stay within maxSize.', registers: [registry], collect () { this.reset(); this.inc(cache.stats.evictions) } })
    new Gauge({ name: 'berth_cache_bytes', help: 'Bytes of cached blobs.', registers: [registry], collect () { this.set(cache.size) } })
    new Gauge({ name: 'berth_cache_blobs', help: 'Cached blobs.', registers: [registry], collect () { this.set(cache.count) } })
  }

  fastify.addHook('onRequest', (request, reply, done) => {
    const start = performance.now()
    inFlight.inc()
    whenResponseDone(reply.raw, () => {
      inFlight.dec()
      const action = actionLabel(request)
      requests.inc({ method: request.raw.method ?? 'OTHER', status: `${Math.floor(reply.raw.statusCode / 100)}xx`, action })
      duration.observe({ action }, (performance.now() - start) / 1000)
      const req = request.raw
      const length = Number(req.headers['content-length'] ?? 0)
      bytesIn.inc(req.complete && length > 0 ? length : request.bodyBytesReceived)
      bytesOut.inc(request.bodyBytesSent)
    })
    done()
  })

  admin.get('/metrics', async (_request, reply) => {
    reply.type(registry.contentType)
    return await registry.metrics()
  })
}, { name: 'berth-metrics', fastify: '5.x', dependencies: ['berth-admin', 'berth-upstream-pool', 'berth-blob-cache'] })
