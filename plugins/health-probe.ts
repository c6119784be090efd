// Active health probes (src/upstream/probe.ts) for the servers of the pool in force; a reload probes the
// new server list with the new settings.
import fp from 'fastify-plugin'
import type { BerthConfig } from '../src/config/schema.js'
import { startProbing } from '../src/upstream/probe.js'

export default fp(async function healthProbe (fastify) {
  let stops: Array<() => void> = []
  const start = (config: BerthConfig) => {
    for (const stop of stops) stop()
    const check = config.upstream.healthCheck
    if (!check) { stops = []; return }
    const pool = fastify.upstreams
    stops = pool.servers.map((s) => startProbing(s, check, pool.tls, fastify.log))
  }
  fastify.addHook('onReady', async () => { start(fastify.berthConfig) })
  fastify.addHook('onClose', async () => { for (const stop of stops) stop() })
  // After the pool committed its new servers (reload parts commit in dependency order).
  fastify.onReload({ name: 'health-probe', after: ['upstreams'], async prepare (next) { return { commit () { start(next) } } } })
}, { name: 'berth-health-probe', fastify: '5.x', dependencies: ['berth-upstream-pool'], decorators: { fastify: ['upstreams', 'onReload'] } })
