// The upstream pool in force (src/upstream/pool.ts) as `fastify.upstreams`, replaced whole by a reload;
// connections no longer used close once their requests are done.
import fp from 'fastify-plugin'
import { UpstreamPool } from '../src/upstream/pool.js'
import { registerPoolMetrics } from '../src/upstream/metrics.js'

export default fp(async function upstreamPool (fastify) {
  let pool = new UpstreamPool(fastify.berthConfig)
  fastify.decorate('upstreams', { getter: () => pool })
  registerPoolMetrics(fastify.metrics, () => pool)
  fastify.addHook('onClose', async () => { await pool.close() })
  fastify.onReload({
    name: 'upstreams',
    async prepare (next) {
      const fresh = new UpstreamPool(next, pool)
      const kept = new Set(fresh.servers.map((s) => s.dispatcher))
      const unused = (a: UpstreamPool, b: UpstreamPool) => a.servers.filter((s) => !b.servers.some((t) => t.dispatcher === s.dispatcher))
      return {
        commit () {
          const old = pool
          pool = fresh
          for (const s of old.servers) if (!kept.has(s.dispatcher)) void s.dispatcher.close()
        },
        abort () { for (const s of unused(fresh, pool)) void s.dispatcher.close() }
      }
    }
  })
}, { name: 'berth-upstream-pool', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'onReload', 'metrics'] } })
