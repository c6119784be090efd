// npm run soak (not in CI): parallel pushes over two real registries sharing storage and secret, one of
// them killed and restarted midway, for a set number of minutes. Every push must succeed, at once or on
// retry, and pull back with the right digests; prints pushes done, failures, retries and berth's peak RSS.
//
//   SOAK_MINUTES=2 SOAK_PARALLEL=100 SOAK_MB=50 npm run soak
import https from 'node:https'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry, startBerthProcess, freePort } from '../test/e2e/fixtures.js'
import { testCerts } from '../test/helper.js'
import { peakMB } from './lib.js'

const MINUTES = Number(process.env.SOAK_MINUTES ?? 2)
const PARALLEL = Number(process.env.SOAK_PARALLEL ?? 100)
const MB = Number(process.env.SOAK_MB ?? 50)

const cleanups: Array<() => Promise<void> | void> = []
const t = { after: (fn: () => Promise<void> | void) => { cleanups.push(fn) } }
const dir = mkdtempSync(join(tmpdir(), 'berth-soak-'))
const sha = (...parts: Buffer[]) => { const h = createHash('sha256'); for (const p of parts) h.update(p); return `sha256:${h.digest('hex')}` }

try {
  const storage = join(dir, 'storage')
  const port1 = await freePort()
  let r1 = await startRegistry(t, join(dir, 'r1'), { storage, port: port1 })
  const r2 = await startRegistry(t, join(dir, 'r2'), { storage })
  const berth = await startBerthProcess(t, dir, [r1.url, r2.url], 'limits: { maxBodySize: 0 }', 'healthCheck: { type: tcp, interval: 500ms, rise: 2, fall: 2, timeout: 500ms }')
  const pid = berth.child.pid as number
  const ca = readFileSync((await testCerts()).caCert)
  const agent = new https.Agent({ ca, servername: 'localhost', keepAlive: true, maxSockets: PARALLEL * 2 })
  const shared = randomBytes(MB * 1024 * 1024)

  const call = (method: string, path: string, headers: Record<string, string | number>, body: Buffer[] = []) => new Promise<{ status: number, location?: string, digest?: string }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: berth.port, path, method, agent, headers: { host: `127.0.0.1:${berth.port}`, ...headers } }, (res) => {
      const h = createHash('sha256')
      res.on('data', (c: Buffer) => h.update(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, digest: res.complete ? `sha256:${h.digest('hex')}` : 'cut' }))
      res.on('error', reject)
    })
    req.on('error', reject)
    for (const b of body) req.write(b)
    req.end()
  })

  /** One push: the blob (unique prefix + shared bytes), an empty config, a manifest; then pull it back. */
  const push = async (n: number): Promise<void> => {
    const prefix = randomBytes(1024)
    const digest = sha(prefix, shared)
    const config = Buffer.from('{}')
    const repo = `soak/app${n % 10}`
    for (const [parts, d] of [[[prefix, shared], digest], [[config], sha(config)]] as const) {
      const start = await call('POST', `/v2/${repo}/blobs/uploads/`, { 'content-length': 0 })
      if (start.status !== 202) throw new Error(`POST ${start.status}`)
      const loc = new URL(start.location as string)
      const size = parts.reduce((a, b) => a + b.length, 0)
      const put = await call('PUT', `${loc.pathname}${loc.search}&digest=${d}`, { 'content-length': size, 'content-type': 'application/octet-stream' }, [...parts])
      if (put.status !== 201) throw new Error(`PUT ${put.status}`)
    }
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: prefix.length + shared.length }]
    }))
    const tag = `t${n}`
    const m = await call('PUT', `/v2/${repo}/manifests/${tag}`, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': manifest.length }, [manifest])
    if (m.status !== 201) throw new Error(`manifest PUT ${m.status}`)
    const pulledManifest = await call('GET', `/v2/${repo}/manifests/${tag}`, { accept: 'application/vnd.oci.image.manifest.v1+json' })
    if (pulledManifest.digest !== sha(manifest)) throw new Error('manifest pulled back with another digest')
    const pulled = await call('GET', `/v2/${repo}/blobs/${digest}`, {})
    if (pulled.digest !== digest) throw new Error(`blob pulled back as ${pulled.digest}`)
  }

  let done = 0
  let failedFinally = 0
  let retries = 0
  const errors = new Map<string, number>()
  const deadline = Date.now() + MINUTES * 60_000
  let n = 0
  const worker = async () => {
    while (Date.now() < deadline) {
      const id = n++
      let ok = false
      for (let attempt = 0; attempt < 3 && !ok; attempt++) {
        try {
          await push(id)
          ok = true
        } catch (err) {
          const key = (err as Error).message.replace(/\d{3,}/g, 'N')
          errors.set(key, (errors.get(key) ?? 0) + 1)
          retries++
        }
      }
      if (ok) done++; else failedFinally++
    }
  }
  const workers = Array.from({ length: PARALLEL }, worker)
  // midway: kill one registry and bring it back a second later
  await new Promise((resolve) => setTimeout(resolve, MINUTES * 30_000))
  r1.child.kill('SIGKILL')
  process.stderr.write('killed registry 1\n')
  await new Promise((resolve) => setTimeout(resolve, 1000))
  r1 = await startRegistry(t, join(dir, 'r1'), { storage, port: port1 })
  process.stderr.write('restarted registry 1\n')
  await Promise.all(workers)
  agent.destroy()
  const peak = peakMB(pid) // the kernel's high-water mark: no sampling can miss the peak
  console.log(`\nsoak: ${MINUTES} min, ${PARALLEL} parallel pushes of ${MB} MB over two registries, one killed and restarted midway`)
  console.log(`pushes done (pushed and pulled back with the right digests): ${done}`)
  console.log(`pushes that failed even after 3 tries: ${failedFinally}`)
  console.log(`retries: ${retries} ${JSON.stringify(Object.fromEntries(errors))}`)
  console.log(`berth peak RSS: ${peak.toFixed(0)} MB`)
  if (failedFinally > 0 || peak > 250) process.exitCode = 1
} finally {
  for (const fn of cleanups.reverse()) await fn()
  rmSync(dir, { recursive: true, force: true })
}
