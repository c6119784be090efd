// Active probes and the admin listener: /healthz, /readyz, /upstreams, /status.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { startBerth, startUpstream, request, waitFor, type Berth, adminGet } from '../helper.js'
import type { UpstreamSnapshot } from '../../src/upstream/pool.js'

const upstreams = async (berth: Berth) => (JSON.parse((await adminGet(berth, '/upstreams')).body) as { upstreams: UpstreamSnapshot[] }).upstreams

test('tcp probes mark a dead server down within fall x interval and up within rise x interval; traffic follows', async (t) => {
  const a = await startUpstream((req, res) => res.end('a'))
  const b = await startUpstream((req, res) => res.end('b'))
  t.after(() => a.close())
  const bPort = b.port
  const berth = await startBerth(t, [a.url, b.url], { admin: { host: '127.0.0.1', port: 0 }, upstream: { healthCheck: { type: 'tcp', interval: '100ms', rise: 2, fall: 3, timeout: '200ms' }, nextUpstream: { on: [] } } })
  assert.equal((await adminGet(berth, '/healthz')).status, 200)
  await waitFor(() => berth.app.upstreams.servers.every((s) => s.lastProbe !== null), 2000, 'first probes')
  let rows = await upstreams(berth)
  assert.deepEqual(rows.map((r) => [r.url, r.state]), [[a.url, 'up'], [b.url, 'up']])
  assert.equal(rows[0].lastProbe?.ok, true)

  await b.close()
  const downAt = Date.now()
  await waitFor(() => berth.app.upstreams.servers[1].state === 'down', 3000, 'b down')
  const tookDown = Date.now() - downAt
  assert.ok(tookDown < 3 * 100 + 600, `down after ${tookDown} ms`)
  rows = await upstreams(berth)
  assert.equal(rows[1].state, 'down')
  assert.equal(rows[1].lastProbe?.ok, false)
  assert.ok(rows[1].failuresInARow >= 3)
  for (let i = 0; i < 6; i++) assert.equal((await request(berth, '/v2/')).body.toString(), 'a', 'no traffic to a down server')
  assert.equal((await adminGet(berth, '/readyz')).status, 200)

  // b comes back on the same port
  const back = http.createServer((req, res) => res.end('b again'))
  await new Promise<void>((resolve) => back.listen(bPort, '127.0.0.1', resolve))
  t.after(() => { back.closeAllConnections(); back.close() })
  const upAt = Date.now()
  await waitFor(() => berth.app.upstreams.servers[1].state === 'up', 3000, 'b up')
  assert.ok(Date.now() - upAt < 2 * 100 + 600, `up after ${Date.now() - upAt} ms`)
  const seen = new Set<string>()
  for (let i = 0; i < 6; i++) seen.add((await request(berth, '/v2/')).body.toString())
  assert.ok(seen.has('a') && seen.size === 2, [...seen].join())

  const page = await adminGet(berth, '/status')
  assert.equal(page.status, 200)
  assert.match(page.type ?? '', /text\/html/)
  assert.ok(page.body.includes(a.url) && page.body.includes(b.url))
  assert.match(page.body, /2 of 2 up/)
})

test('http probes check the status; initialState down keeps servers out until probes pass; /readyz says so', async (t) => {
  let healthy = false
  const up = await startUpstream((req, res) => { res.writeHead(healthy ? 401 : 500); res.end() })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { admin: { port: 0 }, upstream: { healthCheck: { type: 'http', interval: '100ms', rise: 2, fall: 2, timeout: '500ms', path: '/v2/', expect: [200, 401], initialState: 'down' } } })
  assert.equal((await adminGet(berth, '/readyz')).status, 503)
  assert.equal((await request(berth, '/v2/')).status, 502, 'no server up yet')
  await waitFor(() => (berth.app.upstreams.servers[0].lastProbe?.error ?? '') === 'status 500', 2000, 'a failed probe')
  healthy = true
  await waitFor(() => berth.app.upstreams.servers[0].state === 'up', 2000, 'up')
  assert.equal((await adminGet(berth, '/readyz')).status, 200)
  assert.equal((await request(berth, '/v2/')).status, 401)
  // the probe went over TLS, verified, to the probe path
  assert.ok(up.seen.some((r) => r.url === '/v2/' && r.headers['user-agent'] === 'berth-health-probe'))
})

test('a tcp probe that cannot connect within its timeout fails', async () => {
  const { tcpProbe } = await import('../../src/upstream/probe.js')
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await tcpProbe('127.0.0.1', port, 500)
  server.close()
  await assert.rejects(tcpProbe('127.0.0.1', port, 500), /ECONNREFUSED/)
})

test('after a reload that replaces the servers, /readyz, /upstreams and /status show the new pool, probed', async (t) => {
  const { loadConfig } = await import('../../src/config/load.js')
  const { readFileSync, writeFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const dead = net.createServer()
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
  const deadUrl = `https://127.0.0.1:${(dead.address() as AddressInfo).port}`
  dead.close()
  const alive = await startUpstream((req, res) => res.end('alive'))
  t.after(() => alive.close())
  const berth = await startBerth(t, [deadUrl], { admin: { port: 0 }, upstream: { healthCheck: { type: 'tcp', interval: '50ms', rise: 1, fall: 1, timeout: '200ms' } } })
  await waitFor(() => berth.app.upstreams.servers[0].state === 'down', 2000, 'the dead server down')
  assert.equal((await adminGet(berth, '/readyz')).status, 503)

  const file = join(berth.dir, 'berth.yaml')
  writeFileSync(file, readFileSync(file, 'utf8').replace(deadUrl, alive.url))
  await berth.app.reload(await loadConfig(file))
  assert.equal((await adminGet(berth, '/readyz')).status, 200, '/readyz reads the new pool')
  await waitFor(() => berth.app.upstreams.servers[0].lastProbe !== null, 2000, 'the new server probed')
  const rows = await upstreams(berth)
  assert.deepEqual(rows.map((r) => [r.url, r.state, r.lastProbe?.ok]), [[alive.url, 'up', true]])
  const page = (await adminGet(berth, '/status')).body
  assert.ok(page.includes(alive.url) && !page.includes(deadUrl), 'the status page shows only the new server')
  const before = rows[0].lastProbe?.at
  await waitFor(() => berth.app.upstreams.servers[0].lastProbe?.at !== undefined && new Date(berth.app.upstreams.servers[0].lastProbe?.at ?? 0).toISOString() !== before, 2000, 'a later probe')
  assert.notEqual((await upstreams(berth))[0].lastProbe?.at, before, 'lastProbe moves on')
})

test('the admin listener: / lists its endpoints; /status shows version, uptime and config, refreshes, heads every column, links /metrics; berth_build_info', async (t) => {
  const a = await startUpstream((_req, res) => res.end('{}'))
  t.after(() => a.close())
  const berth = await startBerth(t, [a.url], { admin: { host: '127.0.0.1', port: 0 } })
  const { VERSION } = await import('../../src/version.js')
  const index = await adminGet(berth, '/')
  assert.equal(index.status, 200)
  for (const e of ['/status', '/status.json', '/upstreams', '/metrics', '/healthz', '/readyz']) assert.ok(index.body.includes(`<a href="${e}">GET ${e}</a>`), e)
  assert.match(index.body, /POST \/reload/)
  const page = (await adminGet(berth, '/status')).body
  assert.match(page, /<meta http-equiv="refresh" content="5">/)
  assert.ok(page.includes(`berth ${VERSION} (node ${process.versions.node}), pid ${process.pid}`))
  assert.match(page, /up since \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ s\)/)
  assert.ok(page.includes(`configuration ${berth.app.berthConfig.file}`))
  assert.match(page, /<a href="\/metrics">metrics<\/a>/)
  const heads = [...page.matchAll(/<th>([^<]*)<\/th>/g)].map((m) => m[1])
  assert.equal(heads.length, 11)
  assert.ok(heads.every((h) => h !== ''), `every column has a header: ${heads.join('|')}`)
  assert.match(page, /<td>primary<\/td>/)
  const json = JSON.parse((await adminGet(berth, '/status.json')).body) as { version: string, listeners: Array<{ name: string, address: string }>, upstreams: unknown[] }
  assert.equal(json.version, VERSION)
  assert.deepEqual(json.listeners.map((l) => l.name), ['registry', 'admin'])
  assert.equal(json.upstreams.length, 1)
  const metrics = (await adminGet(berth, '/metrics')).body
  assert.ok(metrics.includes(`berth_build_info{version="${VERSION}",node="${process.versions.node}"} 1`), 'build info')
  const reload = await berth.app.adminServer?.inject({ method: 'POST', url: '/reload' })
  assert.equal(reload?.statusCode, 501, 'an app not started by berth start has no file to reload')
})
