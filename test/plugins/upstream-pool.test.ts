import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { EventEmitter } from 'node:events'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { UpstreamPool, type Upstream } from '../../src/upstream/pool.js'
import { tlsName } from '../../src/upstream/dispatcher.js'
import { WriteQueues } from '../../src/upstream/write-queue.js'
import { parseConfig } from '../../src/config/load.js'
import { startBerth, startUpstream, request, registryError, waitFor } from '../helper.js'

function pool (servers: string): UpstreamPool {
  return new UpstreamPool(parseConfig(`upstream: { servers: ${servers} }`, '/x.yaml'))
}

test('smooth weighted round robin: 3:1 interleaves as nginx does and splits exactly over a cycle', async () => {
  const p = pool('[ { url: "http://127.0.0.1:1", weight: 3 }, { url: "http://127.0.0.1:2", weight: 1 } ]')
  const order = Array.from({ length: 8 }, () => p.pick()?.address)
  assert.deepEqual(order, ['127.0.0.1:1', '127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:1', '127.0.0.1:1', '127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:1'])
  const counts = new Map<string, number>()
  for (let i = 0; i < 4000; i++) { const a = (p.pick() as { address: string }).address; counts.set(a, (counts.get(a) ?? 0) + 1) }
  assert.deepEqual([...counts.values()], [3000, 1000])
  await p.close()
})

test('each server has its own address, origin and pinned TLS name', async () => {
  const p = pool('[ { url: "https://registry.internal:5000" }, { url: "https://[::1]:5001/" } ]')
  assert.deepEqual(p.servers.map((s) => [s.url, s.address, s.hostname, tlsName(s.hostname)]), [
    ['https://registry.internal:5000', 'registry.internal:5000', 'registry.internal', 'registry.internal'],
    ['https://[::1]:5001', '[::1]:5001', '::1', undefined]
  ])
  await p.close()
})

test('an upstream that accepts TCP but never completes TLS gives 504 after upstream.timeouts.connect', async (t) => {
  const sockets: net.Socket[] = []
  const silent = net.createServer((s) => { sockets.push(s) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of sockets) s.destroy(); silent.close() })
  const url = `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}`
  const { testCerts } = await import('../helper.js')
  const berth = await startBerth(t, [url], { upstream: { tls: { ca: (await testCerts()).caCert }, timeouts: { connect: '300ms' } } })
  const started = Date.now()
  const res = await request(berth, '/v2/')
  assert.equal(res.status, 504)
  assert.equal(registryError(res.body).code, 'UNAVAILABLE')
  assert.ok(Date.now() - started < 3000)
})

const down = (s: Upstream) => s.recordProbe({ ok: false, at: Date.now(), ms: 1 }, 1, 1)

test('a connection to an upstream, one of few, lets 256 KiB of a request body queue before undici pauses the client, and reads ahead 16 KiB', async (t) => {
  const up = await startUpstream((req, res) => { req.resume(); req.on('end', () => { res.writeHead(202); res.end() }) })
  t.after(() => up.close())
  const sockets: net.Socket[] = []
  const connected = (message: unknown) => { sockets.push((message as { socket: net.Socket }).socket) }
  subscribe('undici:client:connected', connected)
  t.after(() => { unsubscribe('undici:client:connected', connected) })
  const berth = await startBerth(t, [up.url])
  const body = Buffer.alloc(1 << 20, 7)
  const res = await request(berth, '/v2/a/blobs/uploads/x', { method: 'PATCH', headers: { 'content-type': 'application/octet-stream' }, body })
  assert.equal(res.status, 202)
  assert.ok(sockets.length > 0)
  for (const s of sockets) {
    assert.equal(s.writableHighWaterMark, WriteQueues.MAX)
    assert.equal(s.readableHighWaterMark, 16 << 10)
  }
})

test('write queues share 4 MiB among open connections: 256 KiB each for a few, 16 KiB at the least, and more again as they close', () => {
  const queues = new WriteQueues()
  const open = (n: number) => Array.from({ length: n }, () => {
    const socket = Object.assign(new EventEmitter(), { _writableState: { highWaterMark: 16 << 10 } })
    queues.add(socket)
    return socket
  })
  const few = open(16)
  assert.ok(few.every((s) => s._writableState.highWaterMark === 256 << 10))
  const more = open(48)
  assert.ok([...few, ...more].every((s) => s._writableState.highWaterMark === 64 << 10), 'the earlier connections gave up their share')
  const many = open(400)
  assert.equal(many[0]._writableState.highWaterMark, 16 << 10, 'never below Node\'s own')
  for (const s of [...more, ...many]) s.emit('close')
  assert.ok(few.every((s) => s._writableState.highWaterMark === 256 << 10), 'closed ones give their share back')
  queues.add(new EventEmitter()) // no writable state (not a stream): left alone
  assert.equal(queues.size(), 256 << 10)
})

test('backup servers get traffic only while every primary is unavailable', async () => {
  const p = pool('[ { url: "http://127.0.0.1:1" }, { url: "http://127.0.0.1:2" }, { url: "http://127.0.0.1:3", backup: true } ]')
  const [a, b, c] = p.servers
  const t0 = Date.now()
  const picks = (now = t0) => new Set(Array.from({ length: 6 }, () => p.pick(null, now)?.address))
  assert.deepEqual(picks(), new Set([a.address, b.address]))
  down(a)
  assert.deepEqual(picks(), new Set([b.address]))
  p.passiveFailure(b, t0) // maxFails 1, failTimeout 10s
  assert.deepEqual(picks(), new Set([c.address]))
  down(c)
  assert.equal(p.anyAvailable(t0), false)
  assert.equal(p.pick(null, t0)?.address, b.address, 'all out for failures alone: tried anyway')
  assert.equal(p.pick(new Set([b]), t0), null, 'skips servers already tried')
  assert.equal(p.pick(null, t0 + 10_000)?.address, b.address, 'back after failTimeout')
  assert.equal(p.anyAvailable(t0 + 10_000), true)
  down(b)
  assert.equal(p.pick(null, t0 + 10_000), null, 'every server down by the probes: none')
  await p.close()
})

test('one server alone is never taken out for failures (nginx ignores max_fails there); a larger pool tries its failed servers rather than refuse', async () => {
  const one = pool('[ { url: "http://127.0.0.1:1", maxFails: 1, failTimeout: 10s } ]')
  const t0 = Date.now()
  for (let i = 0; i < 5; i++) assert.equal(one.passiveFailure(one.servers[0], t0), null, 'nothing to log: it stays in rotation')
  assert.equal(one.pick(null, t0), one.servers[0])
  assert.equal(one.anyAvailable(t0), true)
  assert.equal(one.snapshot(t0)[0].available, true)
  assert.equal(one.servers[0].failures, 5, 'still counted')
  const two = pool('[ { url: "http://127.0.0.1:1" }, { url: "http://127.0.0.1:2" } ]')
  const [a, b] = two.servers
  two.passiveFailure(a, t0)
  assert.deepEqual(new Set(Array.from({ length: 4 }, () => two.pick(null, t0))), new Set([b]), 'while one is up, the failed one rests')
  two.passiveFailure(b, t0)
  assert.deepEqual(new Set(Array.from({ length: 4 }, () => two.pick(null, t0))), new Set([a, b]), 'both failed: both tried')
  assert.equal(two.hasCandidate(new Set([a]), t0), true)
  assert.equal(two.hasCandidate(new Set([a, b]), t0), false)
  await one.close()
  await two.close()
})

test('least_conn picks the server with the fewest active requests per weight', async () => {
  const p = new UpstreamPool(parseConfig('upstream: { balance: least_conn, servers: [ { url: "http://127.0.0.1:1", weight: 2 }, { url: "http://127.0.0.1:2" } ] }', '/x.yaml'))
  const [a, b] = p.servers
  // Requests to closed ports: each is active from its dispatch until the refusal arrives, a tick later.
  const busy = (s: Upstream, n: number) => { for (let i = 0; i < n; i++) s.dispatch({ path: '/', method: 'GET', headers: [] }, { onResponseError () {} }) }
  busy(a, 3)
  busy(b, 1)
  assert.equal(p.pick(), b) // 1/1 < 3/2
  busy(b, 1)
  assert.equal(p.pick(), a) // 3/2 < 2/1
  await waitFor(() => a.active === 0 && b.active === 0, 5000, 'the requests refused')
  const n = new Map<string, number>()
  for (let i = 0; i < 300; i++) { const s = p.pick() as typeof a; n.set(s.address, (n.get(s.address) ?? 0) + 1) }
  assert.deepEqual([...n.values()], [200, 100], 'idle servers share by weight')
  await p.close()
})

test('passive failures: maxFails within failTimeout take a server out for failTimeout; maxFails 0 never', async () => {
  const p = pool('[ { url: "http://127.0.0.1:1", maxFails: 2, failTimeout: 10s }, { url: "http://127.0.0.1:2", maxFails: 0 } ]')
  const [a, b] = p.servers
  const t0 = 1_000_000
  assert.equal(p.passiveFailure(a, t0), null)
  assert.equal(a.available(t0), true)
  assert.equal(p.passiveFailure(a, t0 + 11_000), null) // the first one is outside the window
  assert.equal(a.available(t0 + 11_000), true)
  // what the error log says when a failure takes a server out
  assert.equal(p.passiveFailure(a, t0 + 12_000), '127.0.0.1:1: 2 failures within failTimeout: out of rotation for 10s')
  assert.equal(a.available(t0 + 12_000), false)
  assert.equal(a.available(t0 + 21_999), false)
  assert.equal(a.available(t0 + 22_000), true)
  for (let i = 0; i < 100; i++) p.passiveFailure(b, t0)
  assert.equal(b.available(t0), true)
  assert.equal(b.failures, 100)
  await p.close()
})

test('the probe state machine: fall failures mark down, rise successes mark up, from either initial state', async () => {
  const { nextProbeState: recordProbe } = await import('../../src/upstream/upstream.js')
  const s = { state: 'up' as 'up' | 'down', successesInARow: 0, failuresInARow: 0 }
  assert.deepEqual([false, false].map((ok) => recordProbe(s, ok, 2, 3)), [null, null])
  assert.equal(recordProbe(s, true, 2, 3), null, 'a success resets the failures')
  assert.deepEqual([false, false, false].map((ok) => recordProbe(s, ok, 2, 3)), [null, null, 'down'])
  assert.deepEqual([true, false, true, true].map((ok) => recordProbe(s, ok, 2, 3)), [null, null, null, 'up'])
  const d = { state: 'down' as 'up' | 'down', successesInARow: 0, failuresInARow: 0 }
  assert.deepEqual([true, true].map((ok) => recordProbe(d, ok, 2, 3)), [null, 'up'], 'initialState down (Tengine default_down)')
})
