// Identity sources in edge mode against the real registry with skopeo: users and groups from a real
// OpenLDAP (slapd), client certificates made by openssl, access keys. One registry, one slapd and one
// berth for the whole file.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import https from 'node:https'
import { startBerth, request, basic, sleep, testCerts, type Berth } from '../helper.js'
import { startRegistry, startSlapd, ociLayout, skopeo, type Registry, type Layout, type Directory, fileContext } from './fixtures.js'
import { createKey, revokeKey } from '../../src/auth/keys.js'

const ctx = fileContext()
let dir: string
let registry: Registry
let slapd: Directory
let berth: Berth
let image: Layout
let keysFile: string
/** skopeo --cert-dir folders: the server CA alone; with robot's client certificate; with a stranger's. */
const certDirs = { plain: '', robot: '', stranger: '' }

function openssl (args: string[]): void { execFileSync('openssl', args, { stdio: 'pipe' }) }

/** A CA and a client certificate it signed for `cn` (with e-mail `cn`@example.org), written to `out`. */
function clientCert (out: string, cn: string): { ca: string, cert: string, key: string } {
  mkdirSync(out, { recursive: true })
  const p = (f: string) => join(out, f)
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-subj', `/CN=${cn} clients CA`, '-days', '2'])
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('client.key'), '-out', p('client.csr'), '-subj', `/CN=${cn}`])
  writeFileSync(p('ext'), `extendedKeyUsage=clientAuth\nsubjectAltName=email:${cn}@example.org\n`)
  openssl(['x509', '-req', '-in', p('client.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('client.cert'), '-days', '2', '-extfile', p('ext')])
  return { ca: p('ca.pem'), cert: p('client.cert'), key: p('client.key') }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-identity-'))
  ctx.after(() => rmSync(dir, { recursive: true, force: true }))
  registry = await startRegistry(ctx, join(dir, 'registry'))
  slapd = await startSlapd(ctx, join(dir, 'slapd'), { carol: ['devs'], dave: ['readers'], erin: [] })
  const robot = clientCert(join(dir, 'robot'), 'robot')
  const stranger = clientCert(join(dir, 'stranger'), 'robot')
  const c = await testCerts()
  for (const [name, cert] of [['plain', null], ['robot', robot], ['stranger', stranger]] as const) {
    const d = join(dir, `certs-${name}`)
    mkdirSync(d)
    copyFileSync(c.caCert, join(d, 'ca.crt'))
    if (cert !== null) { copyFileSync(cert.cert, join(d, 'client.cert')); copyFileSync(cert.key, join(d, 'client.key')) }
    certDirs[name] = d
  }
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, execFileSync('htpasswd', ['-nbB', '-C', '4', 'alice', 'alice-pw'], { encoding: 'utf8' }))
  writeFileSync(join(dir, 'bind-pw'), 'berth-pw\n')
  keysFile = join(dir, 'keys.json')
  berth = await startBerth(ctx, [registry.url], {
    tls: { clientCa: robot.ca, clientAuth: 'optional' },
    auth: {
      htpasswd,
      keys: keysFile,
      throttle: { failures: 1000 },
      ldap: { url: slapd.url, bindDn: 'cn=berth,ou=services,dc=example,dc=org', bindPasswordFile: join(dir, 'bind-pw'), userBase: 'ou=people,dc=example,dc=org', timeout: '2s', cacheFor: '5m' },
      clientCertificate: { user: 'cn' },
      access: [
        { users: ['alice'], repositories: ['**'], actions: ['pull', 'push'] },
        { groups: ['devs'], repositories: ['team/**'], actions: ['pull', 'push'] },
        { groups: ['readers'], repositories: ['team/**'], actions: ['pull'] },
        { users: ['robot'], repositories: ['robots/**'], actions: ['pull', 'push'] },
        { users: ['ci-bot'], repositories: ['**'], actions: ['pull', 'push'] }
      ]
    }
  })
  image = await ociLayout(join(dir, 'image'), 'v1', [100_000])
})


const at = (repo: string) => `docker://127.0.0.1:${berth.port}/${repo}:v1`
const push = (creds: string | null, repo: string, certs = certDirs.plain) => skopeo(['copy', '--dest-cert-dir', certs, ...(creds === null ? ['--dest-no-creds'] : ['--dest-creds', creds]), `oci:${image.dir}:v1`, at(repo)])
const status = async (auth: string, path = '/v2/team/app/tags/list') => (await request(berth, path, { headers: { authorization: auth } })).status

test('LDAP: directory groups map to the rules, binds are cached, a directory outage fails closed with 503', async () => {
  const ok = await push('carol:carol-pw', 'team/app')
  assert.equal(ok.code, 0, ok.stderr)
  const readOnly = await push('dave:dave-pw', 'team/dave')
  assert.notEqual(readOnly.code, 0, 'readers pull only')
  assert.match(readOnly.stderr, /denied/i)
  assert.equal(await status(basic('dave')), 200)
  assert.equal(await status(basic('erin')), 403, 'in the directory, in no group the rules name')
  assert.equal(await status(basic('carol', 'wrong')), 401)
  assert.equal(await status(basic('nobody')), 401)
  assert.equal(await status(basic('carol', '')), 401, 'an empty password is never an unauthenticated bind')
  assert.equal(await status(basic('carol', 'x)(uid=*')), 401, 'filter characters are escaped')
  assert.equal(await status(basic('alice')), 200, 'htpasswd users beside the directory')

  // ldaps:// with the directory's CA: verified; without it (the system CAs), the login fails closed.
  const ldaps = async (ca: string | undefined) => {
    const b = await startBerth(ctx, [registry.url], { auth: { ldap: { url: slapd.tlsUrl, bindDn: 'cn=berth,ou=services,dc=example,dc=org', bindPassword: 'berth-pw', userBase: 'ou=people,dc=example,dc=org', ...(ca === undefined ? {} : { tls: { ca } }) } } })
    const r = await request(b, '/v2/', { headers: { authorization: basic('carol') } })
    await b.close()
    return r.status
  }
  assert.equal(await ldaps((await testCerts()).caCert), 200)
  assert.equal(await ldaps(undefined), 503, 'a directory certificate that does not verify is an outage, never a login')

  await slapd.stop()
  // A bind verified before is still believed; a new one cannot be checked: 503, and a clear error line.
  assert.equal(await status(basic('carol')), 200)
  const down = await request(berth, '/v2/team/app/tags/list', { headers: { authorization: basic('erin', 'other-pw') } })
  assert.equal(down.status, 503)
  assert.equal((JSON.parse(down.body.toString()) as { errors: Array<{ code: string }> }).errors[0].code, 'UNAVAILABLE')
  await sleep(100)
  assert.match(berth.errorLog(), /"user":"erin".*"msg":"login not checked: the user directory did not answer"/)
  assert.doesNotMatch(berth.errorLog(), /other-pw/)
})

test('client certificates: a certificate from tls.clientCa is its user without a password; one from another CA is nobody', async () => {
  const ok = await push(null, 'robots/arm', certDirs.robot)
  assert.equal(ok.code, 0, ok.stderr)
  const stranger = await push(null, 'robots/leg', certDirs.stranger)
  assert.notEqual(stranger.code, 0)
  const inspect = await skopeo(['inspect', '--cert-dir', certDirs.robot, '--no-creds', at('robots/arm')])
  assert.equal(inspect.code, 0, inspect.stderr)
  assert.match(berth.accessLog(), /- robot \[[^\]]+\] "PUT \/v2\/robots\/arm\/manifests\/v1 HTTP\/1\.1" 201/)
  // A password still works beside certificates (clientAuth: optional), and the certificate opens only its rules.
  assert.equal(await status(basic('alice')), 200)
  const robot = { cert: readFileSync(join(certDirs.robot, 'client.cert')), key: readFileSync(join(certDirs.robot, 'client.key')) }
  const withCert = (path: string) => new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: berth.port, path, ca: berth.ca, ...robot, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  assert.equal(await withCert('/v2/robots/arm/tags/list'), 200)
  assert.equal(await withCert('/v2/team/app/tags/list'), 403)
})

test('access keys: docker login with the key as password, never beyond its scope, refused once revoked', async () => {
  const { key, secret } = await createKey(keysFile, { user: 'ci-bot', repositories: ['ci/**'], actions: ['pull', 'push'], expiresIn: 86_400_000 })
  const expired = await createKey(keysFile, { user: 'ci-bot', repositories: ['ci/**'], actions: ['pull'], expiresIn: 1 })
  await sleep(1500)
  const ok = await push(`ci-bot:${secret}`, 'ci/app')
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(berth.accessLog(), new RegExp(`ci-bot .*"PUT /v2/ci/app/manifests/v1 HTTP/1\\.1" 201 .* key=${key.id}`))
  assert.equal(await status(basic('ci-bot', secret), '/v2/team/app/tags/list'), 403, 'the rules allow ci-bot everywhere, the key only ci/**')
  assert.equal(await status(basic('alice', secret), '/v2/ci/app/tags/list'), 401, 'a key is its own user\'s only')
  assert.equal(await status(basic('ci-bot', expired.secret), '/v2/ci/app/tags/list'), 401, 'expired')
  await revokeKey(keysFile, key.id)
  await sleep(1500)
  assert.equal(await status(basic('ci-bot', secret), '/v2/ci/app/tags/list'), 401, 'revoked')
})

test('clientAuth: required refuses a handshake without a certificate from clientCa', async (t) => {
  const c = await testCerts()
  const strict = await startBerth(t, [registry.url], {
    tls: { clientCa: join(dir, 'robot', 'ca.pem'), clientAuth: 'required' },
    auth: { clientCertificate: { user: 'san-email' }, access: [{ users: ['robot@example.org'], repositories: ['robots/**'], actions: ['pull'] }] }
  })
  const get = (extra: object) => new Promise<number | string>((resolve) => {
    https.get({ host: '127.0.0.1', port: strict.port, path: '/v2/robots/arm/tags/list', ca: readFileSync(c.caCert), agent: false, ...extra }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
      .on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
  assert.equal(await get({ cert: readFileSync(join(dir, 'robot', 'client.cert')), key: readFileSync(join(dir, 'robot', 'client.key')) }), 200, 'the e-mail SAN names the user')
  assert.notEqual(await get({}), 200)
  assert.equal(typeof await get({}), 'string', 'no HTTP answer at all: the handshake failed')
  assert.equal(typeof await get({ cert: readFileSync(join(dir, 'stranger', 'client.cert')), key: readFileSync(join(dir, 'stranger', 'client.key')) }), 'string')
})
