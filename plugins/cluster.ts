// The replicas' shared state (cluster.redis): decorates fastify.cluster for the throttle and the access
// keys (plugins/auth.ts), and reports Redis's reachability. ioredis and rate-limiter-flexible load only
// when a cluster is configured.
import fp from 'fastify-plugin'
import { Counter, Gauge } from 'prom-client'

export default fp(async function cluster (fastify) {
  const config = fastify.berthConfig.cluster
  if (config === undefined) { fastify.decorate('cluster', null); return }
  const { ClusterState } = await import('../src/cluster/state.js')
  const limits = fastify.berthConfig.auth?.throttle ?? { failures: 10, userFailures: 50, window: 60_000, block: 300_000 }
  const state = new ClusterState(config, limits, fastify.log)
  fastify.decorate('cluster', state)
  fastify.addHook('onClose', async () => { await state.close() })
  const registers = [fastify.metrics]
  new Gauge({ name: 'berth_cluster_redis_up', help: '1 when the shared store (Redis) answers, 0 while this replica counts failed logins alone.', registers, collect () { this.set(state.up ? 1 : 0) } }) // eslint-disable-line no-new
  new Counter({ name: 'berth_cluster_redis_errors_total', help: 'Commands to the shared store that failed.', registers, collect () { this.reset(); this.inc(state.errors) } }) // eslint-disable-line no-new
}, { name: 'berth-cluster', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'metrics'] } })
