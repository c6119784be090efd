// docker's view of berth's auth, with the real registry and skopeo: a push user pushes, a pull-only
// user pulls and is refused a push with "denied", a wrong password is refused with "unauthorized".
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { tempDir } from '../helper.js'
import { startRegistry, startBerthProcess, certDir, ociLayout, skopeo, accessLogWith } from './fixtures.js'

test('skopeo through berth with htpasswd users and access rules', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t)
  const registry = await startRegistry(t, join(dir, 'registry'))
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, [
    execFileSync('htpasswd', ['-nbB', '-C', '10', 'pusher', 'push-pw'], { encoding: 'utf8' }).trim(),
    execFileSync('htpasswd', ['-nbm', 'reader', 'read-pw'], { encoding: 'utf8' }).trim()
  ].join('\n') + '\n')
  const berth = await startBerthProcess(t, dir, [registry.url], [
    'auth:',
    `  htpasswd: ${htpasswd}`,
    '  access:',
    '    - { users: [pusher], repositories: ["team/**"], actions: [pull, push] }',
    '    - { users: [reader], repositories: ["team/**"], actions: [pull] }'
  ].join('\n'))
  const certs = await certDir(dir)
  const image = await ociLayout(join(dir, 'src'), 'v1', [2 * 1024 * 1024, 1000])
  const ref = `docker://127.0.0.1:${berth.port}/team/app:v1`

  const push = await skopeo(['copy', '--dest-cert-dir', certs, '--dest-creds', 'pusher:push-pw', `oci:${image.dir}:v1`, ref])
  assert.equal(push.code, 0, push.stderr)

  const pull = await skopeo(['copy', '--src-cert-dir', certs, '--src-creds', 'reader:read-pw', ref, `oci:${join(dir, 'pulled')}:v1`])
  assert.equal(pull.code, 0, pull.stderr)
  const index = JSON.parse(readFileSync(join(dir, 'pulled', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  assert.equal(index.manifests[0].digest, image.manifestDigest)

  const refused = await skopeo(['copy', '--dest-cert-dir', certs, '--dest-creds', 'reader:read-pw', `oci:${image.dir}:v1`, `docker://127.0.0.1:${berth.port}/team/other:v1`])
  assert.notEqual(refused.code, 0)
  // skopeo prints the registry error code ("denied"); docker prints "denied: requested access to the resource is denied"
  assert.match(refused.stderr, /\bdenied\b/)

  const wrong = await skopeo(['inspect', '--cert-dir', certs, '--creds', 'pusher:wrong', ref])
  assert.notEqual(wrong.code, 0)
  assert.match(wrong.stderr, /\bunauthorized\b/)

  const anonymous = await skopeo(['inspect', '--cert-dir', certs, '--no-creds', ref])
  assert.notEqual(anonymous.code, 0)
  assert.match(anonymous.stderr, /\bunauthorized\b|authentication required/)

  const log = await accessLogWith(dir, /"POST \/v2\/team\/other\/blobs\/uploads\/ HTTP\/1\.1" 403 /)
  assert.match(log, /^127\.0\.0\.1 - pusher \[.*"PUT \/v2\/team\/app\/manifests\/v1 HTTP\/1\.1" 201 /m)
  assert.match(log, /^127\.0\.0\.1 - reader \[.*"POST \/v2\/team\/other\/blobs\/uploads\/ HTTP\/1\.1" 403 /m)
  assert.doesNotMatch(log, /push-pw|read-pw/)
})
