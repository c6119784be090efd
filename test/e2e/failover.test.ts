// Two real registries sharing one storage folder and secret behind berth. One is killed with SIGKILL
// while eight clients pull manifests and blobs without pause: no request fails, not even the blob
// downloads that were mid-body on the killed server; /upstreams shows it down, then up again.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import http from 'node:http'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { tempDir, testCerts, sleep } from '../helper.js'
import { startRegistry, startBerthProcess, certDir, ociLayout, skopeo, freePort } from './fixtures.js'

interface Row { url: string, state: string, active: number }

test('no pull fails when a registry dies mid-download', { timeout: 180_000 }, async (t) => {
  const dir = tempDir(t)
  const storage = join(dir, 'shared-storage')
  const port1 = await freePort()
  const r1 = await startRegistry(t, join(dir, 'r1'), { storage, port: port1 })
  const r2 = await startRegistry(t, join(dir, 'r2'), { storage })
  const interval = 200
  const fall = 3
  const rise = 2
  const berth = await startBerthProcess(t, dir, [r1.url, r2.url], 'admin: { host: 127.0.0.1, port: 0 }',
    `healthCheck: { type: tcp, interval: ${interval}ms, rise: ${rise}, fall: ${fall}, timeout: 300ms }`)
  const adminPort = Number(/admin listener at http:\/\/127\.0\.0\.1:(\d+)/.exec(berth.output())?.[1])
  assert.ok(adminPort > 0, berth.output())
  const rows = () => new Promise<Row[]>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: adminPort, path: '/upstreams' }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve((JSON.parse(body) as { upstreams: Row[] }).upstreams))
    }).on('error', reject)
  })
  const stateOf = async (url: string) => (await rows()).find((r) => r.url === url)?.state

  const certs = await certDir(dir)
  const image = await ociLayout(join(dir, 'src'), 'v1', [40 * 1024 * 1024, 100_000])
  const push = await skopeo(['copy', '--dest-cert-dir', certs, `oci:${image.dir}:v1`, `docker://127.0.0.1:${berth.port}/ha/app:v1`])
  assert.equal(push.code, 0, push.stderr)

  const ca = readFileSync((await testCerts()).caCert)
  const agent = new https.Agent({ ca, servername: 'localhost', keepAlive: true, maxSockets: 16 })
  t.after(() => agent.destroy())
  const get = async (path: string, accept?: string): Promise<{ status: number, digest: string, bytes: number }> => {
    const req = https.get({ host: '127.0.0.1', port: berth.port, path, agent, headers: accept ? { accept } : {} })
    const [res] = await once(req, 'response') as [http.IncomingMessage]
    const hash = createHash('sha256')
    let bytes = 0
    let sincePause = 0
    res.on('data', (c: Buffer) => {
      hash.update(c)
      bytes += c.length
      // Read slowly (about 20 MB/s): a layer download then lasts seconds, so killing the registry that
      // streams it surely cuts it mid-body, beyond what the kernel's socket buffers still deliver.
      if ((sincePause += c.length) >= 1 << 20) { sincePause = 0; res.pause(); setTimeout(() => res.resume(), 50) }
    })
    await new Promise<void>((resolve, reject) => {
      res.on('end', () => res.complete ? resolve() : reject(new Error(`${path}: cut after ${bytes} bytes`)))
      res.on('error', reject)
    })
    return { status: res.statusCode ?? 0, digest: `sha256:${hash.digest('hex')}`, bytes }
  }

  let running = true
  const failures: string[] = []
  let done = 0
  const client = async (n: number) => {
    while (running) {
      try {
        const m = await get('/v2/ha/app/manifests/v1', 'application/vnd.oci.image.manifest.v1+json')
        if (m.status !== 200 || m.digest !== image.manifestDigest) throw new Error(`manifest: ${m.status} ${m.digest}`)
        const layer = image.layers[n % 2 === 0 ? 0 : 1]
        const b = await get(`/v2/ha/app/blobs/${layer}`)
        if (b.status !== 200 || b.digest !== layer) throw new Error(`blob: ${b.status} ${b.digest} ${b.bytes} bytes`)
        done++
      } catch (err) {
        failures.push(`client ${n}: ${(err as Error).message}`)
      }
    }
  }
  const clients = Array.from({ length: 8 }, (_, i) => client(i))
  await sleep(1000)
  // Kill r1 while it is streaming (berth has requests in flight on it), restart it, and repeat until a
  // download was caught mid-body (bytes already in the kernel's socket buffers still arrive after a
  // SIGKILL, so a download near its end completes without a resume).
  let r1url = r1.url
  let killer = r1
  const timings: string[] = []
  for (let cycle = 0; cycle < 5 && !/resuming with a Range request/.test(berth.output()); cycle++) {
    for (const end = Date.now() + 10_000; ((await rows()).find((r) => r.url === r1url)?.active ?? 0) < 2;) {
      assert.ok(Date.now() < end, 'requests in flight on r1')
      await sleep(2)
    }
    killer.child.kill('SIGKILL')
    const killedAt = Date.now()
    while (await stateOf(r1url) !== 'down') {
      assert.ok(Date.now() - killedAt < fall * interval + 1500, 'down within fall x interval (+ slack)')
      await sleep(20)
    }
    const downAfter = Date.now() - killedAt
    await sleep(500)
    const restartedAt = Date.now()
    killer = await startRegistry(t, join(dir, 'r1'), { storage, port: port1 })
    r1url = killer.url
    while (await stateOf(r1url) !== 'up') {
      assert.ok(Date.now() - restartedAt < rise * interval + 2500, 'up within rise x interval (+ slack)')
      await sleep(20)
    }
    timings.push(`down ${downAfter} ms after SIGKILL, up ${Date.now() - restartedAt} ms after restart`)
    await sleep(500)
  }
  running = false
  await Promise.all(clients)
  t.diagnostic(`${done} pulls (manifest + blob) by 8 clients; r1: ${timings.join('; ')}`)
  assert.deepEqual(failures, [])
  assert.ok(done > 20, `${done} pulls`)
  const log = berth.output()
  t.diagnostic(`downloads resumed from the other registry: ${(log.match(/resuming with a Range request/g) ?? []).length}`)
  assert.match(log, /resuming with a Range request/, 'a download was mid-body on the killed server and was resumed')
  assert.match(log, /download resumed from another server and verified/)
})

test('one registry, restarted under load: berth serves again the moment it is back (one failure does not refuse it for failTimeout)', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t)
  const storage = join(dir, 'storage')
  const port = await freePort()
  let registry = await startRegistry(t, join(dir, 'r'), { storage, port })
  // The defaults: maxFails 1, failTimeout 10s, no probes.
  const berth = await startBerthProcess(t, dir, [registry.url])
  const ca = readFileSync((await testCerts()).caCert)
  const status = (p: number) => new Promise<number>((resolve) => {
    https.get({ host: '127.0.0.1', port: p, path: '/v2/', ca, servername: 'localhost', agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
      .on('error', () => resolve(0))
  })
  assert.equal(await status(berth.port), 200)
  let backAt = 0
  const failedAfterBack: string[] = []
  let running = true
  let served = 0
  const client = async () => {
    while (running) {
      const startedAt = Date.now()
      const s = await status(berth.port)
      if (s === 200) served++
      else if (backAt > 0 && startedAt > backAt) failedAfterBack.push(`${s} at +${startedAt - backAt} ms`)
      await sleep(5)
    }
  }
  const clients = Array.from({ length: 4 }, () => client())
  await sleep(300)
  registry.child.kill('SIGKILL')
  await once(registry.child, 'exit')
  await sleep(500) // requests fail meanwhile: each counts against the only server
  registry = await startRegistry(t, join(dir, 'r'), { storage, port }) // returns once it answers directly
  backAt = Date.now()
  const before = served
  await sleep(1500)
  running = false
  await Promise.all(clients)
  t.diagnostic(`${served - before} requests served in the 1.5 s after the registry was back`)
  assert.deepEqual(failedAfterBack, [], 'no request started after the registry was back failed')
  assert.ok(served - before > 10)
})
