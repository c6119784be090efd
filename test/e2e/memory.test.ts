// berth never holds a body in memory: streaming 1 GB each way through the `berth start` process must not
// raise its resident set by more than 64 MB, the read buffers of downloads are collected young (a
// scavenge per 8 MiB received, seen on berth's own garbage-collection metrics), and V8 does not fall into
// full collections that free nothing while bodies stream.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { once } from 'node:events'
import { tempDir, testCerts, startUpstream } from '../helper.js'
import { startBerthProcess } from './fixtures.js'

const GB = 1024 ** 3
const CHUNK = Buffer.alloc(1 << 20, 0x5a)

function status (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  assert.ok(m)
  return Number(m[1]) * 1024
}

async function write (out: NodeJS.WritableStream, total: number): Promise<void> {
  for (let sent = 0; sent < total; sent += CHUNK.length) {
    if (!out.write(CHUNK)) await once(out, 'drain')
  }
}

test('streaming 1 GB up and 1 GB down raises berth\'s RSS by less than 64 MB', { timeout: 240_000 }, async (t) => {
  const up = await startUpstream((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-length': GB, 'content-type': 'application/octet-stream' })
      write(res, GB).then(() => res.end(), () => {})
      return
    }
    let n = 0
    req.on('data', (c: Buffer) => { n += c.length })
    req.on('end', () => { res.writeHead(201, { 'x-received': n }); res.end() })
  }, { plain: true })
  t.after(() => up.close())
  const dir = tempDir(t)
  const berth = await startBerthProcess(t, dir, [up.url], 'limits: { maxBodySize: 0 }\nadmin: { host: 127.0.0.1, port: 0 }')
  const pid = berth.child.pid as number
  const adminPort = Number(/admin listener at http:\/\/127\.0\.0\.1:(\d+)/.exec(berth.output())?.[1])
  assert.ok(adminPort > 0, berth.output())
  /**
   * Collections of one kind so far (prom-client's default metrics, berth_ prefixed). A kind V8 has not run
   * yet has no line: 0 (a berth may run no full collection at all; the scavenges' count below shows the
   * metric is there).
   */
  const collections = async (kind: 'minor' | 'major'): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
    return Number(new RegExp(`^berth_nodejs_gc_duration_seconds_count\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0)
  }
  const ca = readFileSync((await testCerts()).caCert)
  const agent = new https.Agent({ ca, servername: 'localhost', keepAlive: true })
  t.after(() => agent.destroy())
  const get = async (path: string) => {
    const req = https.get({ host: '127.0.0.1', port: berth.port, path, agent })
    const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
    let n = 0
    res.on('data', (c: Buffer) => { n += c.length })
    await once(res, 'end')
    return n
  }
  const put = async (size: number) => {
    const req = https.request({ host: '127.0.0.1', port: berth.port, path: '/v2/mem/blobs/uploads/x?digest=sha256:0', method: 'PUT', agent, headers: { 'content-length': size } })
    const response = once(req, 'response')
    await write(req, size)
    req.end()
    const [res] = await response as [import('node:http').IncomingMessage]
    res.resume()
    return Number(res.headers['x-received'])
  }
  // Warm up (JIT, TLS, pools) with small transfers, then take the idle baseline.
  for (let i = 0; i < 3; i++) { await put(8 << 20); await get('/v2/') }
  await new Promise((resolve) => setTimeout(resolve, 500))
  const idle = status(pid, 'VmRSS')
  let peak = idle
  let canReset = true
  try { writeFileSync(`/proc/${pid}/clear_refs`, '5') } catch { canReset = false }
  const sampler = setInterval(() => { peak = Math.max(peak, status(pid, 'VmRSS')) }, 20)
  const before = await collections('minor')
  const majorBefore = await collections('major')
  try {
    assert.equal(await put(GB), GB)
    assert.equal(await get('/v2/mem/blobs/sha256:big'), GB)
  } finally {
    clearInterval(sampler)
  }
  if (canReset) peak = Math.max(peak, status(pid, 'VmHWM'))
  const grew = (peak - idle) / (1 << 20)
  const young = await collections('minor') - before
  const full = await collections('major') - majorBefore
  t.diagnostic(`berth RSS idle ${(idle / (1 << 20)).toFixed(1)} MB, peak ${(peak / (1 << 20)).toFixed(1)} MB, +${grew.toFixed(1)} MB; ${young} scavenges, ${full} full collections`)
  assert.ok(grew < 64, `RSS grew by ${grew.toFixed(1)} MB`)
  // The 1 GB download in 8 MiB steps is 128, with V8's own during the upload on top; V8 on its own ran 65
  // while the same bodies streamed.
  assert.ok(young >= 128, `${young} young-generation collections while 2 GB streamed`)
  // 0-7 measured (what promotion left, 10 ms each); a berth whose old generation had too little room ran
  // one every 50-150 ms while bodies streamed, up to 31 per 250 MB.
  assert.ok(full <= 16, `${full} full collections while 2 GB streamed`)
})
