// Reload: certificates for new connections only, htpasswd and upstream changes applied, a broken config
// refused while the old one serves, and no pull failing while it happens.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import https from 'node:https'
import { once } from 'node:events'
import { copyFileSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { makeCerts } from '../../src/certs.js'
import { loadConfig } from '../../src/config/load.js'
import { createLogs } from '../../src/logging.js'
import { buildApp } from '../../src/app.js'
import { startUpstream, startBerth, request, tempDir, testCerts, waitFor, spawnBerth, basic, htpasswdFile } from '../helper.js'

async function fingerprintOf (port: number, ca: Buffer[]): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? ''
  socket.destroy()
  return fp
}

test('reload: new certificates for new connections, an open one keeps its own and completes its transfer; users and upstreams change', async (t) => {
  const dir = tempDir(t)
  const a = await makeCerts({ hosts: ['localhost'], ips: ['127.0.0.1'], out: join(dir, 'a') })
  const b = await makeCerts({ hosts: ['localhost'], ips: ['127.0.0.1'], out: join(dir, 'b') })
  mkdirSync(join(dir, 'live'))
  copyFileSync(a.files.cert, join(dir, 'live', 'server.crt'))
  copyFileSync(a.files.key, join(dir, 'live', 'server.key'))
  writeFileSync(join(dir, 'htpasswd'), execFileSync('htpasswd', ['-nbB', '-C', '4', 'old-user', 'pw'], { encoding: 'utf8' }))
  const slowChunks = 20
  const up1 = await startUpstream((req, res) => {
    if (req.url?.includes('slow')) {
      res.writeHead(200, { 'content-length': slowChunks * 1000 })
      let i = 0
      const tick = setInterval(() => { res.write(Buffer.alloc(1000, 1)); if (++i === slowChunks) { clearInterval(tick); res.end() } }, 50)
      return
    }
    res.end('up1')
  }, { plain: true })
  const up2 = await startUpstream((req, res) => res.end('up2'), { plain: true })
  t.after(() => up1.close())
  t.after(() => up2.close())
  const file = join(dir, 'berth.yaml')
  const write = (upstream: string, htpasswd: string) => writeFileSync(file, [
    'listen: { host: 127.0.0.1, port: 0 }',
    'tls: { cert: live/server.crt, key: live/server.key }',
    `upstream: { servers: [ { url: "${upstream}" } ] }`,
    `auth: { htpasswd: ${htpasswd} }`,
    'log: { access: access.log, error: error.log }'
  ].join('\n'))
  write(up1.url, 'htpasswd')
  const config = await loadConfig(file)
  const logs = await createLogs(config)
  const app = await buildApp(config, { logs })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => app.close())
  const port = (app.server.address() as AddressInfo).port
  const cas = [readFileSync(a.files.caCert), readFileSync(b.files.caCert)]
  const fpA = new X509Certificate(readFileSync(a.files.cert)).fingerprint256
  const fpB = new X509Certificate(readFileSync(b.files.cert)).fingerprint256
  assert.equal(await fingerprintOf(port, cas), fpA)

  // a slow download on a connection opened before the reload
  const req = https.get({ host: '127.0.0.1', port, path: '/v2/r/blobs/slow', ca: cas, servername: 'localhost', agent: false, headers: { authorization: basic('old-user', 'pw') } })
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  const oldFp = (res.socket as tls.TLSSocket).getPeerX509Certificate()?.fingerprint256
  let received = 0
  res.on('data', (c: Buffer) => { received += c.length })
  const ended = new Promise<boolean>((resolve) => { res.on('end', () => resolve(res.complete)); res.on('error', () => resolve(false)) })

  copyFileSync(b.files.cert, join(dir, 'live', 'server.crt'))
  copyFileSync(b.files.key, join(dir, 'live', 'server.key'))
  writeFileSync(join(dir, 'htpasswd2'), execFileSync('htpasswd', ['-nbm', 'new-user', 'pw2'], { encoding: 'utf8' }))
  write(up2.url, 'htpasswd2')
  const notes = await app.reload(await loadConfig(file))
  assert.deepEqual(notes, [])

  assert.equal(await fingerprintOf(port, cas), fpB, 'a new connection gets the new certificate')
  assert.equal(oldFp, fpA)
  assert.equal(await ended, true, 'the open connection completed its transfer')
  assert.equal(received, slowChunks * 1000)
  const get = (authorization: string) => new Promise<{ status: number, body: string }>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/v2/', ca: cas, servername: 'localhost', agent: false, headers: { authorization } }, (r) => {
      let body = ''
      r.on('data', (c: Buffer) => { body += c.toString() })
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }))
    }).on('error', reject)
  })
  assert.deepEqual(await get(basic('new-user', 'pw2')), { status: 200, body: 'up2' }, 'new users and the new upstream apply')
  assert.equal((await get(basic('old-user', 'pw'))).status, 401)
  assert.equal(app.reloads.ok, 1)
})

test('reload keeps health state for servers that stay; a listener change is reported as needing a restart', async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const up1 = await startUpstream((req, res) => res.end('1'), { plain: true })
  const up2 = await startUpstream((req, res) => res.end('2'), { plain: true })
  t.after(() => up1.close())
  t.after(() => up2.close())
  const file = join(dir, 'berth.yaml')
  const write = (servers: string[], port: number) => writeFileSync(file, `listen: { host: 127.0.0.1, port: ${port} }\ntls: { cert: ${c.cert}, key: ${c.key} }\nupstream: { servers: [ ${servers.map((u) => `{ url: "${u}" }`).join(', ')} ] }\nlog: { access: access.log, error: error.log }\n`)
  write([up1.url], 0)
  const config = await loadConfig(file)
  const app = await buildApp(config, { logs: await createLogs(config) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => app.close())
  const s1 = app.upstreams.servers[0]
  for (let i = 0; i < 3; i++) s1.recordFailure()
  s1.recordProbe({ ok: false, at: Date.now(), ms: 1 }, 1, 1)
  write([up1.url, up2.url], 1234)
  const notes = await app.reload(await loadConfig(file))
  assert.deepEqual(notes, ['listen: the listener address changes only with a restart'])
  assert.equal(app.berthConfig.listen.port, 0, 'the running listener is what berthConfig says')
  assert.equal(app.upstreams.servers.length, 2)
  assert.equal(app.upstreams.servers[0].failures, 3)
  assert.equal(app.upstreams.servers[0].state, 'down')
  assert.equal(app.upstreams.servers[0].dispatcher, s1.dispatcher, 'kept-alive connections kept')
  // turning TLS off is refused whole
  writeFileSync(file, `listen: { host: 127.0.0.1, port: 0 }\nupstream: { servers: [ { url: "${up2.url}" } ] }\n`)
  await assert.rejects(app.reload(await loadConfig(file)), /reload refused: tls: turning TLS on or off needs a restart/)
  assert.equal(app.upstreams.servers.length, 2)
  assert.equal(app.reloads.failed, 1)
})

test('turning auth on or off is refused whole: anonymous clients keep what they had, and nothing else of that reload applies', async (t) => {
  const up1 = await startUpstream((req, res) => res.end('1'), { plain: true })
  const up2 = await startUpstream((req, res) => res.end('2'), { plain: true })
  t.after(() => up1.close())
  t.after(() => up2.close())
  const htpasswd = htpasswdFile(t, ['alice'])
  for (const from of ['without auth', 'with auth']) {
    const berth = await startBerth(t, [up1.url], from === 'with auth' ? { auth: { htpasswd } } : {})
    const file = join(berth.dir, 'berth.yaml')
    const anonymous = async () => { const r = await request(berth, '/v2/a/manifests/v1'); return `${r.status} ${r.status === 200 ? r.body.toString() : ''}`.trim() }
    const before = await anonymous()
    assert.equal(before, from === 'with auth' ? '401' : '200 1')
    let yaml = readFileSync(file, 'utf8').replace(up1.url, up2.url)
    yaml = from === 'with auth' ? yaml.replace(/^auth:\n(?: {2}.*\n)+/m, '') : `${yaml}auth: { htpasswd: ${htpasswd} }\n`
    writeFileSync(file, yaml)
    await assert.rejects(berth.app.reload(await loadConfig(file)), /turning authentication on or off needs a restart/)
    assert.equal(await anonymous(), before, `${from}: anonymous requests unchanged`)
    assert.equal(berth.app.upstreams.servers[0].url, up1.url, `${from}: the upstream list unchanged`)
  }
})

test('a reload applies all parts or none: a part that cannot prepare leaves every part as it was', async (t) => {
  const up1 = await startUpstream((req, res) => res.end('1'), { plain: true })
  const up2 = await startUpstream((req, res) => res.end('2'), { plain: true })
  t.after(() => up1.close())
  t.after(() => up2.close())
  const berth = await startBerth(t, [up1.url], { auth: { htpasswd: htpasswdFile(t, ['alice']) } })
  const file = join(berth.dir, 'berth.yaml')
  const bobs = htpasswdFile(t, ['bob'])
  const yaml = readFileSync(file, 'utf8').replace(up1.url, up2.url).replace(/htpasswd: .*/, `htpasswd: ${bobs}`)
  writeFileSync(file, yaml)
  const next = await loadConfig(file) // valid when read
  writeFileSync(bobs, 'bob:garbage\n') // and broken when the auth part prepares
  await assert.rejects(berth.app.reload(next), /garbage|bob/)
  const as = async (user: string) => { const r = await request(berth, '/v2/a/manifests/v1', { headers: { authorization: basic(user) } }); return `${r.status} ${r.status === 200 ? r.body.toString() : ''}`.trim() }
  assert.equal(await as('alice'), '200 1', 'the old users and the old upstream')
  assert.equal(await as('bob'), '401')
  assert.equal(berth.app.reloads.failed, 1)
})

test('SIGHUP: a broken config is refused and the old one keeps serving; 200 concurrent pulls across reloads all succeed', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const blob = Buffer.alloc(256 * 1024, 3)
  // Each answer waits until the test lets it go: the pulls are provably in flight when the signals land.
  let holding = false
  const held: Array<() => void> = []
  const up = await startUpstream((req, res) => {
    const answer = () => { res.writeHead(200, { 'content-length': blob.length }); res.end(blob) }
    if (holding) held.push(answer); else answer()
  }, { plain: true })
  t.after(() => up.close())
  const file = join(dir, 'berth.yaml')
  const good = `listen: { host: 127.0.0.1, port: 0 }\ntls: { cert: ${c.cert}, key: ${c.key} }\nupstream: { servers: [ { url: "${up.url}" } ] }\n`
  writeFileSync(file, good)
  const { child, port, output } = await spawnBerth(t, ['--config', file])
  const ca = readFileSync(c.caCert)
  const agent = new https.Agent({ ca, servername: 'localhost', keepAlive: true, maxSockets: 200 })
  t.after(() => agent.destroy())
  const pull = () => new Promise<number>((resolve) => {
    https.get({ host: '127.0.0.1', port, path: '/v2/r/blobs/sha256:x', agent }, (res) => {
      let n = 0
      res.on('data', (d: Buffer) => { n += d.length })
      res.on('end', () => resolve(res.statusCode === 200 && res.complete && n === blob.length ? 1 : 0))
      res.on('error', () => resolve(0))
    }).on('error', () => resolve(0))
  })

  writeFileSync(file, good + 'limits: { maxBodySize: lots }\n')
  child.kill('SIGHUP')
  await waitFor(() => output().includes('reload refused'), 5000, 'refusal logged')
  assert.match(output(), /limits\.maxBodySize: expected a size/)
  assert.equal(await pull(), 1, 'the old configuration still serves')

  writeFileSync(file, good + 'limits: { maxBodySize: 1g }\n')
  holding = true
  const pulls = Array.from({ length: 200 }, pull)
  await waitFor(() => held.length === 200, 10_000, '200 pulls waiting at the upstream')
  for (let i = 0; i < 3; i++) {
    child.kill('SIGHUP')
    await waitFor(() => (output().match(/"configuration reloaded"/g) ?? []).length >= i + 1, 5000, `reload ${i + 1}`)
  }
  holding = false
  for (const answer of held.splice(0)) answer()
  const ok = (await Promise.all(pulls)).reduce((a, b) => a + b, 0)
  assert.equal(ok, 200, 'every pull in flight across three reloads completed')
  child.kill('SIGTERM')
  assert.deepEqual(await once(child, 'exit'), [0, null])
})
