// Drain on SIGTERM: the upload in flight completes, new connections are refused, exit 0 in time.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import net from 'node:net'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startUpstream, tempDir, testCerts, waitFor, spawnBerth } from '../helper.js'


test('SIGTERM: a 200 MB upload in flight completes, new connections are refused, exit 0', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  let received = 0
  const up = await startUpstream((req, res) => {
    req.on('data', (d: Buffer) => { received += d.length })
    req.on('end', () => { res.writeHead(201); res.end() })
  }, { plain: true })
  t.after(() => up.close())
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, `listen: { host: 127.0.0.1, port: 0 }\ntls: { cert: ${c.cert}, key: ${c.key} }\nupstream: { servers: [ { url: "${up.url}" } ] }\nshutdown: { drainTimeout: 10s }\n`)
  const b = await spawnBerth(t, ['--config', file])
  const size = 200 * 1024 * 1024
  const req = https.request({ host: '127.0.0.1', port: b.port, path: '/v2/r/blobs/uploads/u', method: 'PUT', ca: readFileSync(c.caCert), servername: 'localhost', agent: false, headers: { 'content-length': size } })
  const response = once(req, 'response')
  req.write(Buffer.alloc(64 * 1024))
  await waitFor(() => received > 0, 5000, 'upload started')
  const stoppedAt = Date.now()
  b.child.kill('SIGTERM')
  await waitFor(() => b.output().includes('draining'), 5000, 'draining')
  // new connections are refused
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect(b.port, '127.0.0.1')
    s.on('connect', () => { s.destroy(); resolve('accepted') })
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
  assert.equal(refused, 'ECONNREFUSED')
  // the upload goes on and completes: 200 MB in all, most of it sent after SIGTERM
  const chunk = Buffer.alloc(1024 * 1024)
  for (let sent = 64 * 1024; sent < size;) {
    const n = Math.min(chunk.length, size - sent)
    if (!req.write(chunk.subarray(0, n))) await once(req, 'drain')
    sent += n
  }
  req.end()
  const [res] = await response as [import('node:http').IncomingMessage]
  res.resume()
  assert.equal(res.statusCode, 201)
  assert.equal(received, size)
  const [code] = await once(b.child, 'exit')
  assert.equal(code, 0)
  assert.ok(Date.now() - stoppedAt < 10_000 + 1000)
})

test('SIGTERM: an upload that never finishes is cut at drainTimeout and berth exits 0 within drainTimeout + 1 s', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const up = await startUpstream((req) => { req.resume() }, { plain: true })
  t.after(() => up.close())
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, `listen: { host: 127.0.0.1, port: 0 }\ntls: { cert: ${c.cert}, key: ${c.key} }\nupstream: { servers: [ { url: "${up.url}" } ] }\nshutdown: { drainTimeout: 1500ms }\n`)
  const b = await spawnBerth(t, ['--config', file])
  const req = https.request({ host: '127.0.0.1', port: b.port, path: '/v2/r/blobs/uploads/u', method: 'PATCH', ca: readFileSync(c.caCert), servername: 'localhost', agent: false })
  req.on('error', () => {})
  req.write(Buffer.alloc(1024))
  await waitFor(() => up.seen.length > 0, 5000, 'upload started')
  const stoppedAt = Date.now()
  b.child.kill('SIGTERM')
  const [code] = await once(b.child, 'exit')
  const took = Date.now() - stoppedAt
  assert.equal(code, 0)
  assert.ok(took >= 1400 && took < 1500 + 1000, `exited after ${took} ms`)
  req.destroy()
})
