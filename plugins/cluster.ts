// The replicas' shared state (cluster.redis): decorates fastify.cluster for the throttle and the access
// keys (plugins/auth.ts), and reports Redis's reachability; with cluster.placement, the internal listener
// other replicas fetch owned blobs from (fastify.placement, read by the proxy). ioredis and
// rate-limiter-flexible load only when a cluster is configured.
import fp from 'fastify-plugin'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { Counter, Gauge } from 'prom-client'
import { serverTlsOptions } from '../src/tls.js'
import { registryError, writeRegistryError } from '../src/errors.js'

/** https:// + this host's first non-loopback IPv4 address (in Kubernetes, the pod's IP) + the internal port. */
function defaultAdvertise (port: number): string {
  const address = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1'
  return `https://${address}:${port}`
}

export default fp(async function cluster (fastify) {
  const config = fastify.berthConfig.cluster
  fastify.decorate('placement', null)
  if (config === undefined) { fastify.decorate('cluster', null); return }
  const { ClusterState } = await import('../src/cluster/state.js')
  const limits = fastify.berthConfig.auth?.throttle ?? { failures: 10, userFailures: 50, window: 60_000, block: 300_000 }
  const state = new ClusterState(config, limits, fastify.log)
  fastify.decorate('cluster', state)
  fastify.addHook('onClose', async () => { await state.close() })
  const registers = [fastify.metrics]
  new Gauge({ name: 'berth_cluster_redis_up', help: '1 when the shared store (Redis) answers, 0 while this replica counts failed logins alone.', registers, collect () { this.set(state.up ? 1 : 0) } }) // eslint-disable-line no-new
  if (config.placement !== undefined) {
    const p = config.placement
    const { Placement } = await import('../src/cluster/placement.js')
    const publicHost = fastify.berthConfig.listen.publicHost?.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
    const placement = new Placement({
      advertise: p.advertise ?? defaultAdvertise(p.listen.port),
      peers: p.peers,
      servername: p.servername ?? publicHost,
      secret: p.secretFile !== undefined ? readFileSync(p.secretFile, 'utf8').trim() : p.secret as string
    }, fastify.berthConfig)
    fastify.placement = placement
    placement.start(state.client, fastify.log)
    // The internal listener: TLS as the public one; a request without a valid peer signature gets 403;
    // one with it goes through every hook of the app (the access rules too), marked as a peer's.
    const internal = https.createServer(serverTlsOptions(fastify.berthConfig) ?? {}, (req, res) => {
      if (placement.admit(req)) { fastify.routing(req, res); return }
      req.resume()
      writeRegistryError(res, registryError(403, 'DENIED', 'internal listener: peers only'), true)
    })
    fastify.addHook('onReady', async () => {
      await new Promise<void>((resolve, reject) => internal.once('error', reject).listen(p.listen.port, p.listen.host, resolve))
      fastify.log.info({ listener: 'internal', address: internal.address(), advertise: p.advertise }, 'cluster: internal listener for cache placement')
    })
    fastify.addHook('onClose', async () => {
      internal.closeAllConnections()
      await new Promise((resolve) => internal.close(resolve))
      await placement.close()
    })
    new Gauge({ name: 'berth_cluster_members', help: 'Replicas sharing the blob cache placement.', registers, collect () { this.set(placement.members.length) } }) // eslint-disable-line no-new
    new Counter({ name: 'berth_cluster_owner_requests_total', help: 'Missed blob GETs sent to the replica that owns the blob.', registers, collect () { this.reset(); this.inc(placement.stats.toOwner) } }) // eslint-disable-line no-new
  }
  new Counter({ name: 'berth_cluster_redis_errors_total', help: 'Commands to the shared store that failed.', registers, collect () { this.reset(); this.inc(state.errors) } }) // eslint-disable-line no-new
}, { name: 'berth-cluster', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'metrics'] } })
