// The classic setup, end to end: a docker client (skopeo) pushes and pulls through berth over TLS to the
// real registry (docker-registry from Debian, TLS too).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import https from 'node:https'
import { tempDir, testCerts } from '../helper.js'
import { startRegistry, startBerthProcess, certDir, ociLayout, skopeo, sha256, accessLogWith } from './fixtures.js'

function post (port: number, ca: Buffer, path: string, host: string): Promise<{ status: number, location?: string }> {
  return new Promise((resolve, reject) => {
    https.request({ host: '127.0.0.1', port, path, method: 'POST', ca, servername: 'localhost', agent: false, headers: { host, 'content-length': 0 } }, (res) => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, location: res.headers.location })
    }).on('error', reject).end()
  })
}

test('skopeo pushes a two-layer image (one layer of 64 MB) through berth and pulls it back, digests equal', { timeout: 180_000 }, async (t) => {
  const dir = tempDir(t)
  const registry = await startRegistry(t, join(dir, 'registry'))
  const berth = await startBerthProcess(t, dir, [registry.url])
  const certs = await certDir(dir)
  const image = await ociLayout(join(dir, 'src'), 'v1', [64 * 1024 * 1024 + 123, 300_000])
  const ref = `docker://127.0.0.1:${berth.port}/e2e/app:v1`

  const push = await skopeo(['copy', '--dest-cert-dir', certs, '--digestfile', join(dir, 'pushed.digest'), `oci:${image.dir}:v1`, ref])
  assert.equal(push.code, 0, push.stderr)
  assert.equal(readFileSync(join(dir, 'pushed.digest'), 'utf8').trim(), image.manifestDigest)

  const inspect = await skopeo(['inspect', '--cert-dir', certs, ref])
  assert.equal(inspect.code, 0, inspect.stderr)
  const info = JSON.parse(inspect.stdout) as { Digest: string, Layers: string[] }
  assert.equal(info.Digest, image.manifestDigest)
  assert.deepEqual(info.Layers, image.layers)

  const out = join(dir, 'pulled')
  const pull = await skopeo(['copy', '--src-cert-dir', certs, ref, `oci:${out}:v1`])
  assert.equal(pull.code, 0, pull.stderr)
  const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  assert.equal(index.manifests[0].digest, image.manifestDigest)
  for (const digest of [...image.layers, image.config, image.manifestDigest]) {
    const file = join(out, 'blobs', 'sha256', digest.slice(7))
    assert.equal(`sha256:${sha256(readFileSync(file))}`, digest, `pulled blob ${digest} is intact`)
  }
  assert.equal(readdirSync(join(out, 'blobs', 'sha256')).length, 4)

  // Everything went through berth: the access log has the upload and the layer download (lines are
  // written within a second).
  const log = await accessLogWith(dir, new RegExp(`"GET /v2/e2e/app/blobs/${image.layers[0]} `))
  assert.match(log, /"PUT \/v2\/e2e\/app\/blobs\/uploads\/[^ ]+ HTTP\/1\.1" 201 /)
  assert.match(log, new RegExp(`"GET /v2/e2e/app/blobs/${image.layers[0]} HTTP/1\\.1" 200 ${image.layerSizes[0]} `))
  assert.match(log, new RegExp(`upstream=127\\.0\\.0\\.1:${registry.port}`))
})

test('the registry\'s upload Location points at berth\'s host and port, not at the registry', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t)
  const registry = await startRegistry(t, join(dir, 'registry'))
  const berth = await startBerthProcess(t, dir, [registry.url])
  const ca = readFileSync((await testCerts()).caCert)
  for (const host of [`127.0.0.1:${berth.port}`, `registry.example.com:${berth.port}`]) {
    const r = await post(berth.port, ca, '/v2/e2e/loc/blobs/uploads/', host)
    assert.equal(r.status, 202)
    assert.ok(r.location?.startsWith(`https://${host}/v2/e2e/loc/blobs/uploads/`), r.location)
  }
  writeFileSync(join(dir, 'done'), '')
})

test('with the blob cache, a second skopeo pull takes its layers from the cache, digests checked by skopeo', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t)
  const registry = await startRegistry(t, join(dir, 'registry'))
  const berth = await startBerthProcess(t, dir, [registry.url], 'cache: { dir: cache, maxSize: 1g }')
  const certs = await certDir(dir)
  const image = await ociLayout(join(dir, 'src'), 'v1', [8 * 1024 * 1024, 100_000])
  const ref = `docker://127.0.0.1:${berth.port}/e2e/cached:v1`
  const push = await skopeo(['copy', '--dest-cert-dir', certs, `oci:${image.dir}:v1`, ref])
  assert.equal(push.code, 0, push.stderr)
  for (const round of [1, 2]) {
    const pull = await skopeo(['copy', '--src-cert-dir', certs, ref, `dir:${join(dir, `pulled-${round}`)}`])
    assert.equal(pull.code, 0, pull.stderr)
    for (const digest of image.layers) {
      assert.equal(`sha256:${sha256(readFileSync(join(dir, `pulled-${round}`, digest.slice(7))))}`, digest)
    }
  }
  // the first pull filled the cache, the second was served from it (the push's own blobs went upstream)
  const log = await accessLogWith(dir, new RegExp(`"GET /v2/e2e/cached/blobs/${image.layers[0]} HTTP/1\\.1" 200 ${image.layerSizes[0]} .*upstream=cache`))
  assert.match(log, new RegExp(`"GET /v2/e2e/cached/blobs/${image.layers[0]} HTTP/1\\.1" 200 ${image.layerSizes[0]} .*upstream=127\\.0\\.0\\.1:${registry.port}`))
  assert.equal(readdirSync(join(dir, 'cache', 'sha256')).length >= 2, true, 'the layers are on disk')
})
