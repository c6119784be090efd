// berth's Prometheus registry as `fastify.metrics` (prom-client), registered first so that every owner
// of state (the pool, the cache, auth, load shedding) adds its own collectors; this plugin counts the
// requests, their durations and bytes, and the reloads. The admin listener serves it at /metrics.
import fp from 'fastify-plugin'
import { Counter } from 'prom-client'
import { whenResponseDone } from '../src/response-done.js'
import { createRegistry, requestMetrics } from '../src/metrics.js'

export default fp(async function metrics (fastify) {
  const registry = createRegistry()
  fastify.decorate('metrics', registry)
  new Counter({ name: 'berth_reloads_total', help: 'Configuration reloads by outcome.', labelNames: ['outcome'], registers: [registry], collect () { this.reset(); this.inc({ outcome: 'ok' }, fastify.reloads.ok); this.inc({ outcome: 'failed' }, fastify.reloads.failed) } })
  const requests = requestMetrics(registry)
  fastify.addHook('onRequest', (request, reply, done) => {
    const start = performance.now()
    requests.start()
    whenResponseDone(reply.raw, () => { requests.done(request, reply.raw.statusCode, (performance.now() - start) / 1000) })
    done()
  })
}, { name: 'berth-metrics', fastify: '5.x', dependencies: ['berth-request-state'], decorators: { fastify: ['reloads'], request: ['registryAction', 'bodyBytesSent', 'bodyBytesReceived'] } })
