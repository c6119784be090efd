// Certificates from an ACME CA: Pebble (Debian's `pebble`) with real validation (its VA connects to
// berth), names resolved by pebble-challtestsrv's DNS to 127.0.0.1. skopeo reaches `registry.test`
// through a CONNECT relay (HTTPS_PROXY) to 127.0.0.1, so that TLS is checked against that name and
// Pebble's root alone. berth runs from the image's build (the bundle), where ACME is used in production.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import { X509Certificate, createHash } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { tempDir, testCerts, spawnBerth as spawnSources, waitFor, sleep, imageBuild } from '../helper.js'
import { freePort, requireTool, startRegistry, ociLayout, track, type Proc, fileContext } from './fixtures.js'

interface Pebble { directory: string, root: string, stop: () => Promise<void> }

function proc (t: { after: (fn: () => Promise<void> | void) => void }, command: string, args: string[], env: Record<string, string> = {}): Proc {
  return track(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }), t)
}

/** Pebble and its DNS; `httpPort` and `tlsPort` are where its VA validates (berth's listeners). */
async function startPebble (t: { after: (fn: () => Promise<void> | void) => void }, dir: string, httpPort: number, tlsPort: number): Promise<Pebble> {
  requireTool('pebble', 'pebble')
  const c = await testCerts()
  const [dns, listen, management, mgmtDns] = await Promise.all([freePort(), freePort(), freePort(), freePort()])
  const dnsProc = proc(t, 'pebble-challtestsrv', ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dns}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${mgmtDns}`])
  const config = join(dir, 'pebble.json')
  writeFileSync(config, JSON.stringify({
    pebble: { listenAddress: `127.0.0.1:${listen}`, managementListenAddress: `127.0.0.1:${management}`, certificate: c.cert, privateKey: c.key, httpPort, tlsPort, ocspResponderURL: '', externalAccountBindingRequired: false }
  }))
  const pebble = proc(t, 'pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dns}`], { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' })
  const ca = readFileSync(c.caCert)
  let root = ''
  for (let i = 0; i < 100 && root === ''; i++) {
    root = await new Promise<string>((resolve) => {
      https.get({ host: '127.0.0.1', port: management, path: '/roots/0', ca, servername: 'localhost', agent: false }, (res) => {
        let body = ''
        res.on('data', (d) => { body += d })
        res.on('end', () => resolve(res.statusCode === 200 ? body : ''))
      }).on('error', () => resolve(''))
    })
    if (root === '') await sleep(100)
  }
  assert.notEqual(root, '', `pebble did not start:\n${pebble.output()}\n${dnsProc.output()}`)
  return { directory: `https://127.0.0.1:${listen}/dir`, root, stop: async () => { await pebble.stop(); await dnsProc.stop() } }
}

/** A CONNECT relay for HTTPS_PROXY: every tunnel goes to 127.0.0.1 on the port asked. */
async function startRelay (t: { after: (fn: () => Promise<void> | void) => void }): Promise<string> {
  const server = http.createServer((_req, res) => { res.writeHead(405); res.end() })
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const port = Number((req.url ?? '').split(':').pop())
    const upstream = net.connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.closeAllConnections(); server.close() })
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
}

function skopeoVia (proxy: string, args: string[]): Promise<{ code: number | null, out: string }> {
  requireTool('skopeo', 'skopeo')
  return new Promise((resolve) => {
    const child = spawn('skopeo', ['--insecure-policy', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HTTPS_PROXY: proxy, https_proxy: proxy, NO_PROXY: '', no_proxy: '' } })
    let out = ''
    child.stdout.on('data', (c) => { out += c })
    child.stderr.on('data', (c) => { out += c })
    child.on('exit', (code) => resolve({ code, out }))
  })
}

/** The certificate berth presents for `registry.test`, checked against Pebble's root only. */
function presented (port: number, root: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'registry.test', ca: root }, () => {
      const cert = new X509Certificate(socket.getPeerX509Certificate()?.raw ?? Buffer.alloc(0))
      socket.end()
      resolve(cert)
    })
    socket.on('error', reject)
  })
}

interface Setup { dir: string, registryUrl: string, registryCa: string, tlsPort: number, httpPort: number, pebble: Pebble, proxy: string }

// One Pebble, one registry and one relay for the file (each berth gets its own storage).
const holder = fileContext()
let s: Setup
/** bin/berth.js of the image's build, made once for the file. */
let entry = ''
before(async () => {
  const dir = tempDir(holder)
  const [tlsPort, httpPort] = await Promise.all([freePort(), freePort()])
  const registry = await startRegistry(holder, join(dir, 'registry'))
  const pebble = await startPebble(holder, dir, httpPort, tlsPort)
  const proxy = await startRelay(holder)
  s = { dir, registryUrl: registry.url, registryCa: (await testCerts()).caCert, tlsPort, httpPort, pebble, proxy }
  entry = join(imageBuild(holder), 'bin', 'berth.js')
})
const spawnBerth = (t: Parameters<typeof spawnSources>[0], args: string[]) => spawnSources(t, args, entry)

function berthConfig (name: string, acme: string[], top: string[] = []): string {
  const dir = join(s.dir, name)
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, [
    `listen: { host: 127.0.0.1, port: ${s.tlsPort} }`,
    'tls:',
    '  acme:',
    `    directory: ${s.pebble.directory}`,
    '    email: ops@registry.test',
    '    domains: [registry.test]',
    '    storage: acme',
    `    caBundle: ${s.registryCa}`,
    ...acme.map((l) => `    ${l}`),
    `upstream: { servers: [ { url: "${s.registryUrl}" } ], tls: { ca: ${s.registryCa} } }`,
    'log: { access: access.log, level: info }',
    ...top
  ].join('\n') + '\n')
  return file
}

async function issued (berth: { output: () => string }, n = 1): Promise<void> {
  await waitFor(() => berth.output().split('certificate issued and in force').length > n || /order failed/.test(berth.output()), 60_000, 'the ACME certificate')
  assert.doesNotMatch(berth.output(), /order failed/, berth.output())
}

test('tls-alpn-01: berth gets a certificate from the CA on its own TLS listener, skopeo pushes and pulls trusting only that CA; a restart reuses it', { timeout: 180_000 }, async (t) => {
  const adminPort = await freePort()
  const file = berthConfig('alpn', ['challenge: tls-alpn-01'], [`admin: { host: 127.0.0.1, port: ${adminPort} }`])
  const berth = await spawnBerth(t, ['--config', file])
  assert.match(berth.output(), /temporary self-signed certificate until the CA issues one/)
  await issued(berth)
  const cert = await presented(s.tlsPort, s.pebble.root)
  assert.equal(cert.subjectAltName, 'DNS:registry.test')
  assert.match(cert.issuer, /Pebble/)
  // the expiry and the last renewal, on /metrics and /status
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
  assert.ok(metrics.includes(`berth_certificate_expiry_seconds{domain="registry.test",source="issued"} ${Math.round(new Date(cert.validTo).getTime() / 1000)}`), metrics)
  assert.match(metrics, /berth_certificate_renewals_total\{outcome="ok"\} 1\n/)
  const status = await (await fetch(`http://127.0.0.1:${adminPort}/status.json`)).json() as { certificate: { source: string, notAfter: string, lastRenewal: { ok: boolean } } }
  assert.equal(status.certificate.source, 'issued')
  assert.equal(status.certificate.lastRenewal.ok, true)
  assert.match(await (await fetch(`http://127.0.0.1:${adminPort}/status`)).text(), /certificate \(ACME\) for registry\.test: issued, expires \d{4}-/)

  const trust = join(s.dir, 'alpn', 'trust')
  mkdirSync(trust)
  writeFileSync(join(trust, 'ca.crt'), s.pebble.root)
  const image = await ociLayout(join(s.dir, 'alpn', 'image'), 'v1', [1 << 20])
  const push = await skopeoVia(s.proxy, ['copy', '--dest-cert-dir', trust, `oci:${image.dir}:v1`, `docker://registry.test:${s.tlsPort}/acme/app:v1`])
  assert.equal(push.code, 0, push.out)
  const pull = await skopeoVia(s.proxy, ['inspect', '--cert-dir', trust, `docker://registry.test:${s.tlsPort}/acme/app:v1`])
  assert.equal(pull.code, 0, pull.out)
  assert.equal((JSON.parse(pull.out) as { Digest: string }).Digest, image.manifestDigest)
  const stored = readFileSync(join(s.dir, 'alpn', 'acme', 'registry.test.key'))
  assert.ok(stored.length > 0)
  const { statSync } = await import('node:fs')
  for (const f of ['registry.test.key', 'registry.test.crt', 'account.key']) assert.equal(statSync(join(s.dir, 'alpn', 'acme', f)).mode & 0o077, 0, `${f} is 0600`)

  berth.child.kill('SIGTERM')
  await once(berth.child, 'exit')
  const again = await spawnBerth(t, ['--config', file])
  assert.match(again.output(), /ACME: serving the stored certificate/)
  await sleep(1500)
  assert.doesNotMatch(again.output(), /ordering a certificate/, 'no new order: the stored certificate is good')
  assert.equal((await presented(s.tlsPort, s.pebble.root)).serialNumber, cert.serialNumber)
  again.child.kill('SIGTERM')
  await once(again.child, 'exit')
})

test('http-01: the plain listener answers the CA and redirects everything else to https', { timeout: 120_000 }, async (t) => {
  const file = berthConfig('http', ['challenge: http-01', `httpPort: ${s.httpPort}`])
  const berth = await spawnBerth(t, ['--config', file])
  await issued(berth)
  assert.match((await presented(s.tlsPort, s.pebble.root)).issuer, /Pebble/)
  const redirect = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: s.httpPort, path: '/v2/_catalog?n=1', headers: { host: 'registry.test' } }, (res) => { res.resume(); resolve(res) }).on('error', reject)
  })
  assert.equal(redirect.statusCode, 301)
  assert.equal(redirect.headers.location, `https://registry.test:${s.tlsPort}/v2/_catalog?n=1`)
  berth.child.kill('SIGTERM')
  await once(berth.child, 'exit')
})

test('renewal: a new certificate is swapped in while a download streams, and the download completes', { timeout: 180_000 }, async (t) => {
  // renewBefore longer than Pebble's lifetime: every check renews (Pebble cannot issue short-lived certificates).
  const file = berthConfig('renew', ['challenge: tls-alpn-01', 'renewBefore: 36500d', 'checkInterval: 1s'])
  const berth = await spawnBerth(t, ['--config', file])
  await issued(berth)
  const first = await presented(s.tlsPort, s.pebble.root)
  // a 32 MiB blob, read slowly through berth
  const image = await ociLayout(join(s.dir, 'renew', 'image'), 'v1', [32 << 20])
  const trust = join(s.dir, 'renew', 'trust')
  mkdirSync(trust)
  writeFileSync(join(trust, 'ca.crt'), s.pebble.root)
  assert.equal((await skopeoVia(s.proxy, ['copy', '--dest-cert-dir', trust, `oci:${image.dir}:v1`, `docker://registry.test:${s.tlsPort}/renew/app:v1`])).code, 0)
  const digest = image.layers[0]
  const download = new Promise<{ sha: string, bytes: number, serial: string }>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: s.tlsPort, servername: 'registry.test', ca: s.pebble.root, path: `/v2/renew/app/blobs/${digest}`, agent: false }, (res) => {
      const serial = (res.socket as tls.TLSSocket).getPeerX509Certificate()?.serialNumber ?? ''
      const h = createHash('sha256')
      let bytes = 0
      res.on('data', (c: Buffer) => {
        h.update(c)
        bytes += c.length
        res.pause()
        setTimeout(() => res.resume(), 15) // slowly: the download spans several renewals
      })
      res.on('end', () => resolve({ sha: `sha256:${h.digest('hex')}`, bytes, serial }))
      res.on('error', reject)
    }).on('error', reject)
  })
  const before = berth.output().split('certificate issued and in force').length
  await issued(berth, before) // one more renewal while the download runs
  const renewed = await presented(s.tlsPort, s.pebble.root)
  assert.notEqual(renewed.serialNumber, first.serialNumber, 'new connections get the new certificate')
  const done = await download
  assert.equal(done.sha, digest, 'the download that started before the swap completes, intact')
  assert.equal(done.bytes, image.layerSizes[0])
  berth.child.kill('SIGTERM')
  await once(berth.child, 'exit')
})

test('a CA that is down at start: berth serves (temporary certificate), says why, and retries', { timeout: 120_000 }, async (t) => {
  const deadPort = await freePort()
  const file = berthConfig('down', ['checkInterval: 2s'])
  writeFileSync(file, readFileSync(file, 'utf8').replace(s.pebble.directory, `https://127.0.0.1:${deadPort}/dir`))
  const berth = await spawnBerth(t, ['--config', file])
  await waitFor(() => berth.output().split('the certificate order failed').length > 2, 90_000, 'two failed attempts')
  assert.match(berth.output(), /"problem":"cannot reach the ACME directory https:\/\/127\.0\.0\.1:\d+\/dir: ECONNREFUSED","retryInMs":2000,"msg":"ACME: the certificate order failed; the certificate in force stays"/, berth.output())
  assert.doesNotMatch(berth.output(), /at .*\.js:\d+/, 'no stack trace')
  // serving, with the temporary certificate
  const status = await new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: s.tlsPort, path: '/v2/', rejectUnauthorized: false, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  assert.equal(status, 200)
  berth.child.kill('SIGTERM')
  await once(berth.child, 'exit')
})

test('replicas sharing the storage: one renews while the CA validates on the other (the challenge is in the storage), and the other picks the new certificate up', { timeout: 180_000 }, async (t) => {
  const storage = join(s.dir, 'replicas-acme')
  const a = berthConfig('replica-a', ['checkInterval: 1s'])
  writeFileSync(a, readFileSync(a, 'utf8').replace('storage: acme', `storage: ${storage}`))
  const first = await spawnBerth(t, ['--config', a])
  await issued(first)
  const issuedToA = await presented(s.tlsPort, s.pebble.root)
  // B listens elsewhere: the CA's validations for B's orders reach A, on the port the CA knows.
  const b = berthConfig('replica-b', ['renewBefore: 36500d', 'checkInterval: 1s'])
  writeFileSync(b, readFileSync(b, 'utf8').replace('storage: acme', `storage: ${storage}`).replace(`port: ${s.tlsPort}`, 'port: 0'))
  const second = await spawnBerth(t, ['--config', b])
  assert.match(second.output(), /ACME: serving the stored certificate/, 'B starts with what A stored')
  await issued(second) // B renews: only A was there to answer the CA
  await waitFor(() => first.output().includes('picked up a certificate renewed by another replica'), 10_000, 'A to pick up B\'s certificate')
  const now = await presented(s.tlsPort, s.pebble.root)
  assert.notEqual(now.serialNumber, issuedToA.serialNumber, 'A serves the certificate B obtained')
  assert.doesNotMatch(first.output().split('berth listening')[1], /ordering a certificate[\s\S]*ordering a certificate/, 'A did not order again')
  for (const p of [first, second]) { p.child.kill('SIGTERM'); await once(p.child, 'exit') }
})

test('a validation the CA refuses: the error log carries the CA\'s own words, and berth keeps serving', { timeout: 60_000 }, async (t) => {
  // berth answers http-01 on a port the CA does not validate on: Pebble cannot connect
  const elsewhere = await freePort()
  const file = berthConfig('refused', ['challenge: http-01', `httpPort: ${elsewhere}`, 'checkInterval: 1h'])
  const berth = await spawnBerth(t, ['--config', file])
  await waitFor(() => berth.output().includes('the certificate order failed'), 45_000, 'the refused order')
  const line = berth.output().split('\n').find((l) => l.includes('the certificate order failed')) as string
  const { problem } = JSON.parse(line) as { problem: string }
  assert.match(problem, new RegExp(`127\\.0\\.0\\.1:${s.httpPort}.*refused`, 'i'), 'the CA\'s detail: where it tried and what happened')
  assert.doesNotMatch(line, /\n|at .*\.js:\d+/, 'one line, no stack')
  const status = await new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: s.tlsPort, path: '/v2/', rejectUnauthorized: false, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  assert.equal(status, 200, 'serving with the temporary certificate')
  berth.child.kill('SIGTERM')
  await once(berth.child, 'exit')
})
