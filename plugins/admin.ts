// The admin listener (plain HTTP, for operators and orchestrators, never the public): /healthz (alive),
// /readyz (at least one upstream can take requests), /upstreams (the pool as JSON) and /status (the same
// as a small HTML page, like Tengine's check_status). It reads the pool in force (after any reload) through its snapshot only.
import fp from 'fastify-plugin'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { UpstreamSnapshot } from '../src/upstream/pool.js'

const escapeHtml = (v: unknown) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

function statusPage (rows: UpstreamSnapshot[], now = new Date()): string {
  const cells = (r: UpstreamSnapshot) => [
    r.url, r.state, r.available ? 'yes' : 'no', r.weight, r.backup ? 'backup' : '', r.successesInARow, r.failuresInARow,
    r.lastProbe === null ? '-' : `${r.lastProbe.ok ? 'ok' : `failed: ${r.lastProbe.error ?? ''}`} (${r.lastProbe.ms} ms, ${r.lastProbe.at})`,
    r.active, r.requests, r.failures
  ]
  const head = ['server', 'state', 'in rotation', 'weight', '', 'rise count', 'fall count', 'last probe', 'active', 'requests', 'failures']
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>berth upstream status</title>
<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}tr.down{background:#f88}tr.up{background:#cfc}</style>
</head><body><h1>berth upstream status</h1><p>${escapeHtml(now.toISOString())}: ${rows.filter((r) => r.state === 'up').length} of ${rows.length} up</p>
<table><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr>
${rows.map((r) => `<tr class="${r.state}">${cells(r).map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n')}
</table></body></html>
`
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
  server.get('/status', async (_request, reply) => {
    reply.type('text/html; charset=utf-8')
    return statusPage(pool().snapshot())
  })
  fastify.addHook('onReady', async () => {
    await server.listen({ host: cfg.host, port: cfg.port, listenTextResolver: (address) => `admin listener at ${address}` })
  })
  fastify.addHook('onClose', async () => { await server.close() })
}, { name: 'berth-admin', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'upstreams', 'metrics'] } })
