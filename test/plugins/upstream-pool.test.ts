import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { UpstreamPool } from '../../plugins/upstream-pool.js'
import { parseConfig } from '../../src/config/load.js'
import { startBerth, request, registryError } from '../helper.js'

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
  assert.deepEqual(p.servers.map((s) => [s.url, s.address, s.servername]), [
    ['https://registry.internal:5000', 'registry.internal:5000', 'registry.internal'],
    ['https://[::1]:5001', '[::1]:5001', '[::1]']
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
  const berth = await startBerth(t, [url], '', { upstreamTls: `{ ca: ${(await testCerts()).caCert} }\n  timeouts: { connect: 300ms }` })
  const started = Date.now()
  const res = await request(berth, '/v2/')
  assert.equal(res.status, 504)
  assert.equal(registryError(res.body).code, 'UNAVAILABLE')
  assert.ok(Date.now() - started < 3000)
})
