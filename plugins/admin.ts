// The admin listener (plain HTTP, for operators and orchestrators, never the public): / (what is here),
// /healthz (alive), /readyz (at least one upstream can take requests), /upstreams (the pool as JSON),
// /status (the same as a small HTML page, like Tengine's check_status), /status.json (what `berth status`
// prints), /metrics, and POST /reload and /stop for `berth reload` and `berth stop`. It reads the pool in
// force (after any reload) through its snapshot only.
import fp from 'fastify-plugin'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import type { UpstreamSnapshot } from '../src/upstream/pool.js'
import type { StatusReport } from '../src/control.js'
import { VERSION } from '../src/version.js'
import { indexPage, statusPage } from '../src/status-page.js'

function addressOf (server: { address: () => string | AddressInfo | null }, scheme: string): string {
  const a = server.address()
  if (a === null) return '-'
  if (typeof a === 'string') return a
  return `${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
}

export default fp(async function admin (fastify) {
  const cfg = fastify.berthConfig.admin
  if (!cfg) { fastify.decorate('adminServer', null); return }
  const server = Fastify({ loggerInstance: fastify.log.child({ listener: 'admin' }), logController: new LogController({ disableRequestLogging: true }) }) as unknown as FastifyInstance
  fastify.decorate('adminServer', server)
  // The pool is read on every request: a reload replaces it.
  const pool = () => fastify.upstreams
  server.get('/healthz', async () => ({ status: 'ok' }))
  server.get('/readyz', async (_request, reply) => {
    const ready = pool().anyAvailable()
    reply.code(ready ? 200 : 503)
    return { status: ready ? 'ready' : 'no upstream available' }
  })
  server.get('/upstreams', async () => ({ upstreams: pool().snapshot() }))
  server.get('/metrics', async (_request, reply) => {
    reply.type(fastify.metrics.contentType)
    return await fastify.metrics.metrics()
  })
  const report = (): StatusReport => ({
    version: VERSION,
    node: process.versions.node,
    pid: process.pid,
    config: fastify.berthConfig.file,
    startedAt: fastify.startedAt.toISOString(),
    uptimeSeconds: Math.round((Date.now() - fastify.startedAt.getTime()) / 1000),
    listeners: [
      { name: 'registry', address: addressOf(fastify.server, fastify.berthConfig.tls === undefined ? 'http' : 'https') },
      { name: 'admin', address: addressOf(server.server, 'http') }
    ],
    reloads: { ...fastify.reloads },
    certificate: fastify.acme?.state() ?? null,
    upstreams: pool().snapshot()
  })
  server.get('/', async (_request, reply) => {
    reply.type('text/html; charset=utf-8')
    return indexPage()
  })
  server.get('/status', async (_request, reply) => {
    reply.type('text/html; charset=utf-8')
    const s = report()
    return statusPage(s, s.upstreams as UpstreamSnapshot[])
  })
  server.get('/status.json', async () => report())
  server.post('/reload', async (_request, reply) => {
    const reload = fastify.control.reload
    if (reload === null) { reply.code(501); return { ok: false, message: 'this berth was not started by berth start: nothing to reload from' } }
    const outcome = await reload()
    reply.code(outcome.ok ? 200 : 422)
    return outcome
  })
  server.post('/stop', async (_request, reply) => {
    const stop = fastify.control.stop
    if (stop === null) { reply.code(501); return { ok: false, message: 'this berth was not started by berth start' } }
    // The answer goes out first; the drain that follows closes this listener too.
    reply.raw.once('finish', stop)
    return { ok: true, message: `berth (pid ${process.pid}) is draining (up to ${fastify.berthConfig.shutdown.drainTimeout} ms) and will exit` }
  })
  fastify.addHook('onReady', async () => {
    // exclusive: a worker of `workers` gets a port of its own, not the socket its siblings share.
    await server.listen({ host: cfg.host, port: cfg.port, exclusive: true, listenTextResolver: (address) => `admin listener at ${address}` })
  })
  fastify.addHook('onClose', async () => { await server.close() })
}, { name: 'berth-admin', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'upstreams', 'metrics', 'reloads', 'control', 'startedAt', 'acme'] } })
