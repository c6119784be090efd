// The next server on failure (nginx's proxy_next_upstream) with its replay rules, and the Range resume of
// digest-addressed downloads, against in-process upstreams that fail on purpose.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import https from 'node:https'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startBerth, startUpstream, request, registryError, type Upstream } from '../helper.js'

const ok = (name: string) => startUpstream((req, res) => { req.resume(); req.on('end', () => res.end(name)) })

async function deadUrl (): Promise<string> {
  const up = await ok('dead')
  await up.close()
  return up.url
}

/** A raw TCP server that answers every request with `reply` (bad framing, bad header bytes …). */
async function rawUpstream (t: { after: (fn: () => void) => void }, reply: string): Promise<string> {
  const server = net.createServer((s) => { s.once('data', () => { s.end(reply) }) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
}

test('a refused connection, a timeout, a 502 and an invalid response each go to the next server', async (t) => {
  const good = await ok('good')
  t.after(() => good.close())
  const slow = await startUpstream(() => { /* never answers */ })
  t.after(() => slow.close())
  const bad502 = await startUpstream((req, res) => { res.writeHead(502); res.end('bad gateway') })
  t.after(() => bad502.close())
  const garbage = await rawUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n')
  for (const [name, first] of [['refused', await deadUrl()], ['timeout', slow.url], ['http_502', bad502.url], ['invalid_header', garbage]] as const) {
    const berth = await startBerth(t, [first, good.url], { upstream: { timeouts: { idle: '300ms' }, nextUpstream: { on: ['error', 'timeout', 'invalid_header', 'http_502'] } } })
    const res = await request(berth, '/v2/a/manifests/v1')
    assert.equal(res.status, 200, name)
    assert.equal(res.body.toString(), 'good', name)
  }
})

test('when every server fails: 502 (504 after a timeout) and the error log names each server and why', async (t) => {
  const a = await deadUrl()
  const b = await deadUrl()
  const berth = await startBerth(t, [a, b])
  const res = await request(berth, '/v2/')
  assert.equal(res.status, 502)
  assert.equal(registryError(res.body).code, 'UNAVAILABLE')
  await berth.close()
  const log = readFileSync(join(berth.dir, 'error.log'), 'utf8')
  const line = log.split('\n').find((l) => l.includes('no upstream could take the request')) as string
  const tried = (JSON.parse(line) as { tried: string[] }).tried
  assert.equal(tried.length, 2)
  assert.match(tried[0], /ECONNREFUSED/)
  assert.ok(tried.some((r) => r.startsWith(new URL(a).host)) && tried.some((r) => r.startsWith(new URL(b).host)))
  const slow = await startUpstream(() => {})
  t.after(() => slow.close())
  const timed = await startBerth(t, [slow.url], { upstream: { timeouts: { idle: '200ms' } } })
  assert.equal((await request(timed, '/v2/')).status, 504)
})

test('the last server\'s 5xx passes through as it is; statuses not listed are never retried', async (t) => {
  const a = await startUpstream((req, res) => { res.writeHead(503, { 'x-from': 'a' }); res.end('a is busy') })
  const b = await startUpstream((req, res) => { res.writeHead(500, { 'x-from': 'b' }); res.end('b broke') })
  t.after(() => a.close())
  t.after(() => b.close())
  const berth = await startBerth(t, [a.url, b.url])
  const res = await request(berth, '/v2/x/manifests/1')
  assert.equal(res.status, 500)
  assert.equal(res.body.toString(), 'b broke')
  assert.equal(a.seen.length + b.seen.length, 2)
  const none = await startBerth(t, [a.url, b.url], { upstream: { nextUpstream: { on: ['error'] } } })
  const r2 = await request(none, '/v2/x/manifests/1')
  assert.ok([500, 503].includes(r2.status))
  assert.equal(a.seen.length + b.seen.length, 3, 'one server only')
})

test('replay rules: an upload whose body started is never replayed; a sent POST only with nonIdempotent', async (t) => {
  // a reads part of the body, then drops the connection
  const a = await startUpstream((req) => { req.once('data', () => req.socket.destroy()) })
  const b = await ok('b')
  t.after(() => a.close())
  t.after(() => b.close())
  const berth = await startBerth(t, [a.url, b.url])
  const res = await request(berth, '/v2/x/blobs/uploads/u', { method: 'PATCH', body: Buffer.alloc(256 * 1024), headers: { 'content-length': 256 * 1024 } })
  assert.equal(res.status, 502)
  assert.equal(b.seen.length, 0, 'the upload was not replayed')

  // a answers 503 to everything: a POST without body was sent, so it is not retried by default
  const busy = await startUpstream((req, res) => { req.resume(); res.writeHead(503); res.end('busy') })
  t.after(() => busy.close())
  const strict = await startBerth(t, [busy.url, b.url])
  assert.equal((await request(strict, '/v2/x/blobs/uploads/', { method: 'POST', headers: { 'content-length': 0 } })).status, 503)
  assert.equal(b.seen.length, 0)
  assert.equal((await request(strict, '/v2/x/manifests/latest', { method: 'GET' })).status, 200, 'a GET is retried')
  assert.equal((await request(strict, '/v2/x/manifests/sha256:abc', { method: 'DELETE' })).status, 200, 'a DELETE is retried')
  const lax = await startBerth(t, [busy.url, b.url], { upstream: { nextUpstream: { nonIdempotent: true } } })
  assert.equal((await request(lax, '/v2/x/blobs/uploads/', { method: 'POST', headers: { 'content-length': 0 } })).status, 200)

  // an upload to a server that refuses the connection never started: it goes to the next one
  const fresh = await ok('fresh')
  t.after(() => fresh.close())
  const refused = await startBerth(t, [await deadUrl(), fresh.url])
  const up = await request(refused, '/v2/x/blobs/uploads/u', { method: 'PATCH', body: 'data', headers: { 'content-length': 4 } })
  assert.equal(up.status, 200)
  assert.equal(up.body.toString(), 'fresh')
})

test('tries and the time budget bound the retries', async (t) => {
  const b = await ok('b')
  t.after(() => b.close())
  const one = await startBerth(t, [await deadUrl(), b.url], { upstream: { nextUpstream: { tries: 1 } } })
  // smooth round robin sends the first request to the dead server
  assert.equal((await request(one, '/v2/')).status, 502)
  // a server that takes 100 ms to fail: the 20 ms budget is spent, and the next server is never asked
  const sockets = new Set<net.Socket>()
  const slowFail = net.createServer((s) => { sockets.add(s); setTimeout(() => s.destroy(), 100) })
  await new Promise<void>((resolve) => slowFail.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of sockets) s.destroy(); slowFail.close() })
  const asked = b.seen.length
  const budget = await startBerth(t, [`https://127.0.0.1:${(slowFail.address() as net.AddressInfo).port}`, b.url], { upstream: { nextUpstream: { timeout: '20ms' } } })
  const r = await request(budget, '/v2/')
  assert.equal(r.status, 502)
  assert.equal(b.seen.length, asked, 'nothing reached the second server')
  const unbounded = await startBerth(t, [`https://127.0.0.1:${(slowFail.address() as net.AddressInfo).port}`, b.url])
  assert.equal((await request(unbounded, '/v2/')).status, 200, 'without the budget the second server answers')
})

function blobServer (blob: Buffer, opts: { dieAt?: number, corrupt?: boolean } = {}): Promise<Upstream> {
  return startUpstream((req, res) => {
    const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''))
    const body = opts.corrupt ? Buffer.alloc(blob.length, 7) : blob
    if (range) {
      const from = Number(range[1])
      res.writeHead(206, { 'content-length': blob.length - from, 'content-range': `bytes ${from}-${blob.length - 1}/${blob.length}` })
      res.end(body.subarray(from))
      return
    }
    res.writeHead(200, { 'content-length': blob.length, 'docker-content-digest': 'x' })
    if (opts.dieAt === undefined) { res.end(body); return }
    res.write(body.subarray(0, opts.dieAt), () => setTimeout(() => res.socket?.destroy(), 30))
  })
}

async function download (berth: import('../helper.js').Berth, path: string): Promise<{ status: number, body: Buffer, outcome: string }> {
  const req = https.get(`${berth.url}${path}`, { ca: berth.ca, servername: 'localhost', agent: false })
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  const chunks: Buffer[] = []
  res.on('data', (c: Buffer) => chunks.push(c))
  const outcome = await new Promise<string>((resolve) => {
    res.on('end', () => resolve(res.complete ? 'complete' : 'cut'))
    res.on('error', () => resolve('cut'))
    res.on('aborted', () => resolve('cut'))
  })
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks), outcome }
}

test('a blob download whose server dies mid-body continues from another server with Range; the client sees one whole body', async (t) => {
  const blob = randomBytes(3 * 1024 * 1024 + 17)
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  const dying = await blobServer(blob, { dieAt: 1024 * 1024 })
  const healthy = await blobServer(blob)
  t.after(() => dying.close())
  t.after(() => healthy.close())
  const berth = await startBerth(t, [dying.url, healthy.url])
  const r = await download(berth, `/v2/a/blobs/${digest}`)
  assert.equal(r.status, 200)
  assert.equal(r.outcome, 'complete')
  assert.equal(r.body.length, blob.length)
  assert.ok(r.body.equals(blob))
  assert.equal(healthy.seen.at(-1)?.headers.range, `bytes=${1024 * 1024}-`)
  await berth.close()
  assert.match(readFileSync(join(berth.dir, 'error.log'), 'utf8'), /download resumed from another server and verified/)
})

test('a resumed download whose pieces do not add up to the digest is cut off, never delivered clean', async (t) => {
  const blob = randomBytes(2 * 1024 * 1024)
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  const dying = await blobServer(blob, { dieAt: 512 * 1024 })
  const corrupt = await blobServer(blob, { corrupt: true })
  t.after(() => dying.close())
  t.after(() => corrupt.close())
  const berth = await startBerth(t, [dying.url, corrupt.url])
  const r = await download(berth, `/v2/a/blobs/${digest}`)
  assert.equal(r.outcome, 'cut')
  // and a tag-addressed manifest (mutable: another server may hold other bytes for it) is never resumed
  const dyingTag = await blobServer(blob, { dieAt: 512 * 1024 })
  const other = await blobServer(blob)
  t.after(() => dyingTag.close())
  t.after(() => other.close())
  const tags = await startBerth(t, [dyingTag.url, other.url])
  const tag = await download(tags, '/v2/a/manifests/latest')
  assert.equal(tag.outcome, 'cut')
  assert.equal(other.seen.length, 0, 'nothing was asked of the other server')
})
