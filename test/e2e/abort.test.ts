// A client that disconnects mid-upload: through berth to the real registry, the blob is never
// committed, and the same push retried then succeeds.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir, testCerts, sleep } from '../helper.js'
import { startRegistry, startBerthProcess } from './fixtures.js'

test('an upload aborted mid-body (PUT or PATCH) is never committed; the retried push succeeds', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t)
  const registry = await startRegistry(t, join(dir, 'registry'))
  const berth = await startBerthProcess(t, dir, [registry.url])
  const ca = readFileSync((await testCerts()).caCert)
  const blob = randomBytes(16 * 1024 * 1024)
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  const call = (method: string, path: string, headers: Record<string, string | number> = {}, body?: Buffer) => new Promise<{ status: number, location?: string }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: berth.port, path, method, ca, servername: 'localhost', agent: false, headers: { host: `127.0.0.1:${berth.port}`, ...headers } }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location }))
    })
    req.on('error', reject)
    req.end(body)
  })
  const start = async () => {
    const r = await call('POST', '/v2/abort/app/blobs/uploads/', { 'content-length': 0 })
    assert.equal(r.status, 202)
    return new URL(r.location as string)
  }
  const abortAfter = async (method: string, path: string, headers: Record<string, string | number>, bytes: number) => {
    const req = https.request({ host: '127.0.0.1', port: berth.port, path, method, ca, servername: 'localhost', agent: false, headers: { host: `127.0.0.1:${berth.port}`, ...headers } })
    req.on('error', () => {})
    req.write(blob.subarray(0, bytes))
    await sleep(300)
    req.destroy()
    await new Promise((resolve) => req.once('close', resolve))
    await sleep(500)
  }
  // a monolithic PUT cut at half, and a chunked PATCH cut at a quarter
  let loc = await start()
  await abortAfter('PUT', `${loc.pathname}${loc.search}&digest=${digest}`, { 'content-length': blob.length, 'content-type': 'application/octet-stream' }, blob.length / 2)
  assert.equal((await call('HEAD', `/v2/abort/app/blobs/${digest}`)).status, 404, 'not committed after an aborted PUT')
  loc = await start()
  await abortAfter('PATCH', `${loc.pathname}${loc.search}`, { 'content-type': 'application/octet-stream' }, blob.length / 4)
  assert.equal((await call('HEAD', `/v2/abort/app/blobs/${digest}`)).status, 404, 'not committed after an aborted PATCH')
  // the retry
  loc = await start()
  const put = await call('PUT', `${loc.pathname}${loc.search}&digest=${digest}`, { 'content-length': blob.length, 'content-type': 'application/octet-stream' }, blob)
  assert.equal(put.status, 201)
  assert.equal((await call('HEAD', `/v2/abort/app/blobs/${digest}`)).status, 200)
  const got = await new Promise<string>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: berth.port, path: `/v2/abort/app/blobs/${digest}`, ca, servername: 'localhost', agent: false }, (res) => {
      const h = createHash('sha256')
      res.on('data', (c: Buffer) => h.update(c))
      res.on('end', () => resolve(`sha256:${h.digest('hex')}`))
    }).on('error', reject)
  })
  assert.equal(got, digest)
})
