// The catch-all route that forwards every request that passed the checks (src/proxy/). Its routes and
// its pass-through body parser are encapsulated so that they do not leak into user plugins.
import fp from 'fastify-plugin'
import type { BerthConfig } from '../src/config/schema.js'
import { forward, type ProxyContext, type ProxyOptions } from '../src/proxy/forward.js'
import { IdleSweeper } from '../src/proxy/idle.js'
import { SendBudget } from '../src/proxy/flow.js'

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

function options (config: BerthConfig): ProxyOptions {
  const next = config.upstream.nextUpstream
  return {
    proto: config.tls ? 'https' : 'http',
    publicHost: config.listen.publicHost ?? null,
    limit: config.limits.maxBodySize,
    policy: { retryOn: new Set(next.on), tries: next.tries, timeout: next.timeout, nonIdempotent: next.nonIdempotent }
  }
}

export default fp(async function proxy (fastify) {
  let opts = options(fastify.berthConfig)
  const sweeper = new IdleSweeper(fastify.berthConfig.upstream.timeouts.idle, fastify.berthConfig.timeouts.clientIdle)
  const ctx: ProxyContext = { pool: () => fastify.upstreams, options: () => opts, cache: fastify.blobCache, sweeper, budget: new SendBudget(), placement: fastify.placement }
  fastify.addHook('onClose', async () => { sweeper.close() })
  fastify.onReload({
    name: 'proxy',
    async prepare (next) {
      const fresh = options(next)
      return { commit () { opts = fresh; sweeper.idle = next.upstream.timeouts.idle; sweeper.clientIdle = next.timeouts.clientIdle } }
    }
  })
  await fastify.register(async function routes (instance) {
    // Every body passes through untouched: drop Fastify's buffering JSON and text parsers first.
    instance.removeAllContentTypeParsers()
    instance.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
    instance.route({
      method: METHODS,
      url: '/*',
      handler: (request, reply) => {
        // Headers hooks set (reply.header) go out with whatever answers: the upstream's headers win.
        const added = reply.getHeaders()
        for (const name in added) if (added[name] !== undefined) reply.raw.setHeader(name, added[name] as string | string[] | number)
        reply.hijack()
        forward(ctx, request, reply.raw)
      }
    })
  })
}, {
  name: 'berth-proxy',
  fastify: '5.x',
  dependencies: ['berth-upstream-pool', 'berth-body-limit', 'berth-request-target', 'berth-blob-cache', 'berth-client-address', 'berth-cluster'],
  decorators: { fastify: ['upstreams', 'blobCache', 'onReload', 'placement'], request: ['registryAction', 'catalogFilter', 'clientAddress', 'upstreamAddress', 'bodyBytesSent'] }
})
