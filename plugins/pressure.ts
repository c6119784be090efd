// Load shedding with @fastify/under-pressure: over a threshold, new requests get 503 with Retry-After
// and the registry error body instead of piling up. The admin listener is a separate server and keeps
// answering. berth supplies the handler because the package's own answer is not registry-shaped.
import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import { Counter } from 'prom-client'
import { OverloadedError } from '../src/errors.js'

export default fp(async function pressure (fastify) {
  const cfg = fastify.berthConfig.pressure
  const retryAfter = Math.max(1, Math.ceil(cfg.retryAfter / 1000))
  let shed = 0
  fastify.decorate('pressureStats', { getter: () => ({ shed }) })
  new Counter({ name: 'berth_shed_requests_total', help: 'Requests refused by load shedding.', registers: [fastify.metrics], collect () { this.reset(); this.inc(shed) } })
  if (cfg.maxEventLoopDelay === 0 && cfg.maxHeapUsed === 0 && cfg.maxRss === 0) return
  await fastify.register(underPressure, {
    maxEventLoopDelay: cfg.maxEventLoopDelay,
    maxHeapUsedBytes: cfg.maxHeapUsed,
    maxRssBytes: cfg.maxRss,
    retryAfter,
    async pressureHandler (request, reply, type, value) {
      shed++
      reply.header('retry-after', String(retryAfter))
      request.log.warn({ type, value }, 'under pressure: request refused')
      throw new OverloadedError()
    }
  })
}, { name: 'berth-pressure', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'metrics'] } })
