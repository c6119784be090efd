// The admin listener's HTML: its index, and the status page (like Tengine's check_status), from the
// report /status.json also serves.
import type { UpstreamSnapshot } from './upstream/pool.js'
import type { StatusReport } from './control.js'
import { VERSION } from './version.js'

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

export function indexPage (): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>berth admin</title><style>body{font-family:sans-serif}td{padding:2px 8px}</style></head>
<body><h1>berth ${escapeHtml(VERSION)} admin</h1><table>
${ENDPOINTS.map(([e, what]) => `<tr><td>${e.startsWith('GET') ? `<a href="${e.slice(4)}">${e}</a>` : e}</td><td>${escapeHtml(what)}</td></tr>`).join('\n')}
</table></body></html>
`
}

export function statusPage (s: StatusReport, rows: UpstreamSnapshot[], now = new Date()): string {
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
