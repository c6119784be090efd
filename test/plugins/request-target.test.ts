import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { parseRegistryPath } from '../../src/registry/path.js'
import { startBerth, startUpstream, registryError } from '../helper.js'

test('registry paths parse into kind, repository and reference', () => {
  const cases: Array<[string, string, string | null, string | null]> = [
    ['/v2/', 'base', null, null],
    ['/v2', 'base', null, null],
    ['/v2/_catalog', 'catalog', null, null],
    ['/v2/library/ubuntu/manifests/22.04', 'manifest', 'library/ubuntu', '22.04'],
    ['/v2/a/manifests/sha256:abc', 'manifest', 'a', 'sha256:abc'],
    ['/v2/team-a/app.x/blobs/sha256:0123', 'blob', 'team-a/app.x', 'sha256:0123'],
    ['/v2/a/b/c/blobs/uploads/', 'upload', 'a/b/c', null],
    ['/v2/a/blobs/uploads/8a3e-uuid', 'upload', 'a', '8a3e-uuid'],
    ['/v2/a/tags/list', 'tags', 'a', null],
    ['/v2/a/referrers/sha256:abc', 'referrers', 'a', 'sha256:abc'],
    ['/v2/UPPER/manifests/x', 'other', null, null],
    ['/healthz', 'other', null, null]
  ]
  for (const [path, kind, repository, reference] of cases) {
    assert.deepEqual(parseRegistryPath(path), { kind, repository, reference }, path)
  }
})

test('an absolute-form request target is refused with 400 and never reaches the upstream', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], {}, { plain: true })
  const raw = await new Promise<string>((resolve, reject) => {
    const s = net.connect(berth.port, '127.0.0.1', () => s.write(`GET http://127.0.0.1:${up.port}/v2/ HTTP/1.1\r\nHost: x\r\n\r\n`))
    let out = ''
    s.on('data', (c) => { out += c.toString() })
    s.on('end', () => resolve(out))
    s.on('error', reject)
  })
  assert.match(raw, /^HTTP\/1\.1 400 /)
  assert.match(raw, /docker-distribution-api-version: registry\/2\.0/i)
  assert.equal(registryError(Buffer.from(raw.slice(raw.indexOf('\r\n\r\n') + 4))).code, 'UNSUPPORTED')
  assert.equal(up.seen.length, 0)
})
