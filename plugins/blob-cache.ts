// The edge cache for blobs (`cache: { dir, maxSize, confirmFor }`, src/cache/) as `fastify.blobCache`.
// Blobs are content-addressed, so berth can keep verified copies at the edge; src/proxy/cached.ts decides
// per request when a copy may be served.
import fp from 'fastify-plugin'
import { BlobCache } from '../src/cache/store.js'
import { registerCacheMetrics } from '../src/cache/metrics.js'

export default fp(async function blobCache (fastify) {
  const cfg = fastify.berthConfig.cache
  const log = fastify.log.child({ component: 'blob-cache' })
  const cache = cfg === undefined ? null : await BlobCache.open({ dir: cfg.dir, maxSize: cfg.maxSize, confirmFor: cfg.confirmFor, log })
  fastify.decorate('blobCache', cache)
  if (cache !== null) registerCacheMetrics(fastify.metrics, cache)
  if (cache !== null) fastify.log.info({ dir: cache.dir, blobs: cache.count, bytes: cache.size, maxSize: cache.maxSize }, 'blob cache open')
}, { name: 'berth-blob-cache', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'metrics'] } })
