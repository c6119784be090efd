// Example plugin: a per-repository rate limit. Each repository may receive `perMinute` requests per
// minute (all clients together); beyond that, 429 TOOMANYREQUESTS with Retry-After.
//
//   plugins:
//     - { path: ./plugins/examples/rate-by-repo.ts, options: { perMinute: 600 } }
//
// It runs after auth, so it could also key on request.user?.name.
import type { FastifyPluginAsync } from 'fastify'
import type {} from '../../src/index.js' // berth's decorators: request.registryAction, fastify.registryError

interface Options { perMinute?: number }
interface Window { start: number, count: number }

const rateByRepo: FastifyPluginAsync<Options> = async (fastify, opts) => {
  const perMinute = opts.perMinute ?? 600
  if (!Number.isInteger(perMinute) || perMinute < 1) throw new Error(`rate-by-repo: perMinute must be a whole number >= 1, got ${String(opts.perMinute)}`)
  const windows = new Map<string, Window>()
  fastify.addHook('onRequest', async (request, reply) => {
    const repository = request.registryAction?.repository
    if (repository === null || repository === undefined) return
    const now = Date.now()
    let w = windows.get(repository)
    if (w === undefined || now - w.start >= 60_000) {
      if (windows.size > 10_000) windows.clear() // bounded: a fresh minute for everyone is harmless
      w = { start: now, count: 0 }
      windows.set(repository, w)
    }
    if (++w.count > perMinute) {
      reply.header('retry-after', String(Math.ceil((w.start + 60_000 - now) / 1000)))
      throw fastify.registryError(429, 'TOOMANYREQUESTS', `more than ${perMinute} requests a minute for ${repository}`)
    }
  })
}

export default rateByRepo
