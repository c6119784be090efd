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

const escapeHtml = (v: unknown) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

const ENDPOINTS: Array<[string, string]> = [
  ['GET /status', 'this berth and its upstreams, as a page that refreshes itself'],
  ['GET /status.json', 'the same as JSON (berth status prints it)'],
  ['GET /upstreams', 'the upstream pool as JSON'],
  ['GET /metrics', 'Prometheus metrics'],
  ['GET /healthz', 'alive (200)'],
  ['GET /readyz', 'ready: at least one upstream can take requests (200), else 503'],
  ['POST /reload', 're-read the configuration file; says whether it applied (berth reload)'],
  ['POST /stop', 'drain and exit (berth stop)']
]

function indexPage (): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>berth admin</title><style>body{font-family:sans-serif}td{padding:2px 8px}</style></head>
<body><h1>berth ${escapeHtml(VERSION)} admin</h1><table>
${ENDPOINTS.map(([e, what]) => `<tr><td>${e.startsWith('GET') ? `<a href="${e.slice(4)}">${e}</a>` : e}</td><td>${escapeHtml(what)}</td></tr>`).join('\n')}
</table></body></html>
`
}

function statusPage (s: StatusReport, rows: UpstreamSnapshot[], now = new Date()): string {
  const cells = (r: UpstreamSnapshot) => [
    r.url, r.state, r.available ? 'yes' : 'no', r.weight, r.backup ? 'backup' : 'primary', r.successesInARow, r.failuresInARow,
    r.lastProbe === null ? '-' : `${r.lastProbe.ok ? 'ok' : `failed: ${r.lastProbe.error ?? ''}`} (${r.lastProbe.ms} ms, ${r.lastProbe.at})`,
    r.active, r.requests, r.failures
  ]
  const head = ['server', 'state', 'in rotation', 'weight', 'role', 'rise count', 'fall count', 'last probe', 'active', 'requests', 'failures']
  return `<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>berth status</title>
<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}tr.down{background:#f88}tr.up{background:#cfc}</style>
</head><body><h1>berth status</h1>
<p>berth ${escapeHtml(s.version)} (node ${escapeHtml(s.node)}), pid ${s.pid}, up since ${escapeHtml(s.startedAt)} (${s.uptimeSeconds} s); configuration ${escapeHtml(s.config)}; reloads ${s.reloads.ok} applied, ${s.reloads.failed} refused</p>
<p>listeners: ${s.listeners.map((l) => `${escapeHtml(l.name)} ${escapeHtml(l.address)}`).join(', ')}</p>
${s.certificate === null ? '' : `<p>certificate (ACME) for ${escapeHtml(s.certificate.domains.join(', '))}: ${escapeHtml(s.certificate.source)}, expires ${escapeHtml(s.certificate.notAfter)}, issuer ${escapeHtml(s.certificate.issuer)}; last renewal: ${s.certificate.lastRenewal === null ? 'none yet' : escapeHtml(`${s.certificate.lastRenewal.ok ? 'ok' : `failed: ${s.certificate.lastRenewal.error ?? ''}`} at ${s.certificate.lastRenewal.at}`)}</p>`}
<p>${escapeHtml(now.toISOString())}: ${rows.filter((r) => r.state === 'up').length} of ${rows.length} upstreams up (this page refreshes every 5 s; <a href="/metrics">metrics</a>, <a href="/status.json">JSON</a>, <a href="/">admin</a>)</p>
<table><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr>
${rows.map((r) => `<tr class="${r.state}">${cells(r).map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n')}
</table></body></html>
`
}

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
    await server.listen({ host: cfg.host, port: cfg.port, listenTextResolver: (address) => `admin listener at ${address}` })
  })
  fastify.addHook('onClose', async () => { await server.close() })
}, { name: 'berth-admin', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'upstreams', 'metrics', 'reloads', 'control', 'startedAt', 'acme'] } })
