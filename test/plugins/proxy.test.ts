import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { startBerth, startUpstream, request, registryError, tempDir, testCerts, waitFor, deferred, bomb } from '../helper.js'
import tls from 'node:tls'
import { makeCerts } from '../../src/certs.js'

test('the client receives the first bytes of a download before the upstream has sent the last', async (t) => {
  const firstArrived = deferred()
  let upstreamFinished = false
  const up = await startUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.write(Buffer.alloc(64 * 1024, 1))
    firstArrived.promise.then(() => { upstreamFinished = true; res.end(Buffer.alloc(1024, 2)) })
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const req = https.get(`${berth.url}/v2/a/blobs/sha256:x`, { ca: berth.ca, agent: false })
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  let received = 0
  let sawDataBeforeEnd = false
  res.on('data', (c: Buffer) => {
    if (received === 0) { sawDataBeforeEnd = !upstreamFinished; firstArrived.resolve() }
    received += c.length
  })
  await Promise.race([once(res, 'end'), bomb(5000, 'download')])
  assert.equal(sawDataBeforeEnd, true)
  assert.equal(received, 64 * 1024 + 1024)
})

test('the upstream receives the first bytes of an upload before the client has sent the last', async (t) => {
  const firstSeen = deferred()
  const up = await startUpstream((req, res) => {
    const hash = createHash('sha256')
    req.once('data', () => firstSeen.resolve())
    req.on('data', (c: Buffer) => hash.update(c))
    req.on('end', () => { res.writeHead(201, { 'x-digest': hash.digest('hex') }); res.end() })
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const req = https.request(`${berth.url}/v2/a/blobs/uploads/u1`, { method: 'PATCH', ca: berth.ca, agent: false, headers: { 'content-type': 'application/octet-stream' } })
  const first = Buffer.alloc(100_000, 7)
  const last = Buffer.alloc(50_000, 9)
  req.write(first) // chunked: no Content-Length
  await Promise.race([firstSeen.promise, bomb(5000, 'first upload bytes at the upstream')])
  req.end(last)
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  res.resume()
  assert.equal(res.statusCode, 201)
  assert.equal(res.headers['x-digest'], createHash('sha256').update(first).update(last).digest('hex'))
})

test('headers: Host unchanged, X-Real-IP and X-Forwarded-* set by berth, hop-by-hop dropped both ways, a Location naming the client\'s host unchanged', async (t) => {
  const up = await startUpstream((req, res) => {
    res.writeHead(202, {
      location: 'https://registry.example.com:8443/v2/a/blobs/uploads/abc?_state=x',
      connection: 'keep-alive, x-upstream-secret',
      'x-upstream-secret': 'hidden',
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      'x-kept': 'yes'
    })
    res.end()
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const res = await request(berth, '/v2/a/blobs/uploads/', {
    method: 'POST',
    headers: {
      host: 'registry.example.com:8443',
      'x-real-ip': '6.6.6.6',
      'x-forwarded-for': '9.9.9.9',
      'x-forwarded-proto': 'gopher',
      connection: 'keep-alive, x-client-secret',
      'x-client-secret': 'hidden',
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      te: 'trailers',
      trailer: 'x-foo',
      upgrade: 'h2c',
      'x-custom': 'kept',
      authorization: 'Basic dXNlcjpwYXNz'
    }
  })
  assert.equal(res.status, 202)
  const seen = up.seen[0].headers
  assert.equal(seen.host, 'registry.example.com:8443')
  assert.equal(seen['x-real-ip'], '127.0.0.1')
  assert.equal(seen['x-forwarded-for'], '127.0.0.1', 'a client\'s own X-Forwarded-For is dropped')
  assert.equal(seen['x-forwarded-proto'], 'https')
  assert.equal(seen['x-custom'], 'kept')
  assert.equal(seen.authorization, 'Basic dXNlcjpwYXNz')
  for (const h of ['x-client-secret', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']) assert.equal(seen[h], undefined, h)
  assert.notEqual(seen.connection, 'keep-alive, x-client-secret')
  assert.equal(res.headers.location, 'https://registry.example.com:8443/v2/a/blobs/uploads/abc?_state=x')
  assert.equal(res.headers['x-kept'], 'yes')
  for (const h of ['x-upstream-secret', 'proxy-connection']) assert.equal(res.headers[h], undefined, h)
  assert.notEqual(res.headers['keep-alive'], 'timeout=5')
})

test('forwarding headers: dropped from clients, believed and passed on from trusted proxies only', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  t.after(() => up.close())
  const send = (berth: Awaited<ReturnType<typeof startBerth>>, headers: Record<string, string | string[]>) => new Promise<void>((resolve, reject) => {
    const req = https.request(`${berth.url}/v2/`, { ca: berth.ca, agent: false, servername: 'localhost', headers }, (res) => { res.resume(); res.on('end', resolve) })
    req.on('error', reject)
    req.end()
  })
  const spoof = {
    'x-forwarded-for': ['1.1.1.1', '2.2.2.2'],
    'x-forwarded-host': 'evil.example',
    'x-forwarded-proto': 'http',
    'x-forwarded-port': '80',
    'x-real-ip': '6.6.6.6',
    forwarded: 'for=6.6.6.6;host=evil.example;proto=http'
  }
  const untrusting = await startBerth(t, [up.url])
  await send(untrusting, spoof)
  let seen = up.seen.at(-1)?.headers ?? {}
  assert.deepEqual([seen['x-forwarded-for'], seen['x-real-ip'], seen['x-forwarded-proto']], ['127.0.0.1', '127.0.0.1', 'https'])
  for (const h of ['x-forwarded-host', 'x-forwarded-port', 'forwarded']) assert.equal(seen[h], undefined, h)
  assert.match(untrusting.accessLog(), /^127\.0\.0\.1 - /m)

  // behind a load balancer at 127.0.0.1: its headers are believed; the client is the nearest untrusted hop
  const trusting = await startBerth(t, [up.url], { trustedProxies: ['127.0.0.1', '10.0.0.0/8'] })
  await send(trusting, { ...spoof, 'x-forwarded-for': ['1.1.1.1', '2.2.2.2, 10.1.2.3'], 'x-forwarded-host': 'registry.example.com' })
  seen = up.seen.at(-1)?.headers ?? {}
  assert.equal(seen['x-forwarded-for'], '1.1.1.1, 2.2.2.2, 10.1.2.3, 127.0.0.1')
  assert.equal(seen['x-real-ip'], '2.2.2.2')
  assert.equal(seen['x-forwarded-proto'], 'http')
  assert.equal(seen['x-forwarded-host'], 'registry.example.com')
  assert.equal(seen.forwarded, 'for=6.6.6.6;host=evil.example;proto=http')
  assert.equal(seen['x-forwarded-port'], undefined, 'only For, Proto, Host and Forwarded pass')
  assert.match(trusting.accessLog(), /^2\.2\.2\.2 - /m)
  await send(trusting, { 'x-forwarded-proto': 'gopher', 'x-forwarded-host': 'a b' })
  seen = up.seen.at(-1)?.headers ?? {}
  assert.deepEqual([seen['x-forwarded-proto'], seen['x-forwarded-host'], seen['x-forwarded-for']], ['https', undefined, '127.0.0.1'], 'malformed values are not passed on')
})

test('every method reaches the upstream with its body; upstream connections are kept alive and reused', async (t) => {
  let connections = 0
  const up = await startUpstream((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`))
  })
  up.server.on('secureConnection', () => { connections++ })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    const body = method === 'GET' || method === 'DELETE' || method === 'OPTIONS' ? undefined : `body-of-${method}`
    const res = await request(berth, '/v2/r/manifests/latest?x=1', { method, body, headers: body ? { 'content-length': Buffer.byteLength(body) } : {} })
    assert.equal(res.status, 200)
    assert.equal(res.body.toString(), `${method} /v2/r/manifests/latest?x=1 ${body ?? ''}`)
  }
  assert.equal(connections, 1)
  const head = await request(berth, '/v2/r/manifests/latest', { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal(connections, 1, 'a HEAD keeps the connection too (next test)')
})

test('HEAD requests keep their upstream connection too (undici would close it after each one)', async (t) => {
  let connections = 0
  const up = await startUpstream((req, res) => {
    res.setHeader('content-length', 1234)
    res.setHeader('docker-content-digest', 'sha256:abc')
    res.setHeader('link', ['<a>; rel="x"', '<b>; rel="y"'])
    res.statusCode = req.url?.includes('missing') === true ? 404 : 200
    res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1234))
  })
  up.server.on('secureConnection', () => { connections++ })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  for (let i = 0; i < 5; i++) {
    const res = await request(berth, `/v2/r/manifests/${i === 3 ? 'missing' : 'latest'}`, { method: 'HEAD', headers: { host: 'registry.example.com' } })
    assert.equal(res.status, i === 3 ? 404 : 200)
    assert.equal(res.headers['content-length'], '1234')
    assert.equal(res.headers['docker-content-digest'], 'sha256:abc')
    assert.equal(res.headers.link, '<a>; rel="x", <b>; rel="y"')
    assert.equal(res.body.length, 0)
  }
  assert.equal(connections, 1, 'one kept-alive connection for all five HEADs')
  assert.equal(up.seen.filter((r) => r.method === 'HEAD' && r.headers.host === 'registry.example.com' && r.headers['x-forwarded-proto'] === 'https').length, 5)
})

test('Content-Length over the limit: 413 before any upstream connection, the body is not read', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { limits: { maxBodySize: '1m' } })
  const res = await request(berth, '/v2/a/blobs/uploads/u?digest=sha256:x', { method: 'PUT', headers: { 'content-length': String(1024 * 1024 + 1) } })
  assert.equal(res.status, 413)
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
  assert.equal(res.headers.connection, 'close')
  assert.equal(registryError(res.body).code, 'SIZE_INVALID')
  assert.match(registryError(res.body).message, /1 MB/)
  assert.equal(up.seen.length, 0)
})

test('a chunked body that passes the limit: upstream request destroyed at once, client gets 413', async (t) => {
  const upstreamOutcome = deferred<string>()
  let upstreamBytes = 0
  const up = await startUpstream((req, res) => {
    req.on('data', (c: Buffer) => { upstreamBytes += c.length })
    req.on('end', () => { upstreamOutcome.resolve('clean end'); res.end() })
    req.on('close', () => { if (!req.complete) upstreamOutcome.resolve('destroyed') })
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { limits: { maxBodySize: '256k' } })
  const req = https.request(`${berth.url}/v2/a/blobs/uploads/u`, { method: 'PATCH', ca: berth.ca, agent: false })
  req.on('error', () => {})
  const responded = once(req, 'response')
  for (let i = 0; i < 8; i++) req.write(Buffer.alloc(64 * 1024))
  const [res] = await Promise.race([responded, bomb(5000, '413')]) as [import('node:http').IncomingMessage]
  const chunks: Buffer[] = []
  res.on('data', (c: Buffer) => chunks.push(c))
  await once(res, 'end')
  req.destroy()
  assert.equal(res.statusCode, 413)
  assert.equal(res.headers.connection, 'close')
  assert.equal(registryError(Buffer.concat(chunks)).code, 'SIZE_INVALID')
  assert.equal(await Promise.race([upstreamOutcome.promise, bomb(3000, 'upstream outcome')]), 'destroyed')
  assert.ok(upstreamBytes <= 256 * 1024, `upstream saw ${upstreamBytes} bytes`)
})

test('a chunked body of exactly maxBodySize passes whole; one byte more is cut', async (t) => {
  const got: number[] = []
  const up = await startUpstream((req, res) => {
    let n = 0
    req.on('data', (c: Buffer) => { n += c.length })
    req.on('end', () => { got.push(n); res.writeHead(202); res.end() })
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { limits: { maxBodySize: '1k' } })
  const send = (size: number) => new Promise<number>((resolve) => {
    const req = https.request(`${berth.url}/v2/a/blobs/uploads/u`, { method: 'PATCH', ca: berth.ca, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', () => resolve(0))
    req.write(Buffer.alloc(size - 24))
    req.end(Buffer.alloc(24)) // chunked: no Content-Length
  })
  assert.equal(await send(1024), 202)
  assert.deepEqual(got, [1024])
  assert.equal(await send(1025), 413)
  assert.deepEqual(got, [1024], 'the upstream never saw a clean end of the longer one')
})

test('a dead upstream gives 502 with the registry error body, quickly', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  const deadUrl = up.url
  await up.close()
  const berth = await startBerth(t, [deadUrl])
  const res = await request(berth, '/v2/')
  assert.equal(res.status, 502)
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
  assert.match(String(res.headers['content-type']), /application\/json/)
  assert.deepEqual(registryError(res.body), { code: 'UNAVAILABLE', message: 'upstream registry unavailable', detail: null } as never)
  // the process keeps serving
  assert.equal((await request(berth, '/v2/')).status, 502)
})

test('an upstream that dies mid-body ends the client connection abruptly, never a clean short response', async (t) => {
  const up = await startUpstream((req, res) => {
    res.writeHead(200, { 'content-length': '1000000' })
    res.write(Buffer.alloc(10_000), () => setTimeout(() => res.socket?.destroy(), 20))
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const req = https.get(`${berth.url}/v2/a/blobs/sha256:abc`, { ca: berth.ca, agent: false })
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  assert.equal(res.statusCode, 200)
  let received = 0
  res.on('data', (c: Buffer) => { received += c.length })
  const outcome = await Promise.race([
    once(res, 'end').then(() => 'clean end'),
    once(res, 'aborted').then(() => 'aborted'),
    once(res, 'error').then(() => 'aborted'),
    bomb(5000, 'client outcome')
  ])
  assert.equal(outcome, 'aborted')
  assert.ok(received < 1_000_000)
  // same for a chunked response
  const up2 = await startUpstream((req2, res2) => {
    res2.writeHead(200)
    res2.write(Buffer.alloc(10_000), () => setTimeout(() => res2.socket?.destroy(), 20))
  })
  t.after(() => up2.close())
  const berth2 = await startBerth(t, [up2.url])
  const r2 = await request(berth2, '/v2/a/blobs/sha256:abc').then(() => 'clean end', () => 'aborted')
  assert.equal(r2, 'aborted')
})

test('upstream TLS is verified: a certificate from another CA gives 502 unless verify is off', async (t) => {
  const other = await makeCerts({ hosts: ['localhost'], ips: ['127.0.0.1'], out: join(tempDir(t), 'other') })
  const server = https.createServer({ cert: readFileSync(other.files.cert), key: readFileSync(other.files.key) }, (req, res) => res.end('ok'))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `https://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`
  const berth = await startBerth(t, [url])
  const res = await request(berth, '/v2/')
  assert.equal(res.status, 502)
  assert.equal(registryError(res.body).code, 'UNAVAILABLE')
  assert.equal((await request(berth, '/v2/', { method: 'HEAD' })).status, 502, 'HEAD: verified too')
  const off = await startBerth(t, [url], { upstream: { tls: { verify: false } } })
  assert.equal((await request(off, '/v2/')).status, 200)
  assert.equal((await request(off, '/v2/', { method: 'HEAD' })).status, 200)
})

test('the upstream certificate is checked against the upstream URL, whatever Host the client sends', async (t) => {
  const up = await startUpstream((req, res) => res.end(req.headers.host))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url.replace('127.0.0.1', 'localhost')])
  for (const host of ['registry.example.com', 'other.example.org:443', 'localhost']) {
    const res = await request(berth, '/v2/', { headers: { host } })
    assert.equal(res.status, 200, host)
    assert.equal(res.body.toString(), host)
    assert.equal((await request(berth, '/v2/', { method: 'HEAD', headers: { host } })).status, 200, `HEAD ${host}`)
  }
})

test('no Authorization value reaches the access or error log', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  const dead = up.url
  await up.close()
  const berth = await startBerth(t, [dead])
  const token = Buffer.from('alice:s3cret-password').toString('base64')
  await request(berth, '/v2/', { headers: { authorization: `Basic ${token}` } })
  await berth.close()
  const logs = berth.accessLog() + readFileSync(join(berth.dir, 'error.log'), 'utf8')
  assert.match(logs, /no upstream could take the request/)
  assert.doesNotMatch(logs, new RegExp(token))
  assert.doesNotMatch(logs, /s3cret/)
})

test('only the idle timeout ends a transfer: a slow body longer than it succeeds, a silence longer than it fails', async (t) => {
  const up = await startUpstream((req, res) => {
    if (req.url?.includes('slow-headers')) { setTimeout(() => res.end('late'), 1500); return }
    res.writeHead(200, { 'content-length': 10 })
    let i = 0
    const tick = setInterval(() => { res.write('x'); if (++i === 10) { clearInterval(tick); res.end() } }, 150)
  })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { upstream: { tls: { ca: (await testCerts()).caCert }, timeouts: { idle: '500ms' } } })
  const slow = await request(berth, '/v2/a/blobs/sha256:slow')
  assert.equal(slow.status, 200)
  assert.equal(slow.body.toString(), 'x'.repeat(10)) // 1.5 s in all, three times the idle timeout
  const silent = await request(berth, '/v2/a/blobs/sha256:slow-headers')
  assert.equal(silent.status, 504)
  assert.equal(registryError(silent.body).code, 'UNAVAILABLE')
})

test('requests that arrive on an open connection while berth closes get a registry-shaped 503 and Connection: close', async (t) => {
  const up = await startUpstream((req, res) => { req.resume(); req.on('end', () => res.end('done')) })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const socket = tls.connect({ host: '127.0.0.1', port: berth.port, ca: berth.ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  let raw = ''
  socket.on('data', (c: Buffer) => { raw += c.toString() })
  // An upload in flight on this connection when close() is called; then a second request behind it.
  socket.write('PATCH /v2/a/blobs/uploads/u HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello')
  await waitFor(() => up.seen.length === 1, 5000, 'upload at the upstream')
  const closing = berth.app.close()
  socket.write('world' + 'GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n')
  await Promise.race([once(socket, 'close'), bomb(5000, 'connection close')])
  await closing
  const [first, second] = raw.split(/(?=HTTP\/1\.1 )/)
  assert.match(first, /^HTTP\/1\.1 200 /)
  assert.match(first, /done$/)
  assert.match(second, /^HTTP\/1\.1 503 /)
  assert.match(second, /connection: close/i)
  assert.match(second, /docker-distribution-api-version: registry\/2\.0/i)
  assert.equal(registryError(Buffer.from(second.slice(second.indexOf('\r\n\r\n') + 4))).code, 'UNAVAILABLE')
  assert.equal(up.seen.length, 1)
})
