// Slow and hostile clients: slow headers, stalled bodies and downloads, slowloris, Expect: 100-continue
// after auth, aborts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import https from 'node:https'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { startBerth, startUpstream, registryError, tempDir, waitFor, sleep, deferred } from '../helper.js'

test('slow headers are closed after timeouts.header', async (t) => {
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { timeouts: { header: '500ms' } })
  const socket = tls.connect({ host: '127.0.0.1', port: berth.port, ca: berth.ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  socket.on('error', () => {})
  const start = Date.now()
  socket.write('GET /v2/ HTTP/1.1\r\nHost: localhost\r\n')
  const drip = setInterval(() => { if (!socket.destroyed && socket.writable) socket.write('X-Drip: 1\r\n', () => {}) }, 100)
  await Promise.race([new Promise((resolve) => socket.once('close', resolve)), sleep(5000)])
  clearInterval(drip)
  const took = Date.now() - start
  assert.equal(socket.destroyed, true, 'closed')
  assert.ok(took >= 450 && took < 2000, `closed after ${took} ms`)
  assert.equal(up.seen.length, 0)
})

test('a body that stops moving gets 408 after timeouts.clientIdle and its upstream request is destroyed', async (t) => {
  const outcome = deferred<string>()
  const up = await startUpstream((req, res) => {
    req.resume()
    req.on('end', () => { outcome.resolve('clean end'); res.end() })
    req.on('close', () => { if (!req.complete) outcome.resolve('destroyed') })
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { timeouts: { clientIdle: '400ms' } })
  const req = https.request(`${berth.url}/v2/a/blobs/uploads/u`, { method: 'PATCH', ca: berth.ca, servername: 'localhost', agent: false, headers: { 'content-length': 100_000 } })
  req.on('error', () => {})
  req.write(Buffer.alloc(1000))
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  let body = ''
  res.on('data', (c: Buffer) => { body += c.toString() })
  await once(res, 'end')
  assert.equal(res.statusCode, 408)
  assert.equal(res.headers.connection, 'close')
  assert.equal(registryError(Buffer.from(body)).code, 'BLOB_UPLOAD_INVALID')
  assert.equal(await Promise.race([outcome.promise, sleep(2000).then(() => 'still open')]), 'destroyed')
  req.destroy()
})

test('a download the client stops reading is ended after timeouts.clientIdle (send_timeout), upstream request too', async (t) => {
  const closed = deferred()
  const up = await startUpstream((req, res) => {
    res.writeHead(200, { 'content-length': 500 * 1024 * 1024 })
    const chunk = Buffer.alloc(1 << 20)
    const pump = () => { while (res.write(chunk)); }
    res.on('drain', pump)
    res.on('close', () => closed.resolve())
    pump()
  })
  t.after(() => up.close())
  // the upstream idle timeout is long: only the client rule can end this
  const berth = await startBerth(t, [up.url], { timeouts: { clientIdle: '500ms' } })
  const req = https.get(`${berth.url}/v2/a/manifests/latest`, { ca: berth.ca, servername: 'localhost', agent: false })
  req.on('error', () => {})
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  res.on('error', () => {})
  res.pause()
  const start = Date.now()
  await Promise.race([closed.promise, sleep(5000)])
  const took = Date.now() - start
  assert.ok(took < 3000, `upstream request ended after ${took} ms`)
  res.resume()
  await new Promise((resolve) => { res.on('close', resolve) })
  assert.equal(res.complete, false)
})

test('1,000 slowloris connections do not stop a normal client from pushing', { timeout: 120_000 }, async (t) => {
  let received = 0
  const up = await startUpstream((req, res) => { req.on('data', (c: Buffer) => { received += c.length }); req.on('end', () => { res.writeHead(201); res.end() }) })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { timeouts: { header: '20s' } })
  const sockets: tls.TLSSocket[] = []
  t.after(() => { for (const s of sockets) s.destroy() })
  const open = async () => {
    const s = tls.connect({ host: '127.0.0.1', port: berth.port, ca: berth.ca, servername: 'localhost' })
    s.on('error', () => {})
    sockets.push(s)
    await once(s, 'secureConnect')
    s.write('POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\n')
  }
  for (let i = 0; i < 1000; i += 50) await Promise.all(Array.from({ length: 50 }, open))
  const drip = setInterval(() => { for (const s of sockets) if (s.writable) s.write('X-a: b\r\n', () => {}) }, 1000)
  t.after(() => clearInterval(drip))
  const size = 8 * 1024 * 1024
  const started = Date.now()
  const status = await new Promise<number>((resolve, reject) => {
    const req = https.request(`${berth.url}/v2/a/blobs/uploads/u?digest=sha256:x`, { method: 'PUT', ca: berth.ca, servername: 'localhost', agent: false, headers: { 'content-length': size } }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end(Buffer.alloc(size))
  })
  t.diagnostic(`push of 8 MB beside 1,000 slowloris connections: ${Date.now() - started} ms`)
  assert.equal(status, 201)
  assert.equal(received, size)
  assert.equal(sockets.filter((s) => !s.destroyed).length, 1000, 'the slowloris connections were still open')
  clearInterval(drip)
  // (close() waits for connections in the middle of a request: end them before berth closes)
  for (const s of sockets) s.destroy()
})

test('Expect: 100-continue is answered only after auth, access and the body limit passed; a refused upload never sends its body', async (t) => {
  const dir = tempDir(t)
  const up = await startUpstream((req, res) => { req.resume(); req.on('end', () => res.end(String(req.headers.expect))) })
  t.after(() => up.close())
  writeFileSync(join(dir, 'htpasswd'), execFileSync('htpasswd', ['-nbB', '-C', '4', 'alice', 'pw'], { encoding: 'utf8' }))
  const berth = await startBerth(t, [up.url], { limits: { maxBodySize: '1k' }, auth: { htpasswd: join(dir, 'htpasswd'), access: [{ users: ['alice'], repositories: ['mine/**'], actions: ['pull', 'push'] }] } })
  const send = (path: string, authorization?: string, length = 1024) => new Promise<{ status: number, continued: boolean, body: string }>((resolve, reject) => {
    let continued = false
    const headers: Record<string, string | number> = { expect: '100-continue', 'content-length': length }
    if (authorization) headers.authorization = authorization
    const req = https.request(`${berth.url}${path}`, { method: 'PUT', ca: berth.ca, servername: 'localhost', agent: false, headers })
    req.on('continue', () => { continued = true; req.end(Buffer.alloc(length)) })
    req.on('response', (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, continued, body }); req.destroy() })
    })
    req.on('error', reject)
    req.flushHeaders()
  })
  const alice = 'Basic ' + Buffer.from('alice:pw').toString('base64')
  assert.deepEqual(await send('/v2/mine/app/blobs/uploads/u').then((r) => [r.status, r.continued]), [401, false])
  assert.deepEqual(await send('/v2/other/app/blobs/uploads/u', alice).then((r) => [r.status, r.continued]), [403, false])
  assert.deepEqual(await send('/v2/mine/app/blobs/uploads/u', alice, 4096).then((r) => [r.status, r.continued]), [413, false])
  const ok = await send('/v2/mine/app/blobs/uploads/u', alice)
  assert.deepEqual([ok.status, ok.continued, ok.body], [200, true, 'undefined'], 'the Expect header is not forwarded')
  assert.equal(up.seen.length, 1)
})

test('a client that disconnects at any point of an upload has its upstream request destroyed within a second', async (t) => {
  for (const at of [1, 64 * 1024, 1024 * 1024]) {
    const outcome = deferred<string>()
    let got = 0
    const up = await startUpstream((req, res) => {
      req.on('data', (c: Buffer) => { got += c.length })
      req.on('end', () => { outcome.resolve('clean end'); res.end() })
      req.on('close', () => { if (!req.complete) outcome.resolve('destroyed') })
    })
    const berth = await startBerth(t, [up.url])
    const req = https.request(`${berth.url}/v2/a/blobs/uploads/u`, { method: 'PATCH', ca: berth.ca, servername: 'localhost', agent: false, headers: { 'content-length': 4 * 1024 * 1024 } })
    req.on('error', () => {})
    req.write(Buffer.alloc(at))
    await waitFor(() => got >= at, 5000, 'bytes at the upstream')
    req.destroy()
    const start = Date.now()
    assert.equal(await Promise.race([outcome.promise, sleep(1000).then(() => 'still open after 1 s')]), 'destroyed', `abort after ${at} bytes`)
    assert.ok(Date.now() - start < 1000)
    await up.close()
  }
})
